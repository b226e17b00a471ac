"""maestrowf 1.2.1's command line, accepted with its nearest meaning (docs/migrating.md has the table).

Every maestrowf flag parses. Where its meaning holds here it simply works (`-fg` waits like
`--wait`, `-y` submits without asking); where it cannot hold without a conductor, the nearest thing
is done and one `note:` line on stderr says so, so that scripts keep running. This module holds
those options, the launch prompt, the status layouts, the log file (`-l`) and the handling of
several study directories in one call; cli.py stays the one error boundary."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, TextIO

from .errors import MaestroCompileError, SpecError
from .status import COLUMNS, NodeStatus, _simple_table, summary, table_rows

LAYOUTS = ("flat", "legacy", "narrow")
NARROW = ["Step Name", "State", "Job ID", "Run Time"]      # fits 80 columns for usual names
LOG_NAME = "maestro.log"
QUIET_FROM = 4          # -d 4 (errors) and 5 (critical): no warning or note lines
_verbosity = {"level": 2}


class DefaultJobs(int):
    """-j's default (the number of cores), told apart from a -j the user gave."""


# ------------------------------------------------------------------------------------------
# the options
# ------------------------------------------------------------------------------------------

def global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-l", "--logpath", type=Path, metavar="LOGPATH",
                        help=f"also append the command's messages to this file (a directory: {LOG_NAME} in it)")
    parser.add_argument("-d", "--debug_lvl", type=int, choices=range(1, 6), metavar="1..5",
                        help="maestrowf's log level: 1 = --debug, 4 and 5 hide warnings and notes (default 2)")
    parser.add_argument("-c", "--logstdout", action="store_true",
                        help="accepted for maestrowf; messages always go to the terminal")


def run_options(parser: argparse.ArgumentParser) -> None:
    """maestrowf's `run` flags that `maestro compile`'s options do not already cover."""
    parser.add_argument("-fg", dest="wait", action="store_true",
                        help="maestrowf: the conductor in the foreground; here the same as --wait")
    parser.add_argument("-s", "--sleeptime", type=_seconds, metavar="SECONDS",
                        help="maestrowf's conductor poll interval; here the same as --poll")
    parser.add_argument("-a", "--attempts", type=_attempts, metavar="N",
                        help="run a failed step up to N times in all, inside its job (--retries N-1)")
    parser.add_argument("--dry", action="store_true", help="write the study directory; submit nothing")
    answers = parser.add_mutually_exclusive_group()
    answers.add_argument("-y", "--autoyes", action="store_true", help="submit without asking")
    answers.add_argument("-n", "--autono", action="store_true", help="compile only; do not submit")
    parser.add_argument("--usetmp", action="store_true",
                        help="accepted for maestrowf; the scripts stay in the study directory")


def status_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", choices=LAYOUTS, default="flat",
                        help="flat: every column (default); legacy: Maestro's ten columns only; "
                             "narrow: step, state, job id, run time (small terminals)")
    parser.add_argument("--disable-theme", action="store_true", help="accepted for maestrowf; the table has no theme")
    parser.add_argument("--disable-pager", action="store_true", help="accepted for maestrowf; no pager is used")


def update_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dirs", type=Path, nargs="+", metavar="DIR")
    parser.add_argument("--throttle", type=_non_negative, action="append", metavar="N",
                        help="Slurm, LSF: at most N tasks of each job array still queued run at once "
                             "(Slurm: 0 removes the limit); once for every DIR, or once per DIR")
    parser.add_argument("--rlimit", type=_non_negative, action="append", metavar="N",
                        help="refused: the restart limit is in the submitted scripts")
    parser.add_argument("--sleep", type=_seconds, action="append", metavar="SECONDS",
                        help="accepted; no conductor polls the study (a note says so)")


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got '{text}'")
    return int(text)


