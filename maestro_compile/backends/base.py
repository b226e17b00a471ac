"""What every backend provides: rendering at compile time, submit/status/cancel at run time."""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Dict, Mapping

from ..model import File, Node, Study
from ..render import log_base, render_template


class Backend(abc.ABC):
    name = ""
    script_suffix = ".sh"

    # --- compile time (pure) ---
    def step_context(self, study: Study, node: Node) -> Dict[str, Any]:
        """Values for templates/<name>/step.sh.j2; backends add their directives."""
        base = log_base(node)
        return {
            "shell": study.spec.batch.get("shell", "/bin/bash"),
            "study_name": study.spec.name,
            "node": node,
            "workspace": str(study.directory / node.workspace),
            "script_name": "./" + node.script.rsplit("/", 1)[-1],
            "status_file": str(study.directory / f"{base}.status"),
            "cmd": self.expand_launcher(node, node.cmd).rstrip("\n"),
        }

    def render_step(self, study: Study, node: Node) -> str:
        return render_template(f"{self.name}/step.sh.j2", **self.step_context(study, node))

    @abc.abstractmethod
    def expand_launcher(self, node: Node, text: str) -> str:
        """Replace $(LAUNCHER) and $(LAUNCHER)[...] in a step's command."""

    @abc.abstractmethod
    def render_study_files(self, study: Study) -> Dict[str, File]:
        """Study-level files (submit.sh, ...), relative to the study directory."""

    def manifest_extra(self, study: Study) -> Dict[str, Any]:
        return {}

    # --- run time ---
    @abc.abstractmethod
    def submit(self, study_dir: Path, manifest: Mapping[str, Any], jobs: int) -> str:
        """Submit the study; return a short summary for the user."""

    @abc.abstractmethod
    def runtime_state(self, study_dir: Path, manifest: Mapping[str, Any]) -> Dict[str, Any]:
        """What the scheduler (or local runner) knows beyond the marker files."""

    @abc.abstractmethod
    def node_state(self, markers: Mapping[str, str], in_ledger: bool, runtime: Mapping[str, Any]):
        """(state, reason) of one node."""

    @abc.abstractmethod
    def cancel(self, study_dir: Path, manifest: Mapping[str, Any]) -> str:
        """Stop running work and prevent the rest; return a summary."""
