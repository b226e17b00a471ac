"""The local backend: the study runs on this machine under a detached bash runner (submit.sh)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Dict, FrozenSet, Mapping, Optional, Sequence, Tuple

from ..errors import StudyDirError, SubmitError
from ..model import File, Node, Study
from ..render import node_indices, render_template
from ..tokens import LAUNCHER_TOKEN
from .base import Backend


class LocalBackend(Backend):
    name = "local"
    script_suffix = ".sh"

    def expand_launcher(self, study: Study, node: Node, text: str, key: str = "cmd") -> str:
        # No scheduler, no parallel launcher: $(LAUNCHER) and $(LAUNCHER)[...] become nothing.
        return LAUNCHER_TOKEN.sub("", text)

    def render_study(self, study: Study) -> Tuple[Dict[str, File], Dict[str, Any]]:
        text = render_template("local/submit.sh.j2", study_name=study.spec.name, nodes=node_indices(study))
        return {"submit.sh": File(text, executable=True)}, {}

    # --- run time ---
    def submit(self, study_dir: Path, manifest: Mapping[str, Any], jobs: int) -> str:
        return self.run_submit_script(study_dir, "--jobs", str(jobs))

    def runtime_state(self, study_dir: Path, manifest: Mapping[str, Any]) -> Dict[str, Any]:
        state_dir = study_dir / ".maestro"
        pid = _read_int(state_dir / "runner.pid")
        done = _read_text(state_dir / "runner.done")
        submitted = _read_text(state_dir / "submitted")
        return {
            "submitted_at": int(submitted.split()[0]) if submitted else None,
            "runner_pid": pid,
            "runner_alive": bool(pid) and done is None and _alive(pid),
            "runner_done": done,
            "cancelled": (state_dir / "cancelled").exists(),
            # after `maestro resubmit`: the nodes the latest runner runs, and whether an earlier run
            # was cancelled (resubmit keeps .maestro/cancelled as cancelled.before-resubmit-<K>)
            "runner_nodes": _read_names(state_dir / "runner.nodes"),
            "cancelled_before": any(state_dir.glob("cancelled.*")),
        }

    def node_state(self, name: str, markers: Mapping[str, str], in_ledger: bool, runtime: Mapping[str, Any]):
        """(state, reason) of one node from its markers and the runner's state."""
        alive, cancelled = runtime["runner_alive"], runtime["cancelled"]
        runner_nodes = runtime.get("runner_nodes")
        if runner_nodes is not None and name not in runner_nodes:
            # not run again by the latest runner: its state is that of the run that ran it
            alive, cancelled = False, cancelled or runtime.get("cancelled_before", False)
        if runtime["submitted_at"] is None:
            return "INITIALIZED", ""
        if "EXIT_CODE" in markers:
            if markers["EXIT_CODE"] == "0":
                return "FINISHED", ""
            if cancelled and "SIGNAL" in markers:
                return "CANCELLED", "study cancelled while the step ran"
            return "FAILED", f"exit code {markers['EXIT_CODE']}"
        if "SKIPPED" in markers:
            return "CANCELLED", markers.get("REASON", "an ancestor failed")
        if "CANCELLED" in markers:
            return "CANCELLED", "study cancelled before the step started"
        if "START" in markers:
            if alive:
                return "RUNNING", ""
            if cancelled:
                return "CANCELLED", "study cancelled while the step ran"
            return "UNKNOWN", "the runner stopped before the step ended (killed or machine restarted?)"
        if alive:
            return "PENDING", ""
        if cancelled:
            return "CANCELLED", "study cancelled before the step started"
        return "UNKNOWN", "never started: the runner is not running"

    # --- maestro resubmit ---
    def render_resubmit(self, study_dir: Path, manifest: Mapping[str, Any], names: Sequence[str],
                        layout: Mapping[str, Any]) -> str:
        if "--nodes FILE" not in (_read_text(study_dir / "submit.sh") or ""):
            raise SubmitError("this study's submit.sh cannot run some nodes again (it was compiled by a version of "
                              "maestro_compile without `maestro resubmit`); compile the study again to resubmit it")
        return render_template("local/resubmit.sh.j2", scheduler="the local runner", submit_command="",
                               cancel_command="", names=list(names), **layout)

    def activity(self, runtime: Mapping[str, Any]) -> Optional[str]:
        if runtime["runner_alive"]:
            return f"the study's runner (pid {runtime['runner_pid']}) is still running"
        return None

    def cancel(self, study_dir: Path, manifest: Mapping[str, Any]) -> str:
        state = self.runtime_state(study_dir, manifest)
        if state["submitted_at"] is None:
            raise StudyDirError(f"{study_dir}: the study has not been submitted; nothing to cancel")
        if not state["runner_alive"]:
            return "nothing to cancel: the study is no longer running"
        pid = state["runner_pid"]
        (study_dir / ".maestro" / "cancelled").write_text(f"{int(time.time())}\n")
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGTERM)  # the runner leads a group holding every step
            else:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return "nothing to cancel: the study is no longer running"
        for _ in range(100):  # the runner marks unstarted steps, then exits
            if not _alive(pid):
                break
            time.sleep(0.05)
        return f"cancelled the study (runner pid {pid}): running steps stopped, the others will not start"


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_names(path: Path) -> Optional[FrozenSet[str]]:
    """The node names of a list file (one per line), or None when there is none."""
    text = _read_text(path)
    return None if text is None else frozenset(line for line in text.splitlines() if line)


def _read_int(path: Path) -> Optional[int]:
    text = _read_text(path)
    return int(text) if text and text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); treat it as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
