"""One exception hierarchy; the CLI formats these once and picks the exit code.

Exit codes (docs/cli.md): 0 success; 1 a user error (spec, study directory, refused request);
2 and 3 `run --wait`: a step failed / the study was cancelled (Maestro's FAILURE and CANCELLED);
4 internal error; 64 command-line usage; 69 a scheduler command failed or is not reachable."""
from __future__ import annotations

import re
from typing import Optional, Sequence


class Problem(str):
    """One problem of a spec: its message text (a ``str``, exactly as the CLI prints it after
    ``error:``) with its parts, read from that text: ``file`` (the spec's path as given, ``<text>``
    or ``<dict>`` for a spec given in memory, None when the problem is not in the spec, e.g. a
    --pgen file), ``line`` (1-based, None when unknown: always for a dict), ``key`` (the key path,
    e.g. ``study[0].run.cmd``, None when the problem is not at one key) and ``message`` (the rest)."""

    file: Optional[str]
    line: Optional[int]
    key: Optional[str]
    message: str

    def __new__(cls, text: str, file: Optional[str] = None, line: Optional[int] = None,
                key: Optional[str] = None, message: Optional[str] = None) -> "Problem":
        problem = super().__new__(cls, text)
        problem.file, problem.line, problem.key = file, line, key
        problem.message = text if message is None else message
        return problem

    @classmethod
    def parse(cls, text: str, source: Optional[str]) -> "Problem":
        """Split ``<source>[:line[:column]]: [key path: ]message``; ``source`` names the spec."""
        if isinstance(text, Problem):
            return text
        if not source or not (text == source or text.startswith(source + ":")):
            return cls(text)
        rest = text[len(source):]
        position = _POSITION.match(rest)
        line = int(position.group(1)) if position.group(1) else None
        rest = rest[position.end():]
        key = _KEY.match(rest)
        if key:
            return cls(text, source, line, key.group(1), rest[key.end():])
        return cls(text, source, line, None, rest)

    def __repr__(self) -> str:
        return (f"Problem(file={self.file!r}, line={self.line!r}, key={self.key!r}, "
                f"message={self.message!r})")

    def __reduce__(self):
        return (Problem, (str(self), self.file, self.line, self.key, self.message))


_POSITION = re.compile(r"(?::(\d+)(?::\d+)?)?:?\s*")
_KEY = re.compile(r"(top level|[^\s:'\"]+?): ")   # a key path has no blanks; the message comes after


class MaestroCompileError(Exception):
    """Base of every error a user can cause; never shown with a traceback."""

    exit_code = 1


class SpecError(MaestroCompileError):
    """The study specification (or a pgen file) is invalid.

    ``problems`` holds one line per problem so that all of them can be reported at once.
    """

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(map(str, self.problems)))

    def __reduce__(self):  # rebuilt from its problems when it crosses a process boundary
        return (type(self), (self.problems,))


class CompileError(MaestroCompileError):
    """The spec is valid but cannot be turned into a study directory."""


class OutputExistsError(MaestroCompileError):
    """The study directory already exists; we never overwrite a user's data."""


class StudyDirError(MaestroCompileError):
    """A directory given to submit/status/cancel is not a usable study directory."""


class SubmitError(MaestroCompileError):
    """Submitting (or cancelling) a study failed."""


class InterruptedSubmitError(SubmitError):
    """A signal stopped `maestro submit`; the submit script was told to stop (its rollback ran)."""

    exit_code = 130

    def __init__(self, signum: int, output: str):
        self.signum = signum
        name = {2: "SIGINT", 15: "SIGTERM", 1: "SIGHUP"}.get(signum, f"signal {signum}")
        super().__init__(f"interrupted by {name}; the submit script was told to stop and said:\n{output}".rstrip())


class InstallError(MaestroCompileError):
    """The package is installed incompletely (e.g. templates missing)."""


class WaitTimeoutError(MaestroCompileError):
    """Study.wait(timeout=...) gave up: the study could still change when the time was up."""


EXIT_USAGE = 64        # sysexits EX_USAGE: the command line is wrong
EXIT_SCHEDULER = 69    # sysexits EX_UNAVAILABLE: a scheduler command failed or is not reachable
COMMAND_SHOWN = 300    # characters of a failed command line quoted in a message


class SchedulerCommandError(MaestroCompileError):
    """A scheduler command (sbatch, sacct, bsub, flux ...) failed or did not answer."""

    exit_code = EXIT_SCHEDULER

    def __init__(self, argv: Sequence[str], returncode: Optional[int], stdout: str = "", stderr: str = "",
                 hint: Optional[str] = None):
        self.argv, self.returncode, self.stdout, self.stderr = list(argv), returncode, stdout, stderr
        detail = (stderr or stdout).strip()
        message = f"{argv[0]} exited {returncode}" if returncode is not None else f"{argv[0]} failed"
        if detail:
            message += f": {detail}"
        shown = " ".join(argv)
        message += f" (command: {shown[:COMMAND_SHOWN]}{'...' if len(shown) > COMMAND_SHOWN else ''})"
        if hint:
            message += f"\n{hint}"
        super().__init__(message)


class SchedulerUnavailableError(MaestroCompileError):
    """A scheduler command is not installed where maestro runs (not on the cluster's machines)."""

    exit_code = EXIT_SCHEDULER

    def __init__(self, program: str, scheduler: str):
        self.program, self.scheduler = program, scheduler
        super().__init__(f"{program} is not installed here: run this command on a machine of the {scheduler} "
                         f"cluster the study was submitted to")


class UsageError(MaestroCompileError):
    """A request that cannot mean anything: an unknown step or state to show, a bad option value
    given to the Python API (the CLI's own parser catches those first)."""

    exit_code = EXIT_USAGE


class GraphError(MaestroCompileError):
    """The graph cannot be drawn or written (bad -o/--format, Graphviz missing or failing)."""
