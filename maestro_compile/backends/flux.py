"""Flux: `# flux:` scripts, one job per node chained with --dependency=afterok, status from flux jobs;
bundles (docs/big-sweeps.md) as `flux batch` jobs that run their nodes in a Flux instance of their own."""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import shlex
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..bundles import time_limit
from ..errors import CompileError, InstallError, SubmitError
from ..expand import count, make_safe
from ..model import File, Node, Study
from ..plan import Capabilities, Job, Plan
from ..render import templates_dir
from .. import runner
from ..runner import Command
from ..states import NativeStatus, State
from ..studydir import STATE_DIR, StudyDir
from ..walltime import flux_duration
from .base import LaunchRequest
from .scheduled import ScheduledBackend, Target, read_directives, sh, truthy

# `flux jobs` status (state, or result once inactive) -> our state
STATES = {"NEW": State.PENDING, "DEPEND": State.PENDING, "PRIORITY": State.PENDING, "SCHED": State.PENDING,
          "RUN": State.RUNNING, "CLEANUP": State.RUNNING, "COMPLETED": State.FINISHED, "FAILED": State.FAILED,
          "CANCELED": State.CANCELLED, "TIMEOUT": State.TIMEDOUT}
# Maestro's priority names -> Flux urgency (0-31; 16 is Flux's default). Maestro rejects "low" and
# "expedited" although its schema allows them; here they mean 8 and 31.
URGENCY = {"held": 0, "minimal": 1, "low": 8, "medium": 16, "high": 24, "expedite": 31, "expedited": 31}
HELD = "held"
# the bulk submission: submit.sh runs `flux python SUBMITTER PLAN jobs.tsv EPOCH`
SUBMITTER = "flux-submit.py"
PLAN = "flux-plan.jsonl"
# flux-core 0.88 accepts a job's dependencies at a cost that grows faster than their number (one
# job with 10,000 afterok: 20 s of the broker; 1,000: 0.18 s). A job with more parents than this
# waits instead on gather jobs of at most this many parents each (`batch.max_dependencies`).
MAX_DEPENDENCIES = 1000
GATHER_LIMIT = "1m"     # a gather job runs `true`


def urgency(priority: Any) -> Optional[int]:
    """Flux urgency of a step's `priority`: a name, or a fraction 0.0-1.0 of the highest (31)."""
    if priority in (None, ""):
        return None
    if isinstance(priority, str):
        return URGENCY[priority.strip().lower()]
    return math.ceil(31 * float(priority))


def one_word(value: Any) -> str:
    """A shell word on one line (a directive line must not be split by a newline)."""
    return sh(" ".join(str(value).splitlines()))


def allocation_args(args: Any) -> List[str]:
    """Maestro's batch.allocation_args / launcher_args: {setattr|S: {...}, setopt|o: {...}, conf: {...}}."""
    if not isinstance(args, Mapping):
        return []
    words = []
    for keys, option in ((("setattr", "S"), "--setattr"), (("setopt", "o"), "--setopt"), (("conf",), "--conf")):
        for key in keys:
            for name, value in _flatten(args.get(key) or {}):
                words.append(f"{option}={one_word(name)}" if value is None else
                             f"{option}={one_word(f'{name}={_text(value)}')}")
    return words


