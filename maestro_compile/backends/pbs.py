"""PBS Professional / OpenPBS: #PBS scripts, one job per node chained with -W depend=afterok,
status from `qstat -x -f -F json -t`.

No job arrays for plain nodes: PBS has no element-wise array dependency, and an `afterok` on a whole
array only looks at the exit status of the sub-job that finished last (OpenPBS 23.06), so a chain
through an array could run after a failed sub-job. One job per node keeps every dependency exact.
Jobs of bundles (docs/big-sweeps.md) are arrays (`qsub -J`): a bundle exits 0 whatever its nodes
returned and checks its nodes' parents' markers itself, so it can wait for whole parent jobs with
`afterany`, and the exit-status bug does not matter.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..bundles import time_limit
from ..errors import CompileError
from ..expand import count, make_safe
from ..model import Node, Study
from ..plan import Capabilities, Job
from ..runner import Command
from ..states import NativeStatus, State
from ..studydir import StudyDir
from ..walltime import pbs_walltime
from .base import LaunchRequest, step_location
from .scheduled import ScheduledBackend, Target, allocation, sh, truthy

NAME_PREFIX = "mc_"       # every job name starts with a letter and can never be read as a number
MAX_NAME = 230            # PBS_MAXJOBNAME

# job_state -> our state while the job is alive; F (finished) and X (sub-job finished) are judged
# from the substate and Exit_status
LIVE_STATES = {"Q": State.PENDING, "H": State.PENDING, "W": State.PENDING, "T": State.PENDING,
               "M": State.PENDING, "R": State.RUNNING, "E": State.RUNNING, "B": State.RUNNING,
               "S": State.SUSPENDED, "U": State.SUSPENDED}
SUBSTATE_DELETED = 91          # deleted with qdel
SUBSTATE_FINISHED = 92
SUBSTATE_FAILED = 93
# Exit_status values PBS sets itself (job.h JOB_EXEC_*); 256 + N means killed by signal N
EXIT_STATES = {-29: State.TIMEDOUT, -27: State.OUT_OF_MEMORY, -26: State.OUT_OF_MEMORY,
               -20: State.NODE_FAIL, 256 + 15: State.CANCELLED}
EXIT_REASONS = {-29: "walltime exceeded", -27: "memory limit exceeded", -26: "vmem limit exceeded",
                -28: "cput limit exceeded", -25: "ncpus limit exceeded", -20: "lost its mother superior node",
                -10: "invalid uid/gid for the job", 254: "the script could not be executed",
                256 + 15: "deleted while running (qdel)"}
LAUNCHERS = ("mpiexec", "mpirun")
DEFAULT_MAX_ARRAY = 10000      # the server's max_array_size by default
# one limit of a max_queued value: [u:PBS_GENERIC=50], [u:alice=10], [g:staff=20], [o:PBS_ALL=500], [p:...]
QUEUED_LIMIT = re.compile(r"\[\s*([ugop])\s*:\s*([^=\]]+?)\s*=\s*(\d+)\s*\]")


def job_name(name: str) -> str:
    """A -N value PBS accepts and qstat's JSON cannot mistake for a number: letters, digits and
    - _ + . only, the prefix first, at most 230 characters."""
    return (NAME_PREFIX + re.sub(r"[^A-Za-z0-9_.+-]", "_", name))[:MAX_NAME]


def chunks_and_sizes(nodes: Optional[int], procs: Optional[int]):
    """(chunks, MPI processes per chunk): one chunk per node when nodes are asked for, else one
    chunk per process so PBS can place them anywhere."""
    if nodes:
        return nodes, math.ceil((procs or nodes) / nodes)
    if procs:
        return procs, 1
    return 1, 1


def quoted(value: Any, where: str) -> str:
    """A directive value in "...", on one line. qsub reads a directive's "..." without escapes
    (a backslash stays, a \\" ends with "qsub: unmatched"), so a double quote cannot be written."""
    text = " ".join(str(value).splitlines())
    if '"' in text:
        raise CompileError(f"{where}PBS cannot read a double quote in a #PBS directive value: {text!r}")
    return f'"{text}"'


class PbsBackend(ScheduledBackend):
    name = "pbs"
    script_suffix = ".pbs.sh"
    prefix = "#PBS"
    scheduler = "PBS"
    submit_command = "qsub"
    cancel_command = "qdel"
    launchers = LAUNCHERS
    # arrays of bundles only: see the module's docstring
    capabilities = Capabilities(arrays=False, bundle_arrays=True, bundles=True, max_array_size=DEFAULT_MAX_ARRAY,
                                directive_prefix=prefix)
    queue_limit_name = "the server's and queue's max_queued, from qstat -Bf/-Qf"
    tag_field = "project (-P)"
    job_id = re.compile(r"[0-9]+(?:\[[0-9]*\])?(?:\.[A-Za-z0-9_.-]+)?")   # 12.server, 13[4].server
    status_chunk = 200

    # --- compile time ---
    def launcher(self, study: Study, node: Node, request: LaunchRequest) -> str:
        program = str(study.spec.batch.get("launcher") or "mpiexec")
        if program not in LAUNCHERS:
            program = "mpiexec"     # another backend's launcher (jsrun) when --backend pbs overrides the type
        procs = request.procs or request.nodes or 1
        if program == "mpirun":
            return f"mpirun -np {procs}"
        words = ["mpiexec", "-n", str(procs)]
        if request.nodes:
            words += ["--ppn", str(math.ceil(procs / request.nodes))]
        return " ".join(words)


    def time_limit(self, study: Study, node: Node) -> Optional[int]:
        """The job's walltime: the step's, or room for every attempt when restarts run inside the job."""
        return self.in_job_time_limit(study, node)

    def select(self, study: Study, node: Node) -> Optional[str]:
        """-l select=N:ncpus=C:mpiprocs=P[:ngpus=G]; None when the step asks for nothing."""
        res = node.resources
        nodes, procs = allocation(study, node)
        cores, gpus = count(res.get("cores per task")), count(res.get("gpus"))
        if not (nodes or procs or cores or gpus):
            return None
        chunks, per_chunk = chunks_and_sizes(nodes, procs)
        text = f"select={chunks}:ncpus={per_chunk * (cores or 1)}:mpiprocs={per_chunk}"
        if gpus:
            text += f":ngpus={math.ceil(gpus / chunks)}"
        return text

    def resource_directives(self, study: Study, node: Node) -> List[str]:
        batch, res = study.spec.batch, node.resources
        lines = []
        select = self.select(study, node)
        if select:
            lines.append(f"-l {select}")
        # a PBS reservation is a queue of its own: submitting to it is `-q <reservation>`
        for source, keys in ((res, ("reservation",)), (batch, ("reservation", "queue"))):
            key = next((k for k in keys if source.get(k)), None)
            if key:
                lines.append(f"-q {quoted(source[key], self.where(study, node, source is res, key))}")
                break
        if batch.get("bank"):
            lines.append(f"-A {quoted(batch['bank'], self.where(study, node, False, 'bank'))}")
        limit = self.time_limit(study, node)
        if limit:
            lines.append(f"-l walltime={pbs_walltime(limit)}")
        if truthy(res.get("exclusive", False)):
            lines.append("-l place=excl")
        lines += self.user_directives(study, node)
        return lines

    @staticmethod
    def where(study: Study, node: Node, in_step: bool, key: str) -> str:
        """The "file:line: key: " prefix of an error about a value of the step or the batch block."""
        if in_step:
            return step_location(study, node, key)
        return f"{study.spec.raw.where(('batch', key))}: batch.{key}: "

    def node_directives(self, study: Study, node: Node) -> List[str]:
        # -o/-e relative to the directory qsub runs in: submit.sh runs it in the node's workspace
        base = make_safe(node.job_name)
        return ([f"-N {job_name(node.job_name)}", f"-P {self.tag(study.identity)}", f"-o {base}.out",
                 f"-e {base}.err"] + self.shared_directives(study, node))

    def step_context(self, study: Study, node: Node) -> Dict[str, Any]:
        context = super().step_context(study, node)
        context["limit"] = node.walltime
        if not self.restarts_in_job(node):
            context["restart"] = None
        return context

    # --- cluster facts, read once at compile time (before rendering) ---
    def facts_command(self) -> Optional[Command]:
        return Command(("qstat", "-B", "-f", "-F", "json"), self.scheduler, optional=True, timeout=10)

    def parse_max_array_size(self, text: str) -> Optional[int]:
        servers = load_qstat_json(text).get("Server") or {}
        sizes = [_int(info.get("max_array_size")) for info in servers.values() if isinstance(info, dict)]
        return next((size for size in sizes if size), None)

    def queue_limit_commands(self, user: str) -> List[Command]:
        if not user:
            return []
        def ask(*words: str) -> Command:
            return Command(words, self.scheduler, optional=True, timeout=10)
        # `id USER`: the user's name and primary group, which PBS limits may name
        return [ask("qstat", "-B", "-f", "-F", "json"), ask("qstat", "-Q", "-f", "-F", "json"), ask("id", user)]

    def parse_queue_limit(self, texts: Sequence[str], batch: Mapping[str, Any]) -> Optional[int]:
        """The smallest max_queued limit of the server and of the queue the jobs go to (batch.queue,
        else the server's default_queue) that counts the study's jobs: the user's own ([u:NAME=N],
        else [u:PBS_GENERIC=N]), the primary group's ([g:NAME=N], else [g:PBS_GENERIC=N]), the
        project's ([p:PBS_GENERIC=N]: each study is a project of its own) and everyone's
        ([o:PBS_ALL=N]). Every sub-job of an array counts one (measured on OpenPBS 23.06)."""
        server_text, queue_text, id_text = (list(texts) + ["", "", ""])[:3]
        servers = [info for info in (load_qstat_json(server_text).get("Server") or {}).values()
                   if isinstance(info, dict)]
        queue_name = str(batch.get("queue") or next((s.get("default_queue") for s in servers), "") or "")
        queue = (load_qstat_json(queue_text).get("Queue") or {}).get(queue_name)
        who = {kind: match.group(1) for kind, match in
               (("u", re.search(r"uid=\d+\(([^)]+)\)", id_text)), ("g", re.search(r"gid=\d+\(([^)]+)\)", id_text)))
               if match}
        limits: List[int] = []
        for owner in servers + ([queue] if isinstance(queue, dict) else []):
            limits += queued_limits(str(owner.get("max_queued") or ""), who)
        return min(limits) if limits else None

    # --- bundles (docs/big-sweeps.md) ---
    def bundle_directives(self, study: Study, job: Job, log: str) -> List[str]:
        """The header one node of the step would get, named after the step, with one log per
        bundle and a walltime for a bundle's nodes run one after another. The array's range is
        qsub's -J (job_args)."""
        if job.array and len(job.bundles) < 2:
            raise CompileError(f"step '{job.step}': PBS refuses a job array of one sub-job (-J 0-0); give "
                               f"--max-array-size a value that does not leave one bundle alone")
        if job.array:   # PBS writes each sub-job's output to its own file
            log = log[:-len(".log")] + ".^array_index^.log"
        lines = [f"-N {job_name(job.step)}", f"-P {self.tag(study.identity)}", f"-o {log}", "-j oe"]
        lines += [line for line in self.shared_directives(study, job.nodes[0]) if not line.startswith("-l walltime=")]
        seconds = time_limit(job, lambda node: self.time_limit(study, node))   # restarts run inside the node's job
        return lines + [f"-l walltime={pbs_walltime(seconds)}"] if seconds else lines

    # --- submission ---
    def job_args(self, target: Target, throttle: int) -> List[str]:
        """The workspace qsub runs in (submit's third word), then qsub's words: held (-h) when the
        job has no parents (released with qrls at the end), else -W depend=afterok on every parent.
        A job of bundles waits with afterany for the whole parent jobs (PBS has no element-wise
        dependency): it runs however they ended, and its nodes check their parents' markers."""
        if target.root:
            args = ["-h"]
        else:
            kind = "afterany" if target.bundle_sizes else "afterok"
            parents = dict.fromkeys(f"${{J{d.job}}}" for d in target.depends)
            args = ["-W", f'"depend={kind}:' + ":".join(parents) + '"']
        if target.array:
            args += ["-J", f"0-{target.task_count - 1}"]
        return [sh(target.workdir), *args, *target.options, sh(target.script)]

    selects_bundle_nodes = True

    def bundle_node_args(self, step: str, nodes: str, log: Path) -> List[str]:
        """qsub -v sets the variable; -o replaces the array's per-sub-job log (a plain job has no
        ^array_index^)."""
        return ["-v", sh(f"MAESTRO_BUNDLE_NODES={nodes}"), "-o", sh(log)]

    # --- status ---
    def query_id(self, job_id: str) -> str:
        return SUBJOB_INDEX.sub("[]", job_id)     # 13[4].server -> the array 13[].server

    def status_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Command:
        # -x: finished jobs too (job history); -t: an array's sub-jobs too; unknown (purged) ids:
        # exit 153, the others are still listed
        return Command(("qstat", "-x", "-t", "-f", "-F", "json", *ids), self.scheduler, partial=True,
                       tolerate=("Unknown Job Id",), env=env)

    def parse_status(self, text: str) -> Dict[str, NativeStatus]:
        return parse_qstat_json(text)

    def native_state(self, native: NativeStatus) -> State:
        words = native.state.split()
        if not words:
            return State.UNKNOWN
        if words[0] in LIVE_STATES:
            return LIVE_STATES[words[0]]
        if words[0] not in ("F", "X"):
            return State.UNKNOWN
        substate = _field(words, "substate")
        code = _int(native.exit_code)
        if substate == str(SUBSTATE_DELETED):
            return State.CANCELLED
        if code is None:
            # PBS deletes the afterok dependents of a failed job: finished, never ran, no exit status
            return State.CANCELLED if substate == str(SUBSTATE_FINISHED) else State.FAILED
        if code == 0:
            return State.FINISHED
        return EXIT_STATES.get(code, State.FAILED)

    def reason(self, native: NativeStatus, state: State) -> str:
        words = native.state.split()
        code = _int(native.exit_code)
        if state == State.FINISHED:
            return ""
        if code is not None and code in EXIT_REASONS:
            return EXIT_REASONS[code]
        if code is not None and code > 256:
            return f"killed by signal {code - 256}"
        if words and words[0] in ("F", "X") and code is None:
            return "deleted (qdel)" if _field(words, "substate") == str(SUBSTATE_DELETED) else \
                "deleted by PBS: a job it depends on failed"
        if state == State.PENDING and native.reason:
            return native.reason     # the scheduler's comment: "Not Running: Insufficient amount of resource ..."
        return ""

    def bundle_fate(self, native: NativeStatus) -> str:
        state = self.native_state(native)
        words = native.state.split()
        if state == State.CANCELLED and _field(words, "substate") == str(SUBSTATE_DELETED):
            return "deleted (qdel)"     # a sub-job deleted while it ran may keep Exit_status 0
        return self.reason(native, state) or state.value

    def is_held(self, native: NativeStatus) -> bool:
        words = native.state.split()
        return bool(words) and words[0] == "H" and "u" in (_field(words, "hold") or "")

    def blocked_by_parent(self, native: NativeStatus) -> bool:
        words = native.state.split()
        return bool(words) and words[0] == "H" and "s" in (_field(words, "hold") or "")

    def cancel_argv(self, ids: Sequence[str]) -> List[str]:
        return ["qdel", *ids]

    def cancel_jobs(self, study: StudyDir, ids: Sequence[str], settle: float = 20.0) -> None:
        # the newest first: a job of bundles waits with afterany, and PBS would start it the moment
        # its parent is deleted, before the same qdel reached it
        super().cancel_jobs(study, sorted(ids, key=_id_number, reverse=True), settle)

    @staticmethod
    def tag(identity: str) -> str:
        # the job's project (-P): PBS refuses a ':' there
        return f"maestro_compile_{identity}"

    def release_argv(self, ids: Sequence[str]) -> Optional[List[str]]:
        return ["qrls", *ids]

    def tagged_command(self, tag: str, env: Optional[Dict[str, str]]) -> Optional[Command]:
        return Command(("qselect", "-P", tag, "-s", ACTIVE_STATES), self.scheduler, timeout=30)

    def parse_tagged(self, text: str, tag: str) -> List[str]:
        return sorted({line.strip() for line in text.splitlines() if line.strip()})

    def active_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Optional[Command]:
        # qselect lists the user's unfinished jobs; still_active keeps those asked about
        return Command(("qselect", "-s", ACTIVE_STATES), self.scheduler, timeout=30)

    def parse_active(self, text: str) -> List[str]:
        return sorted({line.strip() for line in text.splitlines() if line.strip()})


# qselect -s: held, queued, running, suspended, in transit, waiting, array running, exiting, user-suspended
ACTIVE_STATES = "HQRSTWBEU"


SUBJOB_INDEX = re.compile(r"\[[0-9]+\]")


def _id_number(job_id: str) -> int:
    digits = re.match(r"\d*", job_id).group(0)
    return int(digits or 0)


def queued_limits(value: str, who: Mapping[str, str]) -> List[int]:
    """The limits of a max_queued value that count this user's jobs (``who``: u -> user, g -> group):
    a limit naming them wins over the generic one of its kind."""
    found: Dict[str, Dict[str, int]] = {}
    for kind, name, number in QUEUED_LIMIT.findall(value):
        found.setdefault(kind, {})[name] = int(number)
    limits = []
    for kind, names in found.items():
        if kind in who and who[kind] in names:
            limits.append(names[who[kind]])
        elif kind in ("u", "g", "p") and "PBS_GENERIC" in names:
            limits.append(names["PBS_GENERIC"])
        elif kind == "o" and "PBS_ALL" in names:
            limits.append(names["PBS_ALL"])
    return limits


def _field(words: Sequence[str], key: str) -> Optional[str]:
    for word in words[1:]:
        name, _, value = word.partition("=")
        if name == key:
            return value
    return None


def _int(text: Any) -> Optional[int]:
    try:
        return int(str(text).strip())
    except ValueError:
        return None


# a bare value after "key": that JSON cannot read (qstat prints a job named nan as  "Job_Name":nan,)
_BARE_VALUE = re.compile(r'^(\s*"[^"\\]*(?:\\.[^"\\]*)*"\s*:\s*)([^\s"{\[][^\n]*?)(\s*,?\s*)$')


def _repair_line(line: str) -> str:
    match = _BARE_VALUE.match(line)
    if not match:
        return line
    value = match.group(2)
    try:
        json.loads(value)
        if value.lower() not in ("nan", "infinity", "-infinity"):
            return line
    except ValueError:
        pass
    return f"{match.group(1)}{json.dumps(value)}{match.group(3)}"


def load_qstat_json(text: str) -> Dict[str, Any]:
    """qstat -F json's document. OpenPBS 23.06 guesses the type of every value, so a job named
    ``nan`` is printed as a bare ``nan`` and the whole document is invalid JSON: such values are
    read as strings, line by line (qstat prints one attribute per line)."""
    if not text.strip():
        return {}
    try:
        return json.loads(text, parse_constant=str)
    except ValueError:
        pass
    try:
        return json.loads("\n".join(_repair_line(line) for line in text.splitlines()), parse_constant=str)
    except ValueError:
        return {}


def parse_qstat_json(text: str) -> Dict[str, NativeStatus]:
    """`qstat -x -f -F json`: {"Jobs": {"12.server": {"job_state", "substate", "Exit_status", ...}}}.
    The state word carries what native_state needs: ``F substate=92``, ``H substate=22 hold=s``."""
    jobs = load_qstat_json(text).get("Jobs") or {}
    result = {}
    for job_id, info in jobs.items():
        if not isinstance(info, dict):
            continue
        words = [str(info.get("job_state", "")), f"substate={info.get('substate', '')}"]
        if info.get("Hold_Types") not in (None, "n"):
            words.append(f"hold={info['Hold_Types']}")
        code = info.get("Exit_status")
        comment = info.get("comment")
        result[str(job_id)] = NativeStatus(" ".join(words), "" if comment is None else str(comment),
                                           "" if code is None else str(code))
    return result
