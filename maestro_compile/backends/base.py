"""What every backend provides: rendering at compile time, submit/status/cancel at run time."""
from __future__ import annotations

import abc
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ..errors import CompileError, SubmitError
from ..expand import count
from ..tokens import LAUNCHER_TOKEN

from ..model import File, Node, Study
from ..progress import Progress
from ..render import log_base, render_template


@dataclass(frozen=True)
class LaunchRequest:
    """What one $(LAUNCHER) asks for: the step's counts, or a bracket's [Nn, Mp]."""

    nodes: Optional[int]
    procs: Optional[int]
    cores_per_task: Optional[int]
    gpus: Optional[int]


def parse_launcher(node: Node, bracket: Optional[str], where: str = "") -> LaunchRequest:
    """Maestro's forms: bare (the step's nodes/procs), legacy [N, P], new [Nn, Mp] (any order)."""
    res = node.resources
    nodes, procs = count(res.get("nodes")), count(res.get("procs"))
    request = LaunchRequest(nodes, procs, count(res.get("cores per task")), count(res.get("gpus")))
    if bracket is None:
        return request
    text = bracket.strip()
    legacy = re.fullmatch(r"(\d+)\s*,\s*(\d+)", text)
    if legacy:
        want_nodes, want_procs = int(legacy.group(1)), int(legacy.group(2))
    else:
        parts = dict((unit, int(num)) for num, unit in re.findall(r"(\d+)\s*([np])\b", text))
        leftover = re.sub(r"\d+\s*[np]\b|[,\s]", "", text)
        if leftover or "p" not in parts:
            raise CompileError(f"{where}node '{node.name}': $(LAUNCHER)[{bracket}]: expected [Mp], [Nn, Mp] or [N, M] "
                               f"(N nodes, M processes)")
        want_nodes, want_procs = parts.get("n"), parts["p"]
    for label, want, have in (("nodes", want_nodes, nodes), ("processes", want_procs, procs)):
        if want is not None and (have is None or want > have):
            raise CompileError(f"{where}node '{node.name}': $(LAUNCHER)[{bracket}] asks for {want} {label} but the "
                               f"step requests {have or 'none'} (run.{'nodes' if label == 'nodes' else 'procs'})")
    return LaunchRequest(want_nodes, want_procs, request.cores_per_task, request.gpus)


def launcher_location(study: Study, node: Node, key: str) -> str:
    """The "file:line: study[i].run.KEY: " prefix of a launcher error in ``node``'s step."""
    index = next(step.index for step in study.spec.steps if step.name == node.step)
    path = ("study", index, "run", key)
    return f"{study.spec.raw.where(path)}: study[{index}].run.{key}: "


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
            "workspace": os.path.join(str(study.directory), node.workspace),
            "script_name": "./" + node.script.rsplit("/", 1)[-1],
            "status_file": os.path.join(str(study.directory), f"{base}.status"),
            "cmd": self.expand_launcher(study, node, node.cmd, "cmd").rstrip("\n"),
            "restart": None,
            "retries": int(study.options.get("retries") or 0),
            "rlimit": int(study.options.get("rlimit", 1)),
        }

    def render_step(self, study: Study, node: Node) -> str:
        return render_template(f"{self.name}/step.sh.j2", **self.step_context(study, node))

    def expand_launcher(self, study: Study, node: Node, text: str, key: str = "cmd") -> str:
        """Replace every $(LAUNCHER) and $(LAUNCHER)[...] in the step's run.``key`` text.

        Errors about a bracket name the spec's file and line of that key."""
        if "$(LAUNCHER)" not in text:  # the common case; finding the spec line costs more than the check
            return text
        where = launcher_location(study, node, key)
        return LAUNCHER_TOKEN.sub(lambda m: self.launcher(study, node, parse_launcher(node, m.group(1), where)), text)

    def launcher(self, study: Study, node: Node, request: LaunchRequest) -> str:
        """The parallel launch prefix for ``request`` (empty: no launcher)."""
        return ""

    @abc.abstractmethod
    def render_study(self, study: Study) -> Tuple[Dict[str, File], Dict[str, Any]]:
        """Study-level files (submit.sh, ...) relative to the study directory, and the extra
        entries this backend adds to study.json."""

    def render_study_files(self, study: Study) -> Dict[str, File]:
        return self.render_study(study)[0]

    # --- run time ---
    @abc.abstractmethod
    def submit(self, study_dir: Path, manifest: Mapping[str, Any], jobs: int) -> str:
        """Submit the study; return a short summary for the user."""

    def run_submit_script(self, study_dir: Path, *args: str, nodes: int = 0) -> str:
        """Run the study's submit.sh (the plain-bash product) and return what it printed."""
        return self.run_script(study_dir / "submit.sh", study_dir, *args, nodes=nodes)

    def run_script(self, script: Path, study_dir: Path, *args: str, nodes: int = 0) -> str:
        """Run a submission script of the study (submit.sh, .maestro/resubmit-K.sh) in the study
        directory and return what it printed; a failure raises SubmitError with its output.

        With ``nodes``, a progress line on a terminal counts the lines the script appends to the
        ledger (each job id is recorded the moment it is known)."""
        argv = ["bash", str(script), *args]
        ledger = _LineCounter(study_dir / "jobs.tsv")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                Progress("nodes queued") as progress:
            child = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=str(study_dir))
            while True:
                try:
                    child.wait(timeout=Progress.INTERVAL)
                    break
                except subprocess.TimeoutExpired:
                    if nodes and progress.enabled:
                        progress(ledger.count(), nodes)
            stdout, stderr = (_read(handle) for handle in (out, err))
        if child.returncode != 0:
            raise SubmitError((stderr.strip() + "\n" + stdout.strip()).strip()
                              or f"{script.name} exited {child.returncode}")
        return stdout.strip()

    @abc.abstractmethod
    def runtime_state(self, study_dir: Path, manifest: Mapping[str, Any]) -> Dict[str, Any]:
        """What the scheduler (or local runner) knows beyond the marker files."""

    @abc.abstractmethod
    def node_state(self, name: str, markers: Mapping[str, str], in_ledger: bool, runtime: Mapping[str, Any]):
        """(state, reason) of one node."""

    @abc.abstractmethod
    def cancel(self, study_dir: Path, manifest: Mapping[str, Any]) -> str:
        """Stop running work and prevent the rest; return a summary."""

    # --- maestro resubmit ---
    @abc.abstractmethod
    def render_resubmit(self, study_dir: Path, manifest: Mapping[str, Any], names: Sequence[str],
                        layout: Mapping[str, Any]) -> str:
        """The text of .maestro/resubmit-<K>.sh, which submits the nodes ``names`` (in manifest
        order) again; ``layout`` holds the values of templates/base/resubmit.sh.j2."""

    def activity(self, runtime: Mapping[str, Any]) -> Optional[str]:
        """What of the study still runs beyond its nodes' states (resubmit waits for it), if anything."""
        return None

    def may_still_run(self, name: str, runtime: Mapping[str, Any]) -> bool:
        """A node shown UNKNOWN whose job may in fact still run (resubmit refuses to replace it)."""
        return False
