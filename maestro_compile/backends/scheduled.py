"""What the batch-scheduler backends share: scripts with directives, arrays, one submission entry
shape for submit.sh and resubmission scripts, status from the scheduler's accounting, cancel."""
from __future__ import annotations

import abc
import heapq
import re
import shlex
import time
from dataclasses import dataclass, field
from functools import lru_cache
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from .. import runner, studydir
from ..errors import CompileError, SchedulerCommandError, StudyDirError, SubmitError
from ..expand import count, make_safe
from ..model import File, Node, Study
from ..plan import Dependency, Job, Plan
from ..progress import Progress
from ..render import log_base, render_template
from ..runner import Command
from ..states import (ACTIVE, ANCESTOR_FAILURES, LedgerEntry, Markers, NativeStatus, Runtime, State,
                      Verdict)
from ..studydir import StudyDir
from .base import Backend, step_location

# Linux execve limits: one argument (MAX_ARG_STRLEN) and, with the environment, all of them (ARG_MAX)
MAX_WORD = 100 * 1024
MAX_LINE = 1024 * 1024
ID_LENGTH = 20        # the longest job id a ${Jn} can expand to (Flux ids in decimal: 17 digits)
CANCEL_CHUNK = 1000   # ids per cancel command (command-line length)
INTERRUPTED = "the submission was interrupted: `maestro submit` recovers it"
RESTART_MARGIN = 60   # seconds a job's limit leaves beyond its attempts' (in-job restarts)
CANCEL_TIMEOUT = 60   # seconds for one cancel command; a controller that does not answer is an error


def split_user_directives(cmd: str, prefix: str) -> Tuple[List[str], str]:
    """Directive lines written at the top of a step's cmd (``#SBATCH --constraint=gpu``).

    The scheduler only reads directives before the first command, so they move to the header;
    the rest of cmd is returned unchanged.
    """
    if prefix and prefix not in cmd:   # the common case, and what the loop below would find
        return [], cmd
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