def _attempts(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got '{text}'")
    return value


# ------------------------------------------------------------------------------------------
# after parsing: one meaning for every spelling
# ------------------------------------------------------------------------------------------

def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Map maestrowf's spellings onto ours; a contradiction is a usage error (exit 64)."""
    _verbosity["level"] = args.debug_lvl or 2
    args.debug = args.debug or args.debug_lvl == 1
    if args.command == "run":
        if args.attempts is not None:
            if args.retries:
                parser.error("run: give either -a/--attempts N (N runs in all) or --retries N, not both")
            args.retries = args.attempts - 1
            note(f"-a {args.attempts}: maestrowf retries a failed submission; here a step that exits non-zero "
                 f"is run up to {args.attempts} time(s) in all, inside its job (--retries {args.retries})")
        if args.sleeptime is not None:
            args.poll = args.sleeptime
            if not args.wait:
                note(f"-s {args.sleeptime:g}: no conductor polls the study; it sets how often -fg/--wait "
                     f"checks the status")
        if args.usetmp:
            note("--usetmp: the scripts stay in the study directory (each in its node's workspace): the "
                 "scheduler runs them after maestro has exited, so they cannot live in a temporary directory")
    if args.command == "status" and args.csv and len(args.study_dirs) > 1:
        parser.error("status: --csv FILE takes one study directory")
    if args.command == "update":
        for option in ("throttle", "rlimit", "sleep"):
            values = getattr(args, option)
            if values and len(values) not in (1, len(args.study_dirs)):
                parser.error(f"update: give --{option} once (for every directory) or once per directory "
                             f"({len(args.study_dirs)}), not {len(values)} times")
        if not (args.throttle or args.rlimit or args.sleep):
            parser.error("update: nothing to update: give --throttle N (or --rlimit, --sleep)")


def note(message: str) -> None:
    """One line on stderr for a flag whose meaning does not fully hold here (not an error)."""
    if _verbosity["level"] < QUIET_FROM:
        print(f"note: {message}", file=sys.stderr)


def warn(messages: Sequence[str]) -> None:
    if _verbosity["level"] < QUIET_FROM:
        for message in messages:
            print(f"warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------
# run: whether to submit
# ------------------------------------------------------------------------------------------

PROMPT = "Would you like to launch the study? [yn] "


def launch(args: argparse.Namespace, directory: Path, backend: str, stdin: Optional[TextIO] = None) -> bool:
    """Submit the compiled study? --dry and -n: no; -y: yes; else Maestro's question when standard
    input is a terminal, and yes without asking when it is not (scripts, CI, batch jobs)."""
    stdin = stdin or sys.stdin
    if args.dry or args.autono:
        why = "--dry" if args.dry else "-n"
        print(f"not submitted ({why}); submit it with: maestro submit {directory}")
        return False
    if args.autoyes or not _is_terminal(stdin):
        _throttle_note(args, backend)
        return True
    while True:
        sys.stderr.write(PROMPT)
        sys.stderr.flush()
        answer = stdin.readline()
        if not answer:                           # end of input: the safe answer
            sys.stderr.write("\n")
            answer = "n"
        answer = answer.strip().lower()
        if answer in ("y", "yes"):
            _throttle_note(args, backend)
            return True
        if answer in ("n", "no"):
            print(f"not submitted; submit it with: maestro submit {directory}")
            return False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _throttle_note(args: argparse.Namespace, backend: str) -> None:
    if not args.throttle:
        return
    if backend == "local":
        if isinstance(args.jobs, DefaultJobs):
            args.jobs = args.throttle       # maestrowf's study-wide limit is exactly the runner's -j
        return
    if backend == "flux":
        note(f"-t {args.throttle}: Flux has no job arrays: the study is not throttled")
    else:
        note(f"-t {args.throttle}: at most {args.throttle} task(s) of each job array run at once; without a "
             f"conductor the limit is per array, not study-wide")


# ------------------------------------------------------------------------------------------
# status layouts
# ------------------------------------------------------------------------------------------

def format_layout(rows: List[NodeStatus], layout: str) -> str:
    """flat: Maestro's columns plus Reason and the summary (status.format_table); legacy: Maestro's
    ten columns exactly, as maestrowf's older table; narrow: four columns plus Reason."""
    from .status import format_table
    if layout == "flat":
        return format_table(rows)
    data = table_rows(rows)
    if layout == "legacy":
        return _simple_table(data, list(COLUMNS))
    keep = [COLUMNS.index(column) for column in NARROW]
    narrow = [[line[i] for i in keep] for line in data]
    headers = list(NARROW)
    if any(row.reason for row in rows):
        headers.append("Reason")
        for line, row in zip(narrow, rows):
            line.append(row.reason)
    from tabulate import tabulate   # here: importing it costs every command (compile too) 35 ms
    return tabulate(narrow, headers=headers, tablefmt="simple", disable_numparse=True) + "\n\n" + summary(rows)


# ------------------------------------------------------------------------------------------
# several study directories in one call
# ------------------------------------------------------------------------------------------

def each_directory(directories: Sequence[Path], action: Callable[[Path], None], heading: bool = True) -> int:
    """Run ``action`` on every directory, each reported (errors too); the exit code is the highest."""
    worst = 0
    for i, directory in enumerate(directories):
        if heading and len(directories) > 1:
            print(("\n" if i else "") + f"==> {directory} <==", flush=True)
        try:
            action(directory)
        except SpecError as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
            worst = max(worst, exc.exit_code)
        except MaestroCompileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            worst = max(worst, exc.exit_code)
    return worst


def pick(values: Optional[List], index: int):
    """maestrowf's update: an option given once is for every directory, else one per directory."""
    if not values:
        return None
    return values[0] if len(values) == 1 else values[index]


# ------------------------------------------------------------------------------------------
# -l LOGPATH: the messages also go to a file
# ------------------------------------------------------------------------------------------

class _Tee:
    def __init__(self, stream: TextIO, log: TextIO):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


class LogFile:
    """Context: while it is open, stdout and stderr are also appended to the log file."""

    def __init__(self, path: Optional[Path], argv: Sequence[str]):
        self.path, self.argv, self.handle = path, argv, None

    def __enter__(self) -> "LogFile":
        if self.path is None:
            return self
        target = self.path / LOG_NAME if self.path.is_dir() else self.path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(target, "a", encoding="utf-8")
        except OSError as exc:
            raise LogPathError(f"-l {self.path}: cannot write the log file {target}: {exc.strerror}") from None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.handle.write(f"=== {stamp} maestro {' '.join(self.argv)} (pid {os.getpid()})\n")
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(sys.stdout, self.handle), _Tee(sys.stderr, self.handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.handle is not None:
            sys.stdout, sys.stderr = self.saved
            self.handle.close()


class LogPathError(MaestroCompileError):
    """The -l/--logpath file cannot be written."""
