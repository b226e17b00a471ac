"""Backends by name: an explicit registry, no plugin discovery."""
from __future__ import annotations

from ..errors import CompileError
from ..schema import suggest
from .base import Backend
from .flux import FluxBackend
from .local import LocalBackend
from .lsf import LsfBackend
from .pbs import PbsBackend
from .slurm import SlurmBackend

BACKENDS = {"local": LocalBackend, "slurm": SlurmBackend, "lsf": LsfBackend, "flux": FluxBackend,
            "pbs": PbsBackend}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; unknown names get a suggestion."""
    if name in BACKENDS:
        return BACKENDS[name]()
    known = sorted(BACKENDS)
    raise CompileError(f"unknown backend '{name}'{suggest(name, known)} (known: {', '.join(known)})")
