"""Backends by name: an explicit registry, no plugin discovery."""
from __future__ import annotations

from ..errors import CompileError
from ..schema import suggest
from .base import Backend
from .local import LocalBackend
from .slurm import SlurmBackend

BACKENDS = {"local": LocalBackend, "slurm": SlurmBackend}
PLANNED = ("lsf", "flux")


def get_backend(name: str) -> Backend:
    """The backend called ``name``; unknown names get a suggestion."""
    if name in BACKENDS:
        return BACKENDS[name]()
    if name in PLANNED:
        raise CompileError(f"the {name} backend is not available in this version of maestro_compile; "
                           f"compile with --backend local to run the study on this machine")
    known = sorted(set(BACKENDS) | set(PLANNED))
    raise CompileError(f"unknown backend '{name}'{suggest(name, known)} (known: {', '.join(known)})")
