"""One exception hierarchy; the CLI formats these once and picks the exit code.

Exit codes (docs/cli.md): 0 success; 1 a user error (spec, study directory, refused request);
2 and 3 `run --wait`: a step failed / the study was cancelled (Maestro's FAILURE and CANCELLED);
4 internal error; 64 command-line usage; 69 a scheduler command failed or is not reachable."""
from __future__ import annotations

from typing import Optional, Sequence


class MaestroCompileError(Exception):
    """Base of every error a user can cause; never shown with a traceback."""

    exit_code = 1


class SpecError(MaestroCompileError):
    """The study specification (or a pgen file) is invalid.

    ``problems`` holds one line per problem so that all of them can be reported at once.
    """

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

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


class GraphError(MaestroCompileError):
    """The graph cannot be drawn or written (bad -o/--format, Graphviz missing or failing)."""
