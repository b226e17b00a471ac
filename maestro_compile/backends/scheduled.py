"""What the batch-scheduler backends share: scripts with directives, arrays, submit.sh, status."""
from __future__ import annotations

import abc
import math
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import CompileError, StudyDirError, SubmitError
from ..expand import count, make_safe
from ..model import File, Node, Study
from ..plan import Job, group_jobs
from ..render import log_base, render_template
from ..status import read_ledger
from .base import Backend, launcher_location

# Linux execve limits: one argument (MAX_ARG_STRLEN) and, with the environment, all of them (ARG_MAX)
MAX_WORD = 100 * 1024
MAX_LINE = 1024 * 1024
ID_LENGTH = 20        # the longest job id a ${Jn} can expand to (Flux ids in decimal: 17 digits)

# an ancestor in one of these states explains why a descendant was cancelled
ANCESTOR_FAILURES = {"FAILED", "TIMEDOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


def split_user_directives(cmd: str, prefix: str) -> Tuple[List[str], str]:
    """Directive lines written at the top of a step's cmd (``#SBATCH --constraint=gpu``).

    The scheduler only reads directives before the first command, so they move to the header;
    the rest of cmd is returned unchanged.
    """
    lines = cmd.splitlines(keepends=True)
    found, rest = [], 0
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith(prefix + " ") or text == prefix:
            found.append(text[len(prefix):].strip())
            rest = i + 1
        elif text and not text.startswith("#"):
            break
    body = "".join(line for i, line in enumerate(lines) if i >= rest or not
                   (line.strip().startswith(prefix + " ") or line.strip() == prefix))
    return [f for f in found if f], body


def run_command(argv: List[str], scheduler: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run a scheduler query; a missing command means we are not on the scheduler's machines."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)
    except FileNotFoundError:
        raise StudyDirError(f"{argv[0]} is not installed here: run `maestro status` on a machine of the "
                            f"{scheduler} cluster the study was submitted to") from None


def sh(word: Any) -> str:
    return shlex.quote(str(word))


def read_directives(script: Path, prefix: str) -> List[str]:
    """The directive texts of a node script's header, as the scheduler reads them: the lines
    ``<prefix> ...`` before the first command. Read at resubmit time, so edits to them count."""
    try:
        lines = script.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SubmitError(f"cannot read the node script {script}: {exc.strerror}") from None
    return split_user_directives("\n".join(lines[1:]), prefix)[0]   # the same rule as in a cmd; after the shebang


def directive_value(value: Any) -> str:
    """A value inside "...": one line, with quotes and backslashes escaped."""
    text = " ".join(str(value).splitlines())
    return text.replace("\\", "\\\\").replace('"', '\\"')


def truthy(value: Any) -> bool:
    """exclusive: a parameter can only give a string, and "False" must mean false."""
    if isinstance(value, dict):
        value = value.get("allocation", False)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def allocation(study: Study, node: Node) -> Tuple[Optional[int], Optional[int]]:
    """(nodes, procs) of a node's job: the step's values, else the batch block's."""
    batch, res = study.spec.batch, node.resources
    return count(res.get("nodes")) or count(batch.get("nodes")), count(res.get("procs")) or count(batch.get("procs"))


def duration_seconds(value: Any) -> Optional[int]:
    """A Maestro walltime for LSF and Flux: HH:MM:SS, HH:MM, D-HH[:MM[:SS]], or minutes as a number.

    None when there is no limit (empty, "inf"); ValueError when the text is none of these."""
    if value in (None, "") or str(value).strip().lower() in ("inf", "infinity", "unlimited"):
        return None
    text = str(value).strip()
    try:
        return math.ceil(float(text) * 60)
    except ValueError:
        pass
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not match:
        raise ValueError(f"cannot read {text!r} as a walltime (expected HH:MM:SS, HH:MM, D-HH:MM:SS or minutes)")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


class ScheduledBackend(Backend):
    prefix = ""

    # --- compile time ---
    @abc.abstractmethod
    def node_directives(self, study: Study, node: Node) -> List[str]:
        """Directive texts (without the prefix) of a node's own script."""

    @abc.abstractmethod
    def resource_directives(self, study: Study, node: Node) -> List[str]:
        """The part of the directives that must be equal for nodes to share an array."""

    @abc.abstractmethod
    def array_directives(self, study: Study, job: Job, log: str) -> List[str]:
        """Directives of an array dispatcher script."""

    def shared_directives(self, study: Study, node: Node) -> List[str]:
        """resource_directives, computed once per node: the plan compares them, the script prints them."""
        memo = self.__dict__.setdefault("_directives_memo", {})
        known = memo.get(id(node))
        if known is None or known[0] is not node:   # the node check guards against a reused id()
            known = memo[id(node)] = (node, self.resource_directives(study, node))
        return known[1]

    def max_array_size(self) -> int:
        return 1000

    def walltime(self, study: Study, node: Node) -> Optional[int]:
        """The step's walltime in seconds (None: no limit); errors name the spec's file and line."""
        try:
            return duration_seconds(node.resources.get("walltime"))
        except ValueError as exc:
            raise CompileError(f"{launcher_location(study, node, 'walltime')}node '{node.name}': {exc}") from None

    def step_context(self, study: Study, node: Node) -> Dict[str, Any]:
        context = super().step_context(study, node)
        body = split_user_directives(node.cmd, self.prefix)[1]
        context["cmd"] = self.expand_launcher(study, node, body, "cmd").rstrip("\n")
        if node.restart is not None and node.resources.get("walltime") not in (None, ""):
            context["restart"] = self.expand_launcher(study, node, node.restart, "restart").rstrip("\n")
        context["prefix"] = self.prefix
        context["directives"] = self.node_directives(study, node)
        return context

    def plan_jobs(self, study: Study) -> Tuple[Job, ...]:
        limit = int(study.options.get("max_array_size") or self.max_array_size())
        arrays = not study.options.get("no_arrays")

        def same_header(nodes: Sequence[Node]) -> bool:
            head = nodes[0]
            if all(n.resources == head.resources and (n.restart is None) == (head.restart is None)
                   and self.prefix not in n.cmd for n in nodes):
                return True   # equal inputs give equal directives: no need to build them here
            first = self.shared_directives(study, head)
            return all(self.shared_directives(study, n) == first for n in nodes[1:])
        return group_jobs(study.nodes, limit, same_header, arrays)

    def array_script(self, job: Job) -> str:
        suffix = f".array{job.chunk}" if job.chunk else ".array"
        return f"{job.step}/{make_safe(job.step)}{suffix}{self.script_suffix}"

    def render_study(self, study: Study) -> Tuple[Dict[str, File], Dict[str, Any]]:
        jobs = self.plan_jobs(study)  # once: it compares every node's header, may ask scontrol
        files: Dict[str, File] = {}
        for job in jobs:
            if job.array:
                log = self.array_script(job).rsplit("/", 1)[1][:-len(self.script_suffix)] + ".log"
                text = render_template(f"{self.name}/array.sh.j2", shell=study.spec.batch.get("shell", "/bin/bash"),
                                       prefix=self.prefix, directives=self.array_directives(study, job, log),
                                       step=job.step, study_name=study.spec.name,
                                       study_dir=str(study.directory),
                                       scripts=[n.script for n in job.nodes],
                                       logs=[log_base(n) for n in job.nodes])
                files[self.array_script(job)] = File(text, executable=True)
        files["submit.sh"] = File(self.render_submit(study, jobs), executable=True)
        return files, self._manifest_jobs(study, jobs)

    # how submit.sh submits, for templates/<name>/submit.sh.j2 (which extends base/submit.sh.j2)
    scheduler = ""          # the scheduler's name for people
    submit_command = ""     # the command submit.sh needs
    cancel_command = ""     # cancels the job ids given as arguments (rollback)
    first_task = 0          # index of an array's first task

    @abc.abstractmethod
    def submit_args(self, study: Study, job: Job, script: str) -> List[str]:
        """Shell words after ``submit VAR LABEL`` in submit.sh (user data quoted; ${Jn} left for the shell)."""

    def render_submit(self, study: Study, jobs: Sequence[Job]) -> str:
        entries = []
        for job in jobs:
            script = self.array_script(job) if job.array else job.nodes[0].script
            what = (f"step {job.step}: {len(job.nodes)} node(s) as a job array" if job.array
                    else f"node {job.nodes[0].name}")
            parents = ", ".join(f"{d.kind} J{d.job}" + (f" task {d.task}" if d.task is not None else "")
                                for d in job.depends) or "none (held until everything is queued)"
            entries.append({"var": f"J{job.index}", "label": job.nodes[0].name if not job.array else job.step,
                            "comment": f"J{job.index} = {' '.join(what.splitlines())}; waits for: {parents}",
                            "args": self.submit_args(study, job, script), "root": job.root,
                            "array": job.array, "nodes": [n.name for n in job.nodes],
                            **self.job_extra(study, job)})
        return self._render_submit_template(entries, study_name=study.spec.name,
                                            array_count=sum(1 for j in jobs if j.array),
                                            node_count=len(study.nodes),
                                            largest_array=max((len(j.nodes) for j in jobs if j.array), default=0),
                                            **self.submit_context(study))

    def _render_submit_template(self, entries: List[Dict[str, Any]], **values: Any) -> str:
        """templates/<name>/submit.sh.j2 for these job entries: submit.sh, or with
        layout=base/resubmit.sh.j2 a resubmission script."""
        return render_template(f"{self.name}/submit.sh.j2", jobs=entries, scheduler=self.scheduler,
                               submit_command=self.submit_command, cancel_command=self.cancel_command,
                               first_task=self.first_task, **values)

    def submit_context(self, study: Study) -> Dict[str, Any]:
        """Extra values for the backend's submit.sh.j2."""
        return {}

    def job_extra(self, study: Study, job: Job) -> Dict[str, Any]:
        """Extra values of one job's entry in submit.sh.j2."""
        return {}

    def _manifest_jobs(self, study: Study, jobs: Sequence[Job]) -> Dict[str, Any]:
        return {"jobs": [{"step": j.step, "array": j.array, "tasks": len(j.nodes),
                          "script": self.array_script(j) if j.array else j.nodes[0].script,
                          "depends": [{"job": d.job, "kind": d.kind, **({"task": d.task} if d.task is not None else {})}
                                      for d in j.depends]} for j in jobs],
                "throttle": study.options.get("throttle") or 0}

    # --- maestro resubmit: each node again as a job of its own, chained like submit.sh ---
    @abc.abstractmethod
    def resubmit_args(self, study_dir: Path, manifest: Mapping[str, Any], name: str,
                      parents: Sequence[int]) -> List[str]:
        """Shell words after ``submit VAR LABEL`` that submit node ``name`` alone, as submit.sh would;
        ``parents``: the J numbers of its resubmitted parents (none: the job is held)."""

    def resubmit_job_extra(self, manifest: Mapping[str, Any], name: str) -> Dict[str, Any]:
        """Extra values of one node's entry (as job_extra gives at compile time)."""
        return {}

    def resubmit_context(self, manifest: Mapping[str, Any]) -> Dict[str, Any]:
        """Extra values for the backend's submit.sh.j2 (as submit_context gives at compile time)."""
        return {}

    def render_resubmit(self, study_dir: Path, manifest: Mapping[str, Any], names: Sequence[str],
                        layout: Mapping[str, Any]) -> str:
        position = {name: i for i, name in enumerate(names)}
        entries = []
        for i, name in enumerate(names):
            # parents that finished are not resubmitted: nothing to wait for
            parents = [position[p] for p in manifest["nodes"][name]["depends"] if p in position]
            waits = ", ".join(f"afterok J{p}" for p in parents) or "none (held until everything is queued)"
            args = self.resubmit_args(study_dir, manifest, name, parents)
            self._check_length(name, args, len(parents))
            entries.append({"var": f"J{i}", "label": name, "comment": f"J{i} = node {name}; waits for: {waits}",
                            "args": args, "root": not parents, "array": False, "nodes": [name],
                            **self.resubmit_job_extra(manifest, name)})
        return self._render_submit_template(entries, layout="base/resubmit.sh.j2", array_count=0, largest_array=0,
                                            **self.resubmit_context(manifest), **layout)

    def _check_length(self, name: str, args: Sequence[str], parents: int) -> None:
        """Refuse, before anything is written, a submission line the system could not run: a node
        waiting for thousands of resubmitted parents lists all of them (no arrays to wait for)."""
        def expanded(word: str) -> int:
            return len(word) + word.count("${J") * ID_LENGTH
        if max(map(expanded, args)) > MAX_WORD or sum(map(expanded, args)) > MAX_LINE:
            raise SubmitError(f"node {name} would wait for {parents} resubmitted parents, more than one "
                              f"{self.submit_command} command line can hold (each resubmitted node is a job of "
                              f"its own); compile the spec into a new study directory and submit that instead, "
                              f"or make the parents finish (--only cannot leave them out)")

    # --- run time ---
    def submit(self, study_dir: Path, manifest: Mapping[str, Any], jobs: int) -> str:
        return self.run_submit_script(study_dir, nodes=len(manifest["nodes"]))

    @abc.abstractmethod
    def query(self, ids: Sequence[str], manifest: Mapping[str, Any]) -> Dict[str, Tuple[str, str, str]]:
        """job id -> (native state, reason, exit code) for the ids the scheduler still knows."""

    def command_env(self, manifest: Mapping[str, Any]) -> Optional[Dict[str, str]]:
        """The environment of the scheduler commands (None: ours)."""
        return None

    @abc.abstractmethod
    def native_state(self, native: Tuple[str, str, str]) -> str:
        """Our state for what ``query`` returned about a job."""

    def is_held(self, native: Tuple[str, str, str]) -> bool:
        """The job waits for the release at the end of submit.sh."""
        return False

    def blocked_by_parent(self, native: Tuple[str, str, str]) -> bool:
        """The job waits on, or was ended by, a dependency that can no longer be satisfied."""
        return False

    @abc.abstractmethod
    def cancel_argv(self, ids: Sequence[str]) -> List[str]:
        """One command that cancels all ``ids``."""

    def runtime_state(self, study_dir: Path, manifest: Mapping[str, Any]) -> Dict[str, Any]:
        ledger = read_ledger(study_dir)
        submitted = (study_dir / ".maestro" / "submitted").exists()
        ids = [entry[1] for entry in ledger.values()]
        native = self.query(ids, manifest) if ids else {}
        return {"submitted_at": min((e[0] for e in ledger.values()), default=None) if submitted else None,
                "jobs": {node: native.get(entry[1]) for node, entry in ledger.items()},
                "parents": {name: info["depends"] for name, info in manifest["nodes"].items()},
                "cancelled": (study_dir / ".maestro" / "cancelled").exists()}

    def node_state(self, name: str, markers: Mapping[str, str], in_ledger: bool,
                   runtime: Mapping[str, Any]) -> Tuple[str, str]:
        if runtime["submitted_at"] is None or not in_ledger:
            return "INITIALIZED", ""
        native = runtime["jobs"].get(name)
        marker_state = _marker_state(markers)
        if native is None:
            # gone from the scheduler's memory and accounting: the markers are all we have
            return marker_state or ("UNKNOWN", "the scheduler no longer knows the job and it left no markers")
        state = self.native_state(native)
        if "REQUEUE" in markers and state in ("RUNNING", "PENDING"):
            return state, "requeued to run its restart command"
        if state in ("RUNNING", "PENDING") and marker_state and marker_state[0] in ("FINISHED", "FAILED"):
            return marker_state  # the job ended; the scheduler has not caught up yet
        reason = native[1] if native[1] not in ("None", "") and state != "FINISHED" else ""
        if state == "PENDING" and self.is_held(native):
            reason = "held (released once the whole study is queued)"
        if state == "FAILED" and marker_state and marker_state[0] in ("FAILED", "TIMEDOUT"):
            return marker_state
        if state in ("CANCELLED", "PENDING") and (state == "CANCELLED" or self.blocked_by_parent(native)):
            failed = self._failed_ancestor(name, runtime)
            if failed:
                return "CANCELLED", f"ancestor {failed} failed"
        return state, reason

    def _failed_ancestor(self, name: str, runtime: Mapping[str, Any]) -> Optional[str]:
        """The nearest ancestor whose job failed or timed out (for the reason column)."""
        parents = runtime["parents"]
        queue, seen = list(parents.get(name, ())), set()
        while queue:
            node = queue.pop(0)
            if node in seen:
                continue
            seen.add(node)
            native = runtime["jobs"].get(node)
            if runtime.get("states", {}).get(node) in ANCESTOR_FAILURES or \
                    (native and self.native_state(native) in ANCESTOR_FAILURES):
                return node   # failed as status shows it (markers count), or as the scheduler says
            queue.extend(parents.get(node, ()))
        return None

    def cancel(self, study_dir: Path, manifest: Mapping[str, Any]) -> str:
        ledger = read_ledger(study_dir)
        if not ledger:
            raise StudyDirError(f"{study_dir}: the study has not been submitted; nothing to cancel")
        (study_dir / ".maestro").mkdir(exist_ok=True)
        (study_dir / ".maestro" / "cancelled").write_text(f"{int(time.time())}\n")
        argv = self.cancel_argv([entry[1] for entry in ledger.values()])
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                env=self.command_env(manifest))
        if result.returncode != 0 and result.stderr.strip():
            # cancelling jobs that already ended is not an error for the user
            return f"cancel requested ({' '.join(argv[:1])}: {result.stderr.strip().splitlines()[0]})"
        return f"cancelled {len(argv) - 1} job(s) of the study with {argv[0]}"


def _marker_state(markers: Mapping[str, str]) -> Optional[Tuple[str, str]]:
    if "EXIT_CODE" in markers:
        if markers["EXIT_CODE"] == "0":
            return "FINISHED", ""
        if "TIMEOUT" in markers:
            return "TIMEDOUT", f"timed out after {markers.get('RESTART', '0')} restart(s)"
        return "FAILED", f"exit code {markers['EXIT_CODE']}"
    if "START" in markers:
        return "RUNNING", ""
    return None