def _same_values(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Equal, and of the same types (1, 1.0 and True are equal but print differently)."""
    return first is second or (first == second and all(type(first[k]) is type(second[k]) for k in first))


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
    return _directive_text(str(value))


@lru_cache(maxsize=4096)   # a step's nodes share their description, the study its tag
def _directive_text(text: str) -> str:
    return " ".join(text.splitlines()).replace("\\", "\\\\").replace('"', '\\"')


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


@dataclass(frozen=True)
class Target:
    """One job to submit, the same shape for submit.sh (from the plan) and for a resubmission
    script (from study.json): the backend turns it into its submit command's words."""

    index: int                        # the job's shell variable is J<index>
    label: str                        # a node's name, or a step's for an array
    what: str                         # "node X" / "step S: N node(s) as a job array", for the comment
    script: Path
    workdir: Path
    nodes: Tuple[str, ...]            # task order for an array
    array: bool = False
    depends: Tuple[Dependency, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)   # the backend's per-node facts (Flux)
    bundle_sizes: Tuple[int, ...] = ()   # a job of bundles: nodes per task, in task order
    options: Tuple[str, ...] = ()     # further submit-command words (a resubmitted bundle: its nodes)

    @property
    def root(self) -> bool:
        return not self.depends

    @property
    def task_count(self) -> int:
        return len(self.bundle_sizes) if self.bundle_sizes else len(self.nodes)


class ScheduledBackend(Backend):
    prefix = ""
    submit_command = ""     # the command submit.sh needs
    cancel_command = ""     # cancels the job ids given as arguments (rollback)
    first_task = 0          # index of an array's first task
    status_chunk = 500      # ids per status query (command-line length, controller load)
    cancel_chunk = CANCEL_CHUNK   # ids per cancel command

    # --- compile time ---
    @abc.abstractmethod
    def node_directives(self, study: Study, node: Node) -> List[str]:
        """Directive texts (without the prefix) of a node's own script."""

    @abc.abstractmethod
    def resource_directives(self, study: Study, node: Node) -> List[str]:
        """The part of the directives that must be equal for nodes to share an array.
        (Backends whose capabilities have arrays also define array_directives.)
        They may depend on the study and on the node's step, resources, walltime, whether it has a
        restart command and the directive lines of its cmd, on nothing else (shared_directives
        reuses them while those are equal)."""

    def shared_directives(self, study: Study, node: Node) -> List[str]:
        """resource_directives, built again only when its inputs differ from those of the step's
        previous node: the nodes of a step mostly share them, and 30,000 nodes would build the
        same list 30,000 times (the plan compares them, the script prints them)."""
        inputs = (node.walltime, node.restart is None, split_user_directives(node.cmd, self.prefix)[0])
        memo = self.__dict__.setdefault("_directives_memo", {})   # step -> (study, resources, inputs, directives)
        known = memo.get(node.step)
        if (known is None or known[0] is not study or known[2] != inputs
                or not _same_values(known[1], node.resources)):
            known = memo[node.step] = (study, node.resources, inputs, self.resource_directives(study, node))
        return known[3]

    def array_key(self, study: Study, node: Node) -> Any:
        return self.shared_directives(study, node)

    def user_directives(self, study: Study, node: Node) -> List[str]:
        """The directive lines at the top of the node's cmd. Only lines written as directives in the
        spec count: a substituted value that adds one (a newline, then "#SBATCH ...") is an error."""
        found = split_user_directives(node.cmd, self.prefix)[0]
        if found:
            written = self._written_directives(study).get(node.step, 0)
            if len(found) != written:
                raise CompileError(f"{step_location(study, node, 'cmd')}node '{node.name}': a substituted value adds "
                                   f"a '{self.prefix}' line to the top of cmd; scheduler directives can only be "
                                   f"written in the spec itself (a value must not contain a newline there)")
        return found

    def _written_directives(self, study: Study) -> Dict[str, int]:
        """step -> how many directive lines its cmd has as written in the spec (before substitution)."""
        memo = self.__dict__.get("_written_memo")
        if memo is None or memo[0] is not study:
            counts = {step.name: len(split_user_directives(str(step.run.get("cmd") or ""), self.prefix)[0])
                      for step in study.spec.steps}
            memo = self.__dict__["_written_memo"] = (study, counts)
        return memo[1]

    @staticmethod
    def restarts_in_job(node: Node) -> bool:
        """Backends that cannot requeue a job under its id run a step's restarts inside the job."""
        return node.restart is not None and bool(node.walltime)

    def in_job_time_limit(self, study: Study, node: Node) -> Optional[int]:
        """The job's limit when restarts run inside it: room for every attempt (None: unlimited)."""
        seconds = node.walltime
        if seconds and self.restarts_in_job(node):
            rlimit = int(study.options.get("rlimit", 1))
            return None if rlimit == 0 else seconds * (1 + rlimit) + RESTART_MARGIN
        return seconds

    @staticmethod
    def walltime(node: Node) -> Optional[int]:
        """The step's walltime in seconds (None: no limit), read once at expansion."""
        return node.walltime

    def step_context(self, study: Study, node: Node) -> Dict[str, Any]:
        context = super().step_context(study, node)
        # the header (node_directives -> resource_directives -> user_directives) also checks that no
        # substituted value added a directive line
        body = split_user_directives(node.cmd, self.prefix)[1]
        context["cmd"] = self.expand_launcher(study, node, body, "cmd").rstrip("\n")
        if node.restart is not None and node.walltime:
            context["restart"] = self.expand_launcher(study, node, node.restart, "restart").rstrip("\n")
        context["prefix"] = self.prefix
        context["directives"] = self.node_directives(study, node)
        return context

    def array_script(self, job: Job) -> str:
        suffix = f".array{job.chunk}" if job.chunk else ".array"
        return f"{job.step}/{make_safe(job.step)}{suffix}{self.script_suffix}"

    def render_study(self, study: Study, plan: Plan) -> Tuple[Dict[str, File], Dict[str, Any]]:
        files: Dict[str, File] = {}
        scripts = bundle_scripts(plan, self.script_suffix)
        nodes = {node.name: (i, node) for i, node in enumerate(study.nodes)} if scripts else {}
        for job in plan.jobs:
            if job.bundles:
                text = self.render_bundle(study, job, scripts[job.index], nodes)
                files[scripts[job.index]] = File(text, executable=True)
            elif job.array:
                log = self.array_script(job).rsplit("/", 1)[1][:-len(self.script_suffix)] + ".log"
                text = render_template(f"{self.name}/array.sh.j2", shell=study.spec.batch.get("shell", "/bin/bash"),
                                       prefix=self.prefix, directives=self.array_directives(study, job, log),
                                       step=job.step, study_name=study.spec.name,
                                       study_dir=str(study.directory),
                                       scripts=[n.script for n in job.nodes],
                                       logs=[log_base(n) for n in job.nodes])
                files[self.array_script(job)] = File(text, executable=True)
        files[studydir.SUBMIT_SCRIPT] = File(self.render_submit(study, plan), executable=True)
        return files, self.manifest_extra(study, plan)

    def bundle_directives(self, study: Study, job: Job, log: str) -> List[str]:
        """The header of a job of bundles (backends whose capabilities have bundles)."""
        raise CompileError(f"bundles are not supported by the {self.name} backend yet")

    def render_bundle(self, study: Study, job: Job, script: str, nodes: Mapping[str, Tuple[int, Node]]) -> str:
        """The script of a job of bundles: task i runs the nodes of bundle i (docs/big-sweeps.md).
        ``nodes``: every node of the study by name, with its position (parents in study order)."""
        log = script.rsplit("/", 1)[1][:-len(self.script_suffix)] + ".log"
        parents = sorted({p for node in job.nodes for p in node.depends}, key=lambda name: nodes[name][0])
        parent_index = {name: i for i, name in enumerate(parents)}
        procs, cores = allocation(study, job.nodes[0])[1], count(job.nodes[0].resources.get("cores per task"))
        firsts, start = [], 0
        for bundle in job.bundles:
            firsts.append(start)
            start += len(bundle)
        return render_template(f"{self.name}/bundle.sh.j2", shell=study.spec.batch.get("shell", "/bin/bash"),
                               prefix=self.prefix, directives=self.bundle_directives(study, job, log),
                               step=job.step, study_name=study.spec.name, study_dir=str(study.directory),
                               array=job.array, bundle_size=max(len(b) for b in job.bundles),
                               scripts=[n.script for n in job.nodes], logs=[log_base(n) for n in job.nodes],
                               names=[n.name for n in job.nodes], firsts=firsts + [start],
                               parents=[" ".join(str(parent_index[p]) for p in n.depends) for n in job.nodes],
                               parent_names=parents, parent_logs=[log_base(nodes[p][1]) for p in parents],
                               cpus_per_node=(procs or 1) * (cores or 1),
                               restart_node=any(n.restart is not None and n.walltime for n in job.nodes),
                               **self.bundle_context(study, job))

    def bundle_context(self, study: Study, job: Job) -> Dict[str, Any]:
        """Values the backend's bundle template needs beyond the shared ones."""
        return {}

    # --- submission entries: one shape for submit.sh and resubmission scripts ---
    @abc.abstractmethod
    def job_args(self, target: Target, throttle: int) -> List[str]:
        """Shell words after ``submit VAR LABEL`` in the submit script (user data quoted; ${Jn}
        left for the shell); a target without dependencies is submitted held."""

    def node_facts(self, study: Study, node: Node) -> Dict[str, Any]:
        """Per-node facts job_args needs beyond the target (compile time)."""
        return {}

    def stored_facts(self, study: StudyDir, name: str) -> Dict[str, Any]:
        """The same facts at resubmit time, from study.json and the node's script."""
        return {}

    def release_value(self, target: Target) -> Optional[str]:
        """What the release of a held root needs beyond its id (Flux: its urgency)."""
        return None

    def entry(self, target: Target, throttle: int) -> Dict[str, Any]:
        parents = ", ".join(f"{d.kind} J{d.job}" + (f" task {d.task}" if d.task is not None else "")
                            for d in target.depends) or "none (held until everything is queued)"
        return {"var": f"J{target.index}", "label": target.label,
                "comment": f"J{target.index} = {' '.join(target.what.splitlines())}; waits for: {parents}",
                "args": self.job_args(target, throttle), "root": target.root, "array": target.array,
                "nodes": list(target.nodes), "release": self.release_value(target),
                "bundles": ",".join(map(str, target.bundle_sizes))}

    def _template(self, entries: List[Dict[str, Any]], **values: Any) -> str:
        """templates/<name>/submit.sh.j2 for these entries: submit.sh, or with
        layout=base/resubmit.sh.j2 a resubmission script."""
        return render_template(f"{self.name}/submit.sh.j2", jobs=entries, scheduler=self.scheduler,
                               submit_command=self.submit_command, cancel_command=self.cancel_command,
                               first_task=self.first_task, **values)

    def plan_targets(self, study: Study, plan: Plan) -> List[Target]:
        targets = []
        scripts = bundle_scripts(plan, self.script_suffix)
        for job in plan.jobs:
            head = job.nodes[0]
            if job.bundles:
                what = f"step {job.step}: {len(job.nodes)} node(s) in {len(job.bundles)} bundle(s)" + \
                    (" as a job array" if job.array else "")
                script, workdir = scripts[job.index], study.directory / job.step
            elif job.array:
                what, script = f"step {job.step}: {len(job.nodes)} node(s) as a job array", self.array_script(job)
                workdir = study.directory / job.step
            else:
                what, script, workdir = f"node {head.name}", head.script, study.directory / head.workspace
            targets.append(Target(job.index, job.step if job.array else head.name, what, study.directory / script,
                                  workdir, tuple(n.name for n in job.nodes), job.array, job.depends,
                                  self.node_facts(study, head), tuple(len(b) for b in job.bundles)))
        return targets

    def render_submit(self, study: Study, plan: Plan) -> str:
        throttle = int(study.options.get("throttle") or 0)
        entries = [self.entry(target, throttle) for target in self.plan_targets(study, plan)]
        return self._template(entries, study_name=study.spec.name, array_count=plan.array_count,
                              bundle_count=sum(1 for job in plan.jobs if job.bundles),
                              tag=self.tag(study.identity), tag_field=self.tag_field,
                              node_count=len(study.nodes), largest_array=plan.largest_array,
                              uri=self.uri(study.spec.batch))

    def manifest_extra(self, study: Study, plan: Plan) -> Dict[str, Any]:
        """study.json entries of this backend: the planned jobs, for people and tools to read."""
        scripts = bundle_scripts(plan, self.script_suffix)

        def script(job: Job) -> str:
            return scripts[job.index] if job.bundles else self.array_script(job) if job.array else job.nodes[0].script
        def depends(job: Job) -> List[Dict[str, Any]]:
            return [{"job": d.job, "kind": d.kind, **({"task": d.task} if d.task is not None else {})}
                    for d in job.depends]
        extra = {"jobs": [{"step": j.step, "array": j.array, "tasks": j.tasks, "script": script(j),
                           **({"bundles": [len(b) for b in j.bundles]} if j.bundles else {}),
                           "depends": depends(j)} for j in plan.jobs],
                 "throttle": study.options.get("throttle") or 0}
        bundled = {job.step: len(job.bundles[0]) for job in plan.jobs if job.bundles}
        if bundled:
            extra["bundles"] = bundled    # step -> nodes per bundle: status judges those nodes by their markers
        if plan.max_queued:
            extra["max_queued"] = plan.max_queued   # resubmit keeps to it
        return extra

    @staticmethod
    def uri(batch: Mapping[str, Any]) -> Optional[str]:
        """The scheduler instance to submit to (Flux's batch.uri); None: the default."""
        return None

    # --- maestro resubmit: chained like submit.sh; nodes of bundles run in bundles again ---
    def resubmit_plan(self, study: StudyDir, names: Sequence[str]) -> str:
        units = self._resubmit_units(study, names)
        bundled = sum(1 for unit in units if unit.script)
        return (f"would queue {len(units)} job(s)" + (f", {bundled} of them bundles" if bundled else "")
                + (f" (the study was compiled to fit {study.manifest.get('max_queued')})"
                   if study.manifest.get("max_queued") else ""))

    def _resubmit_units(self, study: StudyDir, names: Sequence[str]) -> List["ResubmitUnit"]:
        """The jobs of a resubmission, refused when they are more than the study's queue limit."""
        units = resubmit_units(study, names, self.selects_bundle_nodes)
        limit = study.manifest.get("max_queued") or 0
        if limit and len(units) > limit:
            bundled = sum(1 for unit in units if unit.script)
            how = (f"{bundled} of them bundles, each of its step's bundle size at most" if bundled
                   else "each node a job of its own")
            raise SubmitError(f"resubmitting {len(names)} node(s) would queue {len(units)} job(s) ({how}), more "
                              f"than the {limit} the study was compiled to fit (docs/big-sweeps.md); resubmit part "
                              f"of them with --only, or compile the spec again into a new study directory")
        return units

    def render_resubmit(self, study: StudyDir, names: Sequence[str], layout: Dict[str, Any]) -> str:
        units = self._resubmit_units(study, names)
        job_of = {name: i for i, unit in enumerate(units) for name in unit.nodes}
        entries = []
        for i, unit in enumerate(units):
            parents = dict.fromkeys(job_of[p] for name in unit.nodes for p in study.manifest.nodes[name].depends
                                    if p in job_of)   # parents that finished are not resubmitted
            depends = tuple(Dependency(job, "afterok") for job in parents)
            target = self.bundle_target(study, i, unit, depends, layout.get("number", 0)) if unit.script \
                else self.node_target(study, i, unit.nodes[0], depends)
            entry = self.entry(target, 0)
            self._check_length(target.label, entry["args"], len(depends))
            entries.append(entry)
        return self._template(entries, layout="base/resubmit.sh.j2", array_count=0, largest_array=0, bundle_count=0,
                              uri=study.manifest.get("flux_uri"), **layout)

    def node_target(self, study: StudyDir, index: int, name: str, depends: Tuple[Dependency, ...]) -> Target:
        info = study.manifest.nodes[name]
        return Target(index, name, f"node {name}", study.file(info.script), study.file(info.workspace), (name,),
                      False, depends, self.stored_facts(study, name))

    def bundle_target(self, study: StudyDir, index: int, unit: "ResubmitUnit", depends: Tuple[Dependency, ...],
                      number: int) -> Target:
        """A bundle of resubmitted nodes: its step's bundle script as a plain job, told which of its
        nodes to run (the script's header holds for any number of them up to its bundle size), with
        a log of its own: <script>.resubmit<number>-<job>.log."""
        script = study.file(unit.script)
        step = study.manifest.nodes[unit.nodes[0]].step
        log = script.with_name(f"{script.name[:-len(self.script_suffix)]}.resubmit{number}-{index}.log")
        chosen = ":".join(map(str, unit.indexes))
        return Target(index, unit.script, f"step {step}: {len(unit.nodes)} node(s) in 1 bundle", script,
                      script.parent, unit.nodes, False, depends,
                      self.resubmitted_bundle_facts(), (len(unit.nodes),),
                      tuple(self.bundle_node_args(step, chosen, log)))

    # Backends that can tell a bundle script which nodes to run set this and bundle_node_args
    selects_bundle_nodes = False

    def bundle_node_args(self, step: str, nodes: str, log: Path) -> List[str]:
        """Submit-command words that give the bundle script MAESTRO_BUNDLE_NODES=``nodes`` and make it
        one plain job with its output in ``log``."""
        raise NotImplementedError

    def resubmitted_bundle_facts(self) -> Dict[str, Any]:
        """The facts of a resubmitted bundle's target (Flux: a `flux batch` job)."""
        return {}

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

    # --- run time: commands and parsers; `runner` runs them ---
    def command_env(self, study: StudyDir) -> Optional[Dict[str, str]]:
        """The environment of the scheduler commands (None: ours)."""
        return None

    def query_id(self, job_id: str) -> str:
        """The id to ask the scheduler about for a ledger id (an array's for one of its tasks)."""
        return job_id

    @abc.abstractmethod
    def status_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Command:
        """The query of these jobs' states."""

    @abc.abstractmethod
    def parse_status(self, text: str) -> Dict[str, NativeStatus]:
        """Ledger id -> what the status command said about it."""

    def fallback_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Optional[Command]:
        """A second query for ids the first did not know (history, a lagging accounting)."""
        return None

    def parse_fallback(self, text: str) -> Dict[str, NativeStatus]:
        return self.parse_status(text)

    @abc.abstractmethod
    def cancel_argv(self, ids: Sequence[str]) -> List[str]:
        """One command that cancels all ``ids``."""

    def release_argv(self, ids: Sequence[str]) -> Optional[List[str]]:
        """One command that releases the held jobs ``ids`` (None: the backend cannot from Python)."""
        return None

    def keeps_held(self, study: StudyDir, name: str) -> bool:
        """A root that stays held after the submission (Flux's priority `held`)."""
        return False

    def tagged_command(self, tag: str, env: Optional[Dict[str, str]]) -> Optional[Command]:
        """The query of our queued jobs carrying ``tag`` (None: this backend does not tag)."""
        return None

    def parse_tagged(self, text: str, tag: str) -> List[str]:
        """The ids of the jobs in ``text`` (tagged_command's output) that carry ``tag``."""
        return []

    def active_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Optional[Command]:
        """The query of which of ``ids`` are still queued or running (None: cannot ask)."""
        return None

    def parse_active(self, text: str) -> List[str]:
        return []

    @abc.abstractmethod
    def native_state(self, native: NativeStatus) -> State:
        """Our state for what the scheduler said about a job."""

    def reason(self, native: NativeStatus, state: State) -> str:
        """The scheduler's reason worth showing for a job in ``state`` ("" for none)."""
        return native.reason if native.reason not in ("None", "") and state != State.FINISHED else ""

    def is_held(self, native: NativeStatus) -> bool:
        """The job waits for the release at the end of submit.sh."""
        return False

    def blocked_by_parent(self, native: NativeStatus) -> bool:
        """The job waits on, or was ended by, a dependency that can no longer be satisfied."""
        return False

    def query(self, ids: Sequence[str], study: StudyDir) -> Dict[str, NativeStatus]:
        """Ledger id -> what the scheduler says, for the ids it still knows."""
        env = self.command_env(study)
        wanted = sorted({self.query_id(i) for i in ids}, key=_id_order)
        result: Dict[str, NativeStatus] = {}
        for chunk in runner.chunks(wanted, self.status_chunk):
            found = self.parse_status(runner.run(self.status_command(chunk, env)))
            known = {self.query_id(job_id) for job_id in found}
            missing = [i for i in chunk if i not in known]
            fallback = self.fallback_command(missing, env) if missing else None
            if fallback is not None:
                found.update(self.parse_fallback(runner.run(fallback)))
            result.update(found)
        return result

    def runtime(self, study: StudyDir, ledger: Dict[str, LedgerEntry]) -> Runtime:
        native = self.query([entry.job_id for entry in ledger.values()], study) if ledger else {}
        return Runtime(submitted_at=submission_time(study, ledger),
                       cancelled=study.is_cancelled(), interrupted=study.submission().interrupted,
                       jobs={node: native.get(entry.job_id) for node, entry in ledger.items()},
                       parents={name: info.depends for name, info in study.manifest.nodes.items()},
                       bundled=bundled_nodes(study))

    def judge(self, name: str, markers: Markers, in_ledger: bool, runtime: Runtime) -> Verdict:
        if not runtime.submitted or not in_ledger:
            return Verdict(State.INITIALIZED, INTERRUPTED if runtime.interrupted else "")
        native = runtime.jobs.get(name)
        by_markers = markers.outcome()
        if name in runtime.bundled:
            return self._judge_bundled(name, markers, native, runtime)
        if native is None:
            # gone from the scheduler's memory and accounting: the markers are all we have
            return by_markers or Verdict(State.UNKNOWN, "the scheduler no longer knows the job and it left no markers")
        state = self.native_state(native)
        if "REQUEUE" in markers and state in ACTIVE:
            return Verdict(state, "requeued to run its restart command")
        if state in (State.RUNNING, State.PENDING) and by_markers and by_markers.state in (State.FINISHED, State.FAILED):
            return by_markers  # the job ended; the scheduler has not caught up yet
        reason = self.reason(native, state)
        if state == State.PENDING and self.is_held(native):
            reason = INTERRUPTED if runtime.interrupted else "held (released once the whole study is queued)"
        if state == State.FAILED and by_markers and by_markers.state in (State.FAILED, State.TIMEDOUT):
            return by_markers
        if state == State.CANCELLED or (state == State.PENDING and self.blocked_by_parent(native)):
            failed = self._failed_ancestor(name, runtime)
            if failed:
                return Verdict(State.CANCELLED, f"ancestor {failed} failed")
        return Verdict(state, reason)

    def bundle_fate(self, native: NativeStatus) -> str:
        """How a bundle's job ended, in a few words for a reason ("TIMEOUT")."""
        return native.state

    def _judge_bundled(self, name: str, markers: Markers, native: Optional[NativeStatus], runtime: Runtime) -> Verdict:
        """A node of a bundle: its job is the bundle's, so its own markers come first; the
        bundle's state only says whether the node may still run (docs/big-sweeps.md)."""
        if "SKIPPED" in markers:
            return Verdict(State.CANCELLED, markers.get("REASON", "an ancestor failed"))
        by_markers = markers.outcome()
        stopped = self.native_state(native) if native is not None else None
        if "REQUEUE" in markers and stopped in ACTIVE:
            # the node requeued its bundle (which holds it alone) to run its restart command
            return Verdict(stopped, "requeued to run its restart command")
        if "SIGNAL" in markers and stopped in (State.CANCELLED, State.TIMEDOUT, State.PREEMPTED, State.NODE_FAIL):
            return Verdict(stopped, f"its bundle was stopped ({self.bundle_fate(native)}) while the node ran")
        if by_markers is not None and by_markers.state != State.RUNNING:
            return by_markers
        if native is None:
            return by_markers or Verdict(State.UNKNOWN, "the scheduler no longer knows the bundle and the node left "
                                                        "no markers")
        state = self.native_state(native)
        if state in ACTIVE:
            if by_markers is not None:
                return Verdict(State.RUNNING)
            reason = "waiting for its turn in its bundle" if state == State.RUNNING else self.reason(native, state)
            if state == State.PENDING and self.is_held(native):
                reason = INTERRUPTED if runtime.interrupted else "held (released once the whole study is queued)"
            return Verdict(State.PENDING, reason)
        if by_markers is not None:   # started, never ended: the bundle was stopped under it
            return Verdict(state if state != State.FINISHED else State.FAILED,
                           f"its bundle ended ({self.bundle_fate(native)}) while the node ran")
        failed = self._failed_ancestor(name, runtime)
        if failed:
            return Verdict(State.CANCELLED, f"ancestor {failed} failed")
        return Verdict(State.CANCELLED, f"its bundle ended ({self.bundle_fate(native)}) before the node started")

    def _failed_ancestor(self, name: str, runtime: Runtime) -> Optional[str]:
        """The nearest ancestor whose job failed or timed out (for the reason column)."""
        queue, seen = list(runtime.parents.get(name, ())), set()
        while queue:
            node = queue.pop(0)
            if node in seen:
                continue
            seen.add(node)
            native = runtime.jobs.get(node)
            if runtime.shown.get(node) in ANCESTOR_FAILURES or \
                    (native and self.native_state(native) in ANCESTOR_FAILURES):
                return node   # failed as status shows it (markers count), or as the scheduler says
            queue.extend(runtime.parents.get(node, ()))
        return None

    def tagged_jobs(self, study: StudyDir) -> List[str]:
        """Every queued job carrying the study's tag, found by the scheduler's own query."""
        if not study.manifest.identity:
            return []    # compiled before studies had an id
        tag = self.tag(study.manifest.identity)
        command = self.tagged_command(tag, self.command_env(study))
        return self.parse_tagged(runner.run(command), tag) if command is not None else []

    def study_jobs(self, study: StudyDir) -> List[str]:
        """The ids to act on for the whole study: its ledger's (arrays by their array id) and its tag's."""
        ledger = study.ledger(self.job_id)
        ids = {self.query_id(entry.job_id) for entry in ledger.values()}
        ids.update(self.tagged_jobs(study))
        return sorted(ids, key=_id_order)

    def still_active(self, study: StudyDir, ids: Sequence[str]) -> List[str]:
        """Which of ``ids`` the scheduler still has queued or running (raises when it cannot tell)."""
        found: List[str] = []
        for chunk in runner.chunks(list(ids), self.status_chunk):
            command = self.active_command(chunk, self.command_env(study))
            if command is None:
                return []
            asked = set(chunk)
            found += [i for i in self.parse_active(runner.run(command)) if i in asked]
        return sorted(set(found), key=_id_order)

    def cancel_jobs(self, study: StudyDir, ids: Sequence[str], settle: float = 20.0) -> None:
        """Cancel ``ids`` and check that none is left queued or running; raises when the scheduler
        refused, could not be reached, or still has some after ``settle`` seconds."""
        env = self.command_env(study)
        with Progress("jobs cancelled") as progress:
            done = 0
            for chunk in runner.chunks(list(ids), self.cancel_chunk):
                runner.run_unchecked(Command(tuple(self.cancel_argv(chunk)), self.scheduler, env=env,
                                             timeout=CANCEL_TIMEOUT))
                done += len(chunk)
                progress(done, len(ids))
        deadline = time.monotonic() + settle
        while True:
            left = self.still_active(study, ids)
            if not left:
                return
            if time.monotonic() > deadline:
                shown = " ".join(left[:20]) + (f" and {len(left) - 20} more" if len(left) > 20 else "")
                raise SchedulerCommandError(self.cancel_argv(left[:3]), None,
                                            hint=f"{len(left)} job(s) of the study are still queued or running "
                                                 f"after the cancel: {shown}")
            time.sleep(1)

    def cancel(self, study: StudyDir) -> str:
        ids = self.study_jobs(study)
        if not ids:
            if study.submission_lock() is None:
                raise StudyDirError(f"{study.path}: the study has not been submitted; nothing to cancel")
            study.mark_cancelled(int(time.time()))
            return "nothing to cancel: no job of the study is queued"
        if self.active_command(ids[:1], None) is None:   # cannot check: cancel every id, as asked
            self.cancel_jobs(study, ids)
            study.mark_cancelled(int(time.time()))
            return f"cancel requested for {len(ids)} job(s) of the study with {self.cancel_argv(['X'])[0]}"
        active = self.still_active(study, ids)
        if active:
            self.cancel_jobs(study, active)
        study.mark_cancelled(int(time.time()))
        return (f"cancelled {len(active)} queued or running job(s) of the study with {self.cancel_argv(['X'])[0]}"
                + (f" ({len(ids) - len(active)} had already ended)" if len(ids) > len(active) else ""))


def bundled_nodes(study: StudyDir) -> FrozenSet[str]:
    """The nodes of the steps compiled into bundles (study.json's "bundles")."""
    steps = study.manifest.get("bundles") or {}
    if not steps:
        return frozenset()
    return frozenset(name for name, info in study.manifest.nodes.items() if info.step in steps)


@dataclass(frozen=True)
class ResubmitUnit:
    """One job of a resubmission: a node of its own, or up to a bundle's worth of nodes of one bundle
    script (``script``, relative to the study) with their ``indexes`` in that script's arrays."""

    nodes: Tuple[str, ...]
    script: str = ""
    indexes: Tuple[int, ...] = ()


def resubmit_units(study: StudyDir, names: Sequence[str], bundles_ok: bool) -> List["ResubmitUnit"]:
    """The jobs of a resubmission of ``names``, parents before children. The nodes of a bundle
    script go into bundles of at most that script's bundle size (in script order), so a
    resubmission never queues more jobs than the study did. Without ``bundles_ok`` (or for scripts
    compiled before bundles could be told their nodes) every node is a job of its own."""
    places = bundle_places(study) if bundles_ok else {}
    units: List[ResubmitUnit] = []
    by_script: Dict[str, List[Tuple[int, str]]] = {}
    for name in names:
        place = places.get(name)
        if place is None:
            units.append(ResubmitUnit((name,)))
        else:
            by_script.setdefault(place[0], []).append((place[1], name))
    sizes = script_bundle_sizes(study)
    for script, members in by_script.items():
        members.sort()
        size = sizes[script]
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            units.append(ResubmitUnit(tuple(n for _, n in chunk), script, tuple(i for i, _ in chunk)))
    return topological(study, units, {name: i for i, name in enumerate(names)})


def topological(study: StudyDir, units: List[ResubmitUnit], position: Mapping[str, int]) -> List[ResubmitUnit]:
    """``units`` ordered so that every unit comes after those holding its nodes' parents; of the
    ready ones, always the one whose first node comes first in the study: nodes of their own keep
    the study's order."""
    unit_of = {name: i for i, unit in enumerate(units) for name in unit.nodes}
    sorter: TopologicalSorter = TopologicalSorter()
    for i, unit in enumerate(units):
        sorter.add(i, *{unit_of[p] for name in unit.nodes for p in study.manifest.nodes[name].depends
                        if p in unit_of and unit_of[p] != i})
    sorter.prepare()
    first = [min(position[name] for name in unit.nodes) for unit in units]
    ready: List[Tuple[int, int]] = []
    ordered: List[ResubmitUnit] = []
    while sorter.is_active():
        for i in sorter.get_ready():
            heapq.heappush(ready, (first[i], i))
        _, i = heapq.heappop(ready)
        ordered.append(units[i])
        sorter.done(i)
    return ordered


def script_bundle_sizes(study: StudyDir) -> Dict[str, int]:
    """bundle script -> its largest bundle (study.json's jobs): its header's time limit holds that many."""
    sizes: Dict[str, int] = {}
    for job in study.manifest.get("jobs") or ():
        if isinstance(job, dict) and job.get("bundles"):
            sizes[job["script"]] = max(sizes.get(job["script"], 1), *job["bundles"])
    return sizes


def bundle_places(study: StudyDir) -> Dict[str, Tuple[str, int]]:
    """node -> (its bundle script, its index in the script's arrays), for the scripts that take
    MAESTRO_BUNDLE_NODES (read from the scripts themselves: study.json does not list their nodes)."""
    places: Dict[str, Tuple[str, int]] = {}
    for script in script_bundle_sizes(study):
        for index, name in enumerate(bundle_script_names(study.file(script))):
            places[name] = (script, index)
    return places


def bundle_script_names(script: Path) -> List[str]:
    """The NAMES array of a bundle script; empty when the script cannot be told which nodes to run
    (compiled before `maestro resubmit` ran bundles)."""
    try:
        lines = script.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SubmitError(f"cannot read the bundle script {script}: {exc.strerror}") from None
    if "NAMES=(" not in lines or not any("MAESTRO_BUNDLE_NODES" in line for line in lines):
        return []
    names = []
    for line in lines[lines.index("NAMES=(") + 1:]:
        if line == ")":
            return names
        names += shlex.split(line)
    raise SubmitError(f"{script}: its NAMES array does not end; compile the spec again")


def bundle_scripts(plan: Plan, suffix: str) -> Dict[int, str]:
    """job index -> the script of each job of bundles: <step>/<step>.bundle[N]<suffix>, N counting
    a step's jobs of bundles from the second (a step needs several past MaxArraySize)."""
    scripts: Dict[int, str] = {}
    seen: Dict[str, int] = {}
    for job in plan.jobs:
        if job.bundles:
            number = seen[job.step] = seen.get(job.step, -1) + 1
            scripts[job.index] = f"{job.step}/{make_safe(job.step)}.bundle{number or ''}{suffix}"
    return scripts


def submission_time(study: StudyDir, ledger: Dict[str, LedgerEntry]) -> Optional[float]:
    """When the study was submitted (the first ledger line, else the lock's stamp); None when not."""
    lock = study.submission_lock()
    if lock is None:
        return None
    stamp = lock.split()[0] if lock.split() else ""
    first = min((e.submitted_at for e in ledger.values()), default=None)
    return first if first is not None else (float(stamp) if stamp.isdigit() else 0.0)


def _id_order(job_id: str) -> Tuple[int, str]:
    """Numeric order of ids (123 before 1000), array tasks after their array."""
    digits = re.match(r"\d*", job_id).group(0)
    return int(digits or 0), job_id


__all__ = ["ScheduledBackend", "Target", "split_user_directives", "read_directives", "directive_value", "truthy",
           "allocation", "sh", "step_location"]
