"""One exception hierarchy; the CLI formats these once and picks the exit code."""
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


class InstallError(MaestroCompileError):
    """The package is installed incompletely (e.g. templates missing)."""


class SchedulerCommandError(MaestroCompileError):
    """A scheduler command (sbatch, sacct, bsub, flux ...) failed."""

    exit_code = 3

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str = "", stderr: str = "",
                 hint: Optional[str] = None):
        self.argv, self.returncode, self.stdout, self.stderr = list(argv), returncode, stdout, stderr
        detail = (stderr or stdout).strip()
        message = f"{argv[0]} exited {returncode}"
        if detail:
            message += f": {detail}"
        message += f" (command: {' '.join(argv)})"
        if hint:
            message += f"\n{hint}"
        super().__init__(message)
