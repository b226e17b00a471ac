"""A progress line for long compiles and submissions: updated in place on a terminal, silent
when the output is a pipe or a file (so logs and scripts see only the final summary)."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    INTERVAL = 0.2   # seconds between redraws: a terminal cannot show more, and writes cost time
    DELAY = 1.0      # short operations finish before the line would appear: show nothing

    def __init__(self, what: str, stream: Optional[TextIO] = None):
        self.what = what
        self.stream = stream or sys.stderr
        self.enabled = _is_terminal(self.stream)
        self.started = time.monotonic()
        self.drawn = 0.0
        self.width = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < self.DELAY or (now - self.drawn < self.INTERVAL and done < total):
            return
        self.drawn = now
        percent = 100 * done // total if total else 100
        text = f"{self.what}: {done}/{total} ({percent}%)"
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        """Erase the line, so the summary printed next starts on a clean line."""
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
