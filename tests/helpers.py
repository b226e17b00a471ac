"""Small helpers shared by the end-to-end test modules (local, Slurm, and the LSF/Flux doubles)."""
from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Callable


def wait_until(predicate: Callable[[], object], what: str, timeout: float, interval: float = 0.25,
               detail: Callable[[], str] = lambda: ""):
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout``
    seconds, saying what was awaited and, from ``detail``, what was seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = detail()
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f"\n{seen}" if seen else ""))
        time.sleep(interval)


def write_study_spec(root: Path, name: str, body: str) -> Path:
    """root/spec/<name>.yaml: a description block named ``name`` followed by ``body`` (dedented)."""
    folder = root / "spec"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"description:\n  name: {name}\n  description: test study {name}\n" + textwrap.dedent(body))
    return path