def _flatten(mapping: Mapping, prefix: str = ""):
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class FluxBackend(ScheduledBackend):
    name = "flux"
    script_suffix = ".flux.sh"
    prefix = "# flux:"
    scheduler = "Flux"
    submit_command = "flux"
    cancel_command = "flux_cancel"   # submit.sh's function: flux-submit.py --cancel, else flux cancel
    cancel_chunk = 50000             # ids per `flux python submit.py --cancel` (below ARG_MAX)
    # no job arrays: one job per node, and one per bundle
    capabilities = Capabilities(arrays=False, directive_prefix=prefix, bundles=True)
    # flux-core has no limit on a user's queued jobs (flux-accounting's max_active_jobs is not read:
    # give --max-queued); queue_limit_commands asks nothing
    queue_limit_name = "the Flux instance's limit on queued jobs"

    # --- compile time ---
    def launcher(self, study: Study, node: Node, request: LaunchRequest) -> str:
        words = ["flux", "run"]
        if request.nodes:
            words += ["-N", str(request.nodes)]
        if request.procs:
            words += ["-n", str(request.procs)]
        exclusive = node.resources.get("exclusive")
        if isinstance(exclusive, Mapping) and truthy(exclusive.get("launcher", False)):
            words.append("--exclusive")
        else:
            if request.cores_per_task:
                words += ["-c", str(request.cores_per_task)]
            if request.gpus:
                words += ["-g", str(request.gpus)]
        return " ".join(words + allocation_args(study.spec.batch.get("launcher_args")))

    def mode(self, node: Node) -> str:
        """`batch` (a Flux instance of its own, so `flux run` inside places the tasks) for a step that
        asks for nodes or procs, unless it says `nested: false`; `submit` (one task) otherwise."""
        res = node.resources
        wants_allocation = count(res.get("nodes")) or count(res.get("procs"))
        return "batch" if wants_allocation and res.get("nested", True) is not False else "submit"


    def time_limit(self, study: Study, node: Node) -> Optional[int]:
        """The job's limit: the walltime, or room for every attempt when the restarts run inside."""
        return self.in_job_time_limit(study, node)

    def resource_directives(self, study: Study, node: Node) -> List[str]:
        batch = study.spec.batch
        lines = self.allocation_words(node)
        limit = self.time_limit(study, node)
        if limit:
            lines.append(f"-t {flux_duration(limit)}")
        if batch.get("queue"):
            lines.append(f"-q {one_word(batch['queue'])}")
        if batch.get("bank"):
            lines.append(f"--bank={one_word(batch['bank'])}")
        lines += allocation_args(batch.get("allocation_args"))
        lines += self.user_directives(study, node)
        return lines

    def allocation_words(self, node: Node) -> List[str]:
        """What one node's job asks of its instance: nodes, tasks, cores, gpus, exclusive."""
        res = node.resources
        nodes, procs = count(res.get("nodes")), count(res.get("procs"))
        cores, gpus = count(res.get("cores per task")), count(res.get("gpus"))
        lines = []
        if nodes:
            lines.append(f"-N {nodes}")
        if procs or not nodes:
            lines.append(f"-n {procs or 1}")
        if cores:
            lines.append(f"-c {cores}")
        if gpus:
            # per slot (batch) or per task (submit); Maestro spreads a batch job's gpus over its nodes
            lines.append(f"-g {math.ceil(gpus / nodes) if nodes and self.mode(node) == 'batch' else gpus}")
        if truthy(res.get("exclusive", False)) and nodes:
            lines.append("-x")
        return lines

    def node_directives(self, study: Study, node: Node) -> List[str]:
        base = make_safe(node.job_name)
        return ([f"--job-name={one_word(node.job_name)}", f"--output={base}.out", f"--error={base}.err"]
                + self.shared_directives(study, node))

    # --- bundles (docs/big-sweeps.md) ---
    def bundle_directives(self, study: Study, job: Job, log: str) -> List[str]:
        """The header one node of the step gets (its queue, bank and own `# flux:` lines included),
        with a time limit for the bundle's nodes run one after another: the bundle's instance."""
        head = job.nodes[0]
        lines = [line for line in self.shared_directives(study, head) if not line.startswith("-t ")]
        seconds = time_limit(job, lambda node: self.time_limit(study, node))
        if seconds:
            lines.append(f"-t {flux_duration(seconds)}")
        return [f"--job-name={make_safe(log[:-len('.log')])}", f"--output={log}", f"--error={log}"] + lines

    def bundle_context(self, study: Study, job: Job) -> Dict[str, Any]:
        """How each node is launched inside the bundle's instance: as at the top level (`flux batch`
        or `flux submit`), with its own allocation and walltime; the queue, bank and the step's own
        `# flux:` lines are the top-level queue's, so they stay on the bundle."""
        head = job.nodes[0]
        words = self.allocation_words(head)     # options and numbers: nothing to quote
        limit = self.time_limit(study, head)     # with `restart`, room for every attempt
        if limit:
            words.append(f"-t {flux_duration(limit)}")
        return {"mode": self.mode(head), "launch": words}

    def step_context(self, study: Study, node: Node) -> Dict[str, Any]:
        context = super().step_context(study, node)
        context["mode"] = self.mode(node)
        context["limit"] = node.walltime
        if not self.restarts_in_job(node):
            context["restart"] = None
        return context

    # --- submission ---
    def node_facts(self, study: Study, node: Node) -> Dict[str, Any]:
        """`flux batch` or `flux submit`, the urgency, and (submit) the directives to repeat."""
        mode = self.mode(node)
        return {"mode": mode, "urgency": urgency(node.resources.get("priority")),
                "directives": self.node_directives(study, node) if mode == "submit" else []}

    def stored_facts(self, study: StudyDir, name: str) -> Dict[str, Any]:
        known = study.manifest.get("flux_nodes")
        if known is None:
            raise SubmitError("this study was compiled by a version of maestro_compile without `maestro resubmit` "
                              "for Flux (study.json has no flux_nodes); compile it again to resubmit it")
        facts = {"mode": "submit", "urgency": None, **known.get(name, {})}
        script = study.file(study.manifest.nodes[name].script)
        directives = []
        if facts["mode"] == "submit":   # flux submit does not read the script's header: repeat it
            for text in read_directives(script, self.prefix):
                try:
                    directives += [sh(word) for word in shlex.split(text)]
                except ValueError as exc:
                    raise SubmitError(f"{script}: cannot read the directive '{self.prefix} {text}': {exc}") from None
        return {**facts, "directives": directives}

    def plan_targets(self, study: Study, plan: Plan) -> List[Target]:
        """A bundle is always a `flux batch` job (its nodes run in its own instance), whatever the
        mode of its nodes; `flux batch` reads its header from the script."""
        return [dataclasses.replace(target, facts=dict(target.facts, mode="batch", directives=[]))
                if target.bundle_sizes else target for target in super().plan_targets(study, plan)]

    @staticmethod
    def dependency_scheme(target: Target) -> str:
        """afterok, but afterany for a bundle: it exits 0 when its nodes ran, whatever they returned,
        and its script skips the nodes whose parents did not finish (their markers say), so it starts
        once its parents' jobs ended, however (cancelled, timed out, a plain parent job that failed)."""
        return "afterany" if target.bundle_sizes else "afterok"

    def job_args(self, target: Target, throttle: int) -> List[str]:
        """`flux batch|submit` words for one job: held when it has no parents (released at the end of
        the submit script), else chained with afterok (a bundle: afterany) on each parent's ${Jn}."""
        facts = target.facts
        args = [facts["mode"], *facts["directives"]]
        if target.root:
            args.append("--urgency=hold")
        elif facts.get("urgency") is not None:
            args.append(f"--urgency={facts['urgency']}")
        scheme = self.dependency_scheme(target)
        args += [f"--dependency={scheme}:${{J{d.job}}}" for d in target.depends]
        return args + list(target.options) + [f"--cwd={sh(target.workdir)}", sh(target.script)]

    selects_bundle_nodes = True

    def bundle_node_args(self, step: str, nodes: str, log: Path) -> List[str]:
        return [sh(f"--env=MAESTRO_BUNDLE_NODES={nodes}"), sh(f"--output={log}"), sh(f"--error={log}")]

    def resubmitted_bundle_facts(self) -> Dict[str, Any]:
        """A bundle is a `flux batch` job whatever its nodes' mode; its header is in its script."""
        return {"mode": "batch", "directives": [], "urgency": None}

    def plan_entry(self, target: Target) -> Dict[str, Any]:
        """One line of flux-plan.jsonl: the node's `flux batch|submit` command line (without
        dependencies and urgency, which the submitter adds), the jobs it waits for, its urgency and
        the urgency a held root is released to."""
        facts = target.facts
        words = [facts["mode"]]
        for text in facts["directives"]:
            try:
                words += shlex.split(text)
            except ValueError as exc:
                raise CompileError(f"node {target.label}: cannot read the directive '{self.prefix} {text}': "
                                   f"{exc}") from None
        words += [f"--cwd={target.workdir}", str(target.script)]
        entry = {"job": target.index, "node": target.label, "flux": words,
                 "after": [d.job for d in target.depends], "urgency": facts.get("urgency"),
                 "release": self.release_value(target) if target.root else None}
        if target.bundle_sizes:   # every node of the bundle gets its id in jobs.tsv
            entry.update(dependency=self.dependency_scheme(target), nodes=list(target.nodes))
        return entry

    def gather_command(self, study: Study) -> List[str]:
        """The `flux submit` line of a gather job: one task running `true` in .maestro/, in the
        study's queue and bank (a step's own `# flux: -q` line does not reach it)."""
        batch = study.spec.batch
        words = ["submit", "-n", "1", "-t", GATHER_LIMIT]
        if batch.get("queue"):
            words.append(f"--queue={batch['queue']}")
        if batch.get("bank"):
            words.append(f"--bank={batch['bank']}")
        return words + [f"--cwd={study.directory / STATE_DIR}", "true"]

    def render_study(self, study: Study, plan: Plan):
        files, extra = super().render_study(study, plan)
        entries = [self.plan_entry(target) for target in self.plan_targets(study, plan)]
        entries = with_gather_jobs(entries, max_dependencies(study.spec.batch), self.gather_command(study))
        files[PLAN] = File("".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries))
        files[SUBMITTER] = File(submitter_text())
        return files, extra

    def render_submit(self, study: Study, plan: Plan) -> str:
        """submit.sh: the lock, the ledger and the rollback in bash; the jobs are submitted by
        flux-submit.py from flux-plan.jsonl (resubmission scripts submit job by job)."""
        return self._template([], bulk=True, study_name=study.spec.name, array_count=0,
                              tag=str(study.directory), tag_field=self.tag_field,
                              node_count=len(study.nodes), largest_array=0, uri=self.uri(study.spec.batch))

    def render_submit_job_by_job(self, study: Study, plan: Plan) -> str:
        """A submit.sh that runs one `flux batch|submit` process per job (as resubmission scripts
        do): the baseline of benchmarks/flux_submit.py."""
        return super().render_submit(study, plan)

    def release_value(self, target: Target) -> Optional[str]:
        """The urgency a held root gets at release: its priority's, or none for priority `held`."""
        wanted = target.facts.get("urgency")
        return "default" if wanted is None else (None if wanted == 0 else str(wanted))

    def resubmit_facts(self, study: Study) -> Dict[str, Any]:
        """Per node, what its submission line needs beyond the script: `flux batch` or `flux submit`,
        and its urgency. Only nodes that differ from `submit` at the default urgency are listed."""
        facts = {}
        for node in study.nodes:
            mode, wanted = self.mode(node), urgency(node.resources.get("priority"))
            if mode != "submit" or wanted is not None:
                facts[node.name] = {"mode": mode, **({"urgency": wanted} if wanted is not None else {})}
        return facts

    @staticmethod
    def uri(batch: Mapping[str, Any]) -> Optional[str]:
        return batch.get("uri") or batch.get("flux_uri") or None

    def manifest_extra(self, study: Study, plan: Plan) -> Dict[str, Any]:
        extra = super().manifest_extra(study, plan)
        uri = self.uri(study.spec.batch)
        if uri:
            extra["flux_uri"] = str(uri)
        extra["flux_nodes"] = self.resubmit_facts(study)
        return extra

    # --- run time ---
    def command_env(self, study: StudyDir) -> Optional[Dict[str, str]]:
        uri = study.manifest.get("flux_uri")
        return dict(os.environ, FLUX_URI=uri) if uri else None

    def query(self, ids: Sequence[str], study: StudyDir) -> Dict[str, NativeStatus]:
        """One request for the whole study: `flux python jobs.py SINCE` lists every job of the user
        that is active or ended after the study was first submitted (job-list, only the fields
        status reads), whatever the number of ids; jobs the instance has purged are not listed,
        their markers tell."""
        lock = (study.submission_lock() or "").split()
        since = max(0, int(lock[0]) - 60) if lock and lock[0].isdigit() else 0   # a minute of clock skew
        found = self.parse_status(runner.run(self.list_command(since, self.command_env(study))))
        return {job_id: found[job_id] for job_id in ids if job_id in found}

    def list_command(self, since: int, env: Optional[Dict[str, str]]) -> Command:
        return Command(("flux", "python", str(package_file("jobs.py")), str(since)), self.scheduler, env=env)

    def status_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Command:
        """`flux jobs` for these ids, as the backend contract asks; `query` does not use it (one
        job-list request instead of a `flux jobs` per chunk of 500 ids: 5 s for 3,001 nodes).
        Ids the instance no longer knows (purged) are reported on stderr."""
        return Command(("flux", "jobs", "-a", "-c", "0", "--json", *ids), self.scheduler, partial=True,
                       tolerate=("unknown",), env=env)

    def parse_status(self, text: str) -> Dict[str, NativeStatus]:
        return parse_jobs_json(text)

    def native_state(self, native: NativeStatus) -> State:
        if native.state == "FAILED" and self.blocked_by_parent(native):
            return State.CANCELLED   # Flux fails a job whose dependency can never be satisfied
        return STATES.get(native.state, State.UNKNOWN)

    def is_held(self, native: NativeStatus) -> bool:
        return native.reason == HELD

    def blocked_by_parent(self, native: NativeStatus) -> bool:
        return native.reason.startswith("dependency")

    # --- finding the study's jobs: every job of it runs in a workspace inside the study directory ---
    tag_field = "working directory (inside the study directory)"

    def tagged_jobs(self, study: StudyDir) -> List[str]:
        command = Command(("flux", "jobs", "-f", "active", "-n", "-o", "{id.dec}|{cwd}"), self.scheduler,
                          timeout=60, env=self.command_env(study))
        inside = str(study.path) + "/"
        found = set()
        for line in runner.run(command).splitlines():
            ident, _, cwd = line.partition("|")
            if cwd.startswith(inside):
                found.add(ident.strip())
        return sorted(found, key=int)

    def active_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Optional[Command]:
        # the user's active jobs; still_active keeps those asked about
        return Command(("flux", "jobs", "-f", "active", "-n", "-o", "{id.dec}"), self.scheduler, timeout=60, env=env)

    def parse_active(self, text: str) -> List[str]:
        return [line.strip() for line in text.splitlines() if line.strip()]

    def release_argv(self, ids: Sequence[str]) -> Optional[List[str]]:
        return ["flux", "python", str(package_file("submit.py")), "--release", *ids]

    def keeps_held(self, study: StudyDir, name: str) -> bool:
        return (study.manifest.get("flux_nodes") or {}).get(name, {}).get("urgency") == 0   # priority: held

    def cancel_argv(self, ids: Sequence[str]) -> List[str]:
        # `flux cancel` aborts in flux-core 0.88 when given thousands of ids: the bindings, with
        # many requests in flight
        return ["flux", "python", str(package_file("submit.py")), "--cancel", *ids]


