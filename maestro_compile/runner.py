"""The one place that starts processes at run time: scheduler commands built by the backends
(queries, cancel, cluster facts) and the study's bash scripts (submit.sh, resubmit-K.sh).

Backends only build `Command`s and parse their output; this module owns subprocess, chunking,
time-outs, missing commands and which failures are tolerated."""
from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar

from .errors import InterruptedSubmitError, SchedulerCommandError, SchedulerUnavailableError, SubmitError
from .progress import Progress

QUERY_TIMEOUT = 120      # seconds; a controller that does not answer should not hang `maestro status`

T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """A scheduler command and how to judge its failure.

    ``tolerate``: stderr texts (case-insensitive) that mean "some ids are gone", not an error;
    ``partial``: a non-zero exit that still printed output answered for the other ids;
    ``optional``: a failure only means "no answer" (a fallback query follows)."""

    argv: Tuple[str, ...]
    scheduler: str
    tolerate: Tuple[str, ...] = ()
    partial: bool = False
    optional: bool = False
    timeout: float = QUERY_TIMEOUT
    env: Optional[Mapping[str, str]] = None


def run(command: Command) -> str:
    """Run ``command`` and return its standard output; a failure it does not tolerate raises
    SchedulerCommandError, a command missing here SchedulerUnavailableError."""
    try:
        proc = run_unchecked(command)
    except (SchedulerCommandError, SchedulerUnavailableError):
        if command.optional:   # no answer from an optional query: its fallback asks instead
            return ""
        raise
    if proc.returncode == 0 or command.optional:
        return proc.stdout if proc.returncode == 0 else ""
    if command.partial and proc.stdout.strip():
        return proc.stdout
    if any(text.lower() in proc.stderr.lower() for text in command.tolerate):
        return proc.stdout
    raise SchedulerCommandError(command.argv, proc.returncode, proc.stdout, proc.stderr)


def run_unchecked(command: Command) -> subprocess.CompletedProcess:
    """Run ``command`` and return its result whatever its exit status (the caller judges it);
    a missing command or a time-out still raise."""
    try:
        return subprocess.run(list(command.argv), capture_output=True, text=True, timeout=command.timeout,
                              stdin=subprocess.DEVNULL, env=dict(command.env) if command.env else None)
    except FileNotFoundError:
        raise SchedulerUnavailableError(command.argv[0], command.scheduler) from None
    except OSError as exc:    # there, but not runnable (permissions, a broken interpreter line)
        raise SchedulerCommandError(command.argv, None, hint=f"cannot run {command.argv[0]}: "
                                    f"{exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise SchedulerCommandError(command.argv, None, hint=f"{command.argv[0]} did not answer within "
                                    f"{command.timeout:g} s: is the {command.scheduler} controller up?") from None


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def available(program: str) -> bool:
    return shutil.which(program) is not None


def query(ids: Sequence[str], size: int, build: Callable[[Sequence[str]], Command],
          parse: Callable[[str], Dict[str, T]]) -> Dict[str, T]:
    """Ask about ``ids`` in chunks of ``size`` (command-line length, controller load)."""
    found: Dict[str, T] = {}
    for chunk in chunks(ids, size):
        found.update(parse(run(build(chunk))))
    return found


# --- the study's own scripts ---

class _LineCounter:
    """Lines in a file that only grows, reading each byte once however often it is asked."""

    def __init__(self, path: Path):
        self.path, self.offset, self.lines = path, 0, 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                new = handle.read()
        except OSError:
            return self.lines
        self.offset += len(new)
        self.lines += new.count(b"\n")
        return self.lines


def _read(handle) -> str:
    handle.seek(0)
    return handle.read().decode("utf-8", errors="replace")


@contextmanager
def _forwarding(child: subprocess.Popen) -> Iterator[List[int]]:
    """While the script runs, SIGINT/SIGTERM/SIGHUP to us go to it (its trap rolls back) and we go
    on waiting for it, so its messages are shown and nothing is left half done. Yields the list
    of signals received."""
    received: List[int] = []

    def forward(signum, frame):
        received.append(signum)
        try:
            # as SIGTERM: bash ignores a SIGINT that its running command (sbatch) did not die of
            child.send_signal(signal.SIGTERM)
        except OSError:
            pass
    if threading.current_thread() is not threading.main_thread():
        yield received      # signal handlers belong to the main thread
        return
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_script(script: Path, cwd: Path, args: Sequence[str] = (), ledger: Optional[Path] = None,
               nodes: int = 0, env: Optional[Mapping[str, str]] = None) -> str:
    """Run a study's bash script (submit.sh, .maestro/resubmit-K.sh) and return what it printed;
    a failure raises SubmitError with its output.

    With ``nodes``, a progress line on a terminal counts the lines the script appends to
    ``ledger`` (each job id is recorded the moment it is known)."""
    argv: List[str] = ["bash", str(script), *args]
    counter = _LineCounter(ledger) if ledger else None
    # output through files, not pipes: a detached child that keeps a pipe open would block us
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            Progress("nodes queued") as progress:
        try:
            child = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=str(cwd),
                                     env=dict(env) if env else None)
        except OSError as exc:
            raise SubmitError(f"cannot run {script}: {exc.strerror}") from None
        with _forwarding(child) as received:
            while True:
                try:
                    child.wait(timeout=Progress.INTERVAL)
                    break
                except subprocess.TimeoutExpired:
                    if counter and nodes and progress.enabled:
                        progress(counter.count(), nodes)
        stdout, stderr = (_read(handle) for handle in (out, err))
    if received and child.returncode != 0:
        raise InterruptedSubmitError(received[0], (stderr.strip() + "\n" + stdout.strip()).strip())
    if received:   # the signal came when nothing was left to stop: the script finished its work
        stdout = (stdout.strip() + f"\nnote: {script.name} had finished its work when the signal came; "
                  f"nothing was rolled back").strip()
    if child.returncode != 0:
        raise SubmitError((stderr.strip() + "\n" + stdout.strip()).strip()
                          or f"{script.name} exited {child.returncode}")
    return stdout.strip()
