"""What every backend provides. At compile time: capabilities as data and pure rendering of the
planned jobs. At run time: the arguments of the submit script, how to read what the scheduler
says about each node, and how to cancel; `runner` starts every process, `studydir` reads every file."""
from __future__ import annotations

import abc
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Pattern, Sequence, Tuple

from ..errors import CompileError
from ..expand import count
from ..model import File, Node, Study
from ..plan import Capabilities, Plan
from ..render import log_base, render_node_template
from ..runner import Command
from ..states import LedgerEntry, Markers, Runtime, Verdict
from ..studydir import MARKER_SUFFIX, StudyDir
from ..tokens import LAUNCHER_TOKEN


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


def step_location(study: Study, node: Node, key: str) -> str:
    """The "file:line: study[i].run.KEY: " prefix of an error about ``key`` of ``node``'s step."""
    index = next(step.index for step in study.spec.steps if step.name == node.step)
    path = ("study", index, "run", key)
    return f"{study.spec.raw.where(path)}: study[{index}].run.{key}: "


class Backend(abc.ABC):
    name = ""
    script_suffix = ".sh"
    scheduler = ""                       # the scheduler's name for people
    capabilities = Capabilities(arrays=False)
    launchers: Tuple[str, ...] = ()      # the values batch.launcher may take for $(LAUNCHER)
    job_id: Pattern[str] = re.compile(r"[0-9]+")   # a job id in jobs.tsv
    has_queue = True                     # a scheduler's queue (bundles fit its limit); not the local runner
    queue_limit_name = "the cluster's limit on queued jobs"

    # --- cluster facts, read once at compile time (before rendering) ---
    def queue_limit_commands(self, user: str) -> List[Command]:
        """The queries of how many jobs ``user`` may have queued ([]: this scheduler cannot tell)."""
        return []

    def parse_queue_limit(self, texts: Sequence[str], batch: Mapping[str, Any]) -> Optional[int]:
        """The limit for a study with this batch block, from the queries' outputs (None: none known)."""
        return None

    # --- compile time (pure) ---
    def step_context(self, study: Study, node: Node) -> Dict[str, Any]:
        """Values for templates/<name>/step.sh.j2; backends add their directives."""
        shell, directory, retries, rlimit = self._study_values(study)
        return {
            "shell": shell,
            "study_name": study.spec.name,
            "node": node,
            "workspace": directory + node.workspace,
            "script_name": "./" + node.script.rsplit("/", 1)[-1],
            "status_file": directory + log_base(node) + MARKER_SUFFIX,
            "cmd": self.expand_launcher(study, node, node.cmd, "cmd").rstrip("\n"),
            "restart": None,
            "retries": retries,
            "rlimit": rlimit,
            "prefix": "",
            "directives": [],
        }

    def _study_values(self, study: Study) -> Tuple[Any, str, int, int]:
        """What every node's context takes from the study (read once per study, not per node):
        the shell, the study directory with a trailing separator (workspaces are relative), the
        retries and the restart limit."""
        memo = self.__dict__.get("_study_memo")
        if memo is None or memo[0] is not study:
            memo = self.__dict__["_study_memo"] = (study, (
                study.spec.batch.get("shell", "/bin/bash"), os.path.join(str(study.directory), ""),
                int(study.options.get("retries") or 0), int(study.options.get("rlimit", 1))))
        return memo[1]

    # the values of step_context that differ from node to node (the rest is shared by a step's nodes)
    per_node_values = frozenset({"node", "workspace", "script_name", "status_file", "cmd", "restart", "directives"})

    def render_step(self, study: Study, node: Node) -> str:
        return render_node_template(f"{self.name}/step.sh.j2", self.step_context(study, node), self.per_node_values)

    def expand_launcher(self, study: Study, node: Node, text: str, key: str = "cmd") -> str:
        """Replace every $(LAUNCHER) and $(LAUNCHER)[...] in the step's run.``key`` text.

        Errors about a bracket name the spec's file and line of that key."""
        if "$(LAUNCHER)" not in text:  # the common case; finding the spec line costs more than the check
            return text
        where = step_location(study, node, key)
        return LAUNCHER_TOKEN.sub(lambda m: self.launcher(study, node, parse_launcher(node, m.group(1), where)), text)

    def launcher(self, study: Study, node: Node, request: LaunchRequest) -> str:
        """The parallel launch prefix for ``request`` (empty: no launcher)."""
        return ""

    tag_field = "nothing (this backend does not tag its jobs)"

    @staticmethod
    def tag(identity: str) -> str:
        """The mark every job of a study carries, so the scheduler's own query can find them all."""
        return f"maestro_compile:{identity}"

    def array_key(self, study: Study, node: Node) -> Any:
        """What must be equal for nodes to share a job array (their shared header)."""
        return None

    def facts_command(self) -> Optional[Command]:
        """A query of the cluster's own limits (MaxArraySize), run once by the plan pass; None: none."""
        return None

    def parse_max_array_size(self, text: str) -> Optional[int]:
        """The largest job array the cluster allows, from facts_command's output (None: unknown)."""
        return None

    @abc.abstractmethod
    def render_study(self, study: Study, plan: Plan) -> Tuple[Dict[str, File], Dict[str, Any]]:
        """Study-level files (submit.sh, ...) relative to the study directory, and the extra
        entries this backend adds to study.json."""

    # --- run time ---
    def submit_args(self, jobs: int) -> List[str]:
        """Arguments of submit.sh when `maestro submit` runs it."""
        return []

    @abc.abstractmethod
    def runtime(self, study: StudyDir, ledger: Dict[str, LedgerEntry]) -> Runtime:
        """What the scheduler (or local runner) knows beyond the marker files."""

    @abc.abstractmethod
    def judge(self, name: str, markers: Markers, in_ledger: bool, runtime: Runtime) -> Verdict:
        """The state of one node (and why), from its markers and the runtime facts."""

    @abc.abstractmethod
    def cancel(self, study: StudyDir) -> str:
        """Stop running work and prevent the rest; return a summary."""

    # --- maestro resubmit ---
    @abc.abstractmethod
    def render_resubmit(self, study: StudyDir, names: Sequence[str], layout: Dict[str, Any]) -> str:
        """The text of .maestro/resubmit-<K>.sh, which submits the nodes ``names`` (in manifest
        order) again; ``layout`` holds the values of templates/base/resubmit.sh.j2."""

    def resubmit_plan(self, study: StudyDir, names: Sequence[str]) -> str:
        """One line saying how the nodes ``names`` would be submitted again (resubmit --dry);
        raises SubmitError when the resubmission would be refused. Empty: nothing to add."""
        return ""

    def activity(self, runtime: Runtime) -> Optional[str]:
        """What of the study still runs beyond its nodes' states (resubmit waits for it), if anything."""
        return None

    def may_still_run(self, name: str, runtime: Runtime) -> bool:
        """A node shown UNKNOWN whose job may in fact still run (resubmit refuses to replace it)."""
        return False