def max_dependencies(batch: Mapping[str, Any]) -> int:
    value = batch.get("max_dependencies")
    return MAX_DEPENDENCIES if value in (None, "") else int(value)


def with_gather_jobs(entries: List[Dict[str, Any]], limit: int, command: List[str]) -> List[Dict[str, Any]]:
    """The plan with a gather job in front of every `limit` parents of a job that has more
    (gathers of gathers when even those are too many). A gather waits (afterok) on its parents and
    the job on its gathers, so the job still runs only when every parent succeeded, and a failed
    parent still fails it through Flux's dependency exceptions."""
    numbers = itertools.count(max((entry["job"] for entry in entries), default=-1) + 1)
    result = []
    for entry in entries:
        after, level = entry["after"], 0
        # the job's own urgency, but never held: a held job is released by the user, its gathers not
        urgency = entry["urgency"] or None
        while len(after) > limit:
            level += 1
            groups = [after[i:i + limit] for i in range(0, len(after), limit)]
            gathers = []
            for index, group in enumerate(groups, start=1):
                name = f"gather{level}.{index}.{entry['node']}"
                words = [command[0], f"--job-name={name}", *command[1:]]
                gather = {"job": next(numbers), "node": name, "gather": entry["node"], "flux": words, "after": group,
                          "urgency": urgency, "release": None}
                if "dependency" in entry:     # a bundle's gathers wait as it would (afterany)
                    gather["dependency"] = entry["dependency"]
                gathers.append(gather)
            result += gathers
            after = [gather["job"] for gather in gathers]
        result.append(dict(entry, after=after) if level else entry)
    return result


def package_file(name: str) -> Path:
    """A program run by `flux python` (package data beside the templates): submit.py, jobs.py."""
    path = templates_dir() / "flux" / name
    if not path.is_file():
        raise InstallError(f"{path} is missing; reinstall maestro_compile")
    return path


def submitter_text() -> str:
    """The bulk submitter, copied into every Flux study directory."""
    return package_file("submit.py").read_text(encoding="utf-8")


def parse_jobs_json(text: str) -> Dict[str, NativeStatus]:
    """`flux jobs --json`: {"jobs": [...]} (or one job object when a single id was asked for)."""
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    jobs = data.get("jobs", [data] if "id" in data else [])
    result = {}
    for job in jobs:
        status = job.get("status") or job.get("result") or job.get("state") or ""
        exception = job.get("exception") or {}
        reason = ""
        if exception.get("occurred"):
            reason = f"{exception.get('type', '')}: {exception.get('note', '')}".strip(": ")
        elif job.get("urgency") == 0 and status in ("DEPEND", "PRIORITY", "SCHED"):
            reason = HELD
        code = job.get("returncode")
        result[str(job["id"])] = NativeStatus(status, reason, "" if code is None else str(code))
    return result
