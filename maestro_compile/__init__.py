"""maestro_compile: Maestro study specifications compiled ahead of time into scheduler-native DAGs.

The Python API (docs/api.md) is importable from here: validate, compile, open, Study, and the
errors. It is imported on first use, so that `import maestro_compile` (and the CLI's start) stays
cheap."""
__version__ = "0.1.0"

from .errors import (CompileError, GraphError, InstallError, InterruptedSubmitError, MaestroCompileError,  # noqa: F401
                     OutputExistsError, Problem, SchedulerCommandError, SchedulerUnavailableError, SpecError,
                     StudyDirError, SubmitError, UsageError, WaitTimeoutError)

_API = {"validate", "compile", "open", "Study", "Problems", "NodeStatus", "Report", "Summary", "State"}


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'maestro_compile' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API)


__all__ = sorted(_API | {"MaestroCompileError", "SpecError", "CompileError", "OutputExistsError", "StudyDirError",
                         "SubmitError", "InterruptedSubmitError", "SchedulerCommandError",
                         "SchedulerUnavailableError", "GraphError", "InstallError", "UsageError",
                         "WaitTimeoutError", "Problem"})
