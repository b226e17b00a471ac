"""Slurm: #SBATCH scripts, job arrays, a submit.sh chained with --dependency, status from sacct."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..bundles import time_limit
from ..expand import count, make_safe
from ..model import Node, Study
from ..plan import Capabilities, Job
from ..runner import Command
from ..states import NativeStatus, State
from ..walltime import slurm_time
from .base import LaunchRequest
from .scheduled import ScheduledBackend, Target, allocation, directive_value, sh, truthy

DEFAULT_MAX_ARRAY = 1001   # Slurm's default MaxArraySize (slurm.conf)

# sacct/squeue state -> our state; "CANCELLED by 123" is matched on its first word
STATES = {
    "PENDING": State.PENDING, "REQUEUED": State.PENDING, "REQUEUE_HOLD": State.PENDING,
    "REQUEUE_FED": State.PENDING, "CONFIGURING": State.PENDING, "RESV_DEL_HOLD": State.PENDING,
    "RUNNING": State.RUNNING, "COMPLETING": State.RUNNING, "STAGE_OUT": State.RUNNING,
    "SIGNALING": State.RUNNING, "RESIZING": State.RUNNING, "SUSPENDED": State.SUSPENDED,
    "STOPPED": State.SUSPENDED, "COMPLETED": State.FINISHED, "FAILED": State.FAILED,
    "SPECIAL_EXIT": State.FAILED, "REVOKED": State.CANCELLED, "TIMEOUT": State.TIMEDOUT,
    "DEADLINE": State.TIMEDOUT, "CANCELLED": State.CANCELLED, "PREEMPTED": State.PREEMPTED,
    "OUT_OF_MEMORY": State.OUT_OF_MEMORY, "NODE_FAIL": State.NODE_FAIL, "BOOT_FAIL": State.NODE_FAIL,
}


def warning_seconds(limit: int) -> int:
    """How long before the time limit to ask for the restart: a fifth, 10 s to 5 min."""
    return max(10, min(300, limit // 5))


class SlurmBackend(ScheduledBackend):
    name = "slurm"
    script_suffix = ".slurm.sh"
    prefix = "#SBATCH"
    scheduler = "Slurm"
    submit_command = "sbatch"
    cancel_command = "scancel"
    capabilities = Capabilities(arrays=True, max_array_size=DEFAULT_MAX_ARRAY, directive_prefix=prefix, bundles=True)
    queue_limit_name = "the cluster's MaxSubmitJobs, from sacctmgr"
    tag_field = "comment (squeue %k)"
    job_id = re.compile(r"[0-9]+(?:_[0-9]+)?")

    def launcher(self, study: Study, node: Node, request: LaunchRequest) -> str:
        words = ["srun"]
        if request.procs:
            words += ["-n", str(request.procs)]
        if request.nodes:
            words += ["-N", str(request.nodes)]
        if request.cores_per_task:
            words += ["-c", str(request.cores_per_task)]
        return " ".join(words)

    def array_directives(self, study: Study, job: Job, log: str) -> List[str]:
        # the description may differ per node (parameters); the array carries the step's own text
        description = next(s.description for s in study.spec.steps if s.name == job.step)
        return ([f'--job-name="{directive_value(job.step)}"', f"--output={log}", "--open-mode=append",
                 f'--comment="{directive_value(self.tag(study.identity))} {directive_value(description)}"']
                + self.shared_directives(study, job.nodes[0]))

    def resource_directives(self, study: Study, node: Node) -> List[str]:
        """The directives every node of a step shares (an array needs them identical)."""
        batch, res = study.spec.batch, node.resources
        nodes, procs = allocation(study, node)
        lines = []
        if nodes:
            lines.append(f"--nodes={nodes}")
        if procs:
            lines.append(f"--ntasks={procs}")
        if count(res.get("cores per task")):
            lines.append(f"--cpus-per-task={count(res.get('cores per task'))}")
        for key, option in (("queue", "partition"), ("bank", "account")):
            if batch.get(key):
                lines.append(f'--{option}="{directive_value(batch[key])}"')
        if node.walltime:
            lines.append(f"--time={slurm_time(node.walltime)}")
        if count(res.get("gpus")):
            lines.append(f"--gres=gpu:{count(res.get('gpus'))}")
        if truthy(res.get("exclusive", False)):
            lines.append("--exclusive")
        for key in ("reservation", "qos"):
            value = res.get(key) or batch.get(key)
            if value:
                lines.append(f'--{key}="{directive_value(value)}"')
        if node.restart is not None and node.walltime:
            # USR1 to the batch shell ahead of the limit; the script then requeues itself
            lines += ["--requeue", "--open-mode=append", f"--signal=B:USR1@{warning_seconds(node.walltime)}"]
        lines += self.user_directives(study, node)
        return lines

    def node_directives(self, study: Study, node: Node) -> List[str]:
        base = make_safe(node.job_name)
        return ([f'--job-name="{directive_value(node.job_name)}"', f"--output={base}.out", f"--error={base}.err",
                 f'--comment="{directive_value(self.tag(study.identity))} {directive_value(node.description)}"']
                + self.shared_directives(study, node))

    # --- cluster facts, read once at compile time (before rendering) ---
    def facts_command(self) -> Optional[Command]:
        # a login node cut off from slurmctld would make scontrol retry for a minute
        return Command(("scontrol", "show", "config"), self.scheduler, optional=True, timeout=5)

    def parse_max_array_size(self, text: str) -> Optional[int]:
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", text, re.M)
        return int(match.group(1)) if match else None

    def queue_limit_commands(self, user: str) -> List[Command]:
        if not user:
            return []
        # sacctmgr asks slurmdbd, which a login node may not reach: 5 s, and no answer is no limit
        def ask(*words: str) -> Command:
            return Command(("sacctmgr", "-n", "-P", *words), self.scheduler, optional=True, timeout=5)
        return [ask("show", "user", user, "format=DefaultAccount"),
                ask("show", "assoc", "where", f"user={user}", "format=Account,MaxSubmit,GrpSubmit,QOS,DefaultQOS"),
                ask("show", "qos", "format=Name,MaxSubmitPU,GrpSubmit")]

    def parse_queue_limit(self, texts: Sequence[str], batch: Mapping[str, Any]) -> Optional[int]:
        """The smallest MaxSubmitJobs/GrpSubmitJobs of the user's associations with the study's
        account (batch.bank, else the default account) and MaxSubmitJobsPerUser/GrpSubmitJobs of
        the QOS the jobs get (batch.qos, else the association's default QOS)."""
        user_text, assoc_text, qos_text = (list(texts) + ["", "", ""])[:3]
        default_account = next((line.strip() for line in user_text.splitlines() if line.strip()), "")
        account = str(batch.get("bank") or default_account)
        limits: List[int] = []
        qos_names = set()
        for line in assoc_text.splitlines():
            fields = line.split("|")
            if len(fields) < 5 or fields[0] != account:
                continue
            limits += [int(value) for value in fields[1:3] if value.isdigit()]
            wanted = str(batch.get("qos") or fields[4] or "")
            if wanted:
                qos_names.add(wanted)
            elif fields[3] and "," not in fields[3]:
                qos_names.add(fields[3])    # the one QOS the association allows
        for line in qos_text.splitlines():
            fields = line.split("|")
            if len(fields) >= 3 and fields[0] in qos_names:
                limits += [int(value) for value in fields[1:3] if value.isdigit()]
        return min(limits) if limits else None

    # --- bundles (docs/big-sweeps.md) ---
    def bundle_directives(self, study: Study, job: Job, log: str) -> List[str]:
        """An array's header, with a time limit for a bundle's nodes run one after another."""
        lines = [line for line in self.array_directives(study, job, log) if not line.startswith("--time=")]
        seconds = time_limit(job)
        return lines + [f"--time={slurm_time(seconds)}"] if seconds else lines

    # --- submission ---
    def job_args(self, target: Target, throttle: int) -> List[str]:
        """sbatch's words for one job: held when it has no dependencies (released at the end of the
        submit script), else chained and cancelled by Slurm once a dependency can no longer be met."""
        if target.root:
            args = ["--hold"]
        else:
            args = [f'"--dependency={dependency_list(target)}"', "--kill-on-invalid-dep=yes"]
        if target.array:
            args.append(f"--array=0-{target.task_count - 1}" + (f"%{throttle}" if throttle else ""))
        return args + list(target.options) + ["-D", sh(target.workdir), sh(target.script)]

    selects_bundle_nodes = True

    def bundle_node_args(self, step: str, nodes: str, log: Path) -> List[str]:
        """sbatch exports the variable to the job (ALL: with the submitter's environment, as by default)."""
        return [sh(f"--export=ALL,MAESTRO_BUNDLE_NODES={nodes}"), sh(f"--output={log}")]

    # --- status ---
    def query_id(self, job_id: str) -> str:
        return job_id.split("_")[0]

    def status_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Command:
        # accounting may be disabled or lag behind: a failure here only means "ask squeue"
        return Command(("sacct", "-X", "-P", "-n", "-j", ",".join(ids), "--format=JobID,State,Reason,ExitCode"),
                       self.scheduler, optional=True)

    def parse_status(self, text: str) -> Dict[str, NativeStatus]:
        return parse_job_table(text)

    def fallback_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Optional[Command]:
        return Command(("squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|"), self.scheduler,
                       tolerate=("Invalid job id",))

    def native_state(self, native: NativeStatus) -> State:
        words = native.state.split()  # "CANCELLED by 123"
        return STATES.get(words[0].rstrip("+"), State.UNKNOWN) if words else State.UNKNOWN

    def reason(self, native: NativeStatus, state: State) -> str:
        # sacct keeps a job's last pending reason after it starts ("RUNNING|JobHeldUser"):
        # it explains only a job that still waits or never ran
        if state not in (State.PENDING, State.CANCELLED) or native.reason in ("None", ""):
            return ""
        return native.reason

    def is_held(self, native: NativeStatus) -> bool:
        return "Held" in native.reason     # JobHeldUser

    def blocked_by_parent(self, native: NativeStatus) -> bool:
        return "Dependency" in native.reason   # Dependency / DependencyNeverSatisfied

    def cancel_argv(self, ids: Sequence[str]) -> List[str]:
        return ["scancel", *ids]

    # --- maestro update --throttle ---
    throttle_min = 0          # ArrayTaskThrottle=0 removes the limit

    def throttle_argv(self, array_id: str, throttle: int) -> List[str]:
        """Change how many tasks of a submitted job array run at once."""
        return ["scontrol", "update", f"JobId={array_id}", f"ArrayTaskThrottle={throttle}"]

    def throttle_outcome(self, returncode: int, stderr: str) -> Optional[bool]:
        """True: the array's waiting tasks have the new limit; False: the array has ended (nothing
        to change); None: scontrol failed. On an array some of whose tasks ended, scontrol exits 1
        and says "<id>_0: Job has already finished" and "<id>_1-3: No error"."""
        if returncode == 0 or "No error" in stderr:
            return True
        # "Unexpected message received": what 22.05 says for an array that has just completed
        ended = ("already finished", "completing or completed", "Invalid job id", "Unexpected message received")
        if any(text in stderr for text in ended):
            return False
        return None

    def release_argv(self, ids: Sequence[str]) -> Optional[List[str]]:
        return ["scontrol", "release", ",".join(ids)]

    def tagged_command(self, tag: str, env: Optional[Dict[str, str]]) -> Optional[Command]:
        # %F: an array's own id for each of its tasks; %k: the comment, which starts with the tag
        return Command(("squeue", "--me", "-h", "-o", "%F|%k"), self.scheduler, timeout=30)

    def parse_tagged(self, text: str, tag: str) -> List[str]:
        found = set()
        for line in text.splitlines():
            ident, _, comment = line.partition("|")
            if comment == tag or comment.startswith(tag + " "):
                found.add(ident.strip())
        return sorted(found)

    def active_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Optional[Command]:
        # COMPLETING is left out: those jobs are already being stopped
        return Command(("squeue", "-h", "-t", "PD,R,S,CF,RQ,RF,RH,RS,SO,ST", "-o", "%F", "-j", ",".join(ids)),
                       self.scheduler, tolerate=("Invalid job id",), timeout=30)

    def parse_active(self, text: str) -> List[str]:
        return sorted({line.strip() for line in text.splitlines() if line.strip()})


def dependency_list(target: Target) -> str:
    """--dependency's value: one afterok with every whole parent job (afterok:a:b, the same as
    afterok:a,afterok:b but half as long), then the aftercorr and single-task ones."""
    whole = [f"${{J{d.job}}}" for d in target.depends if d.kind == "afterok" and d.task is None]
    parts = ["afterok:" + ":".join(whole)] if whole else []
    parts += [f"{d.kind}:${{J{d.job}}}" + (f"_{d.task}" if d.task is not None else "")
              for d in target.depends if not (d.kind == "afterok" and d.task is None)]
    return ",".join(parts)


def expand_array_ids(job_id: str) -> List[str]:
    """``123_[0-3,7%2]`` -> 123_0 .. 123_3, 123_7; plain ids are returned as they are."""
    match = re.fullmatch(r"(\d+)_\[([^\]]*)\]", job_id)
    if not match:
        return [job_id]
    base, spec = match.group(1), match.group(2).split("%")[0]
    ids = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        if low.isdigit():
            ids += [f"{base}_{i}" for i in range(int(low), int(high or low) + 1)]
    return ids


def parse_job_table(text: str) -> Dict[str, NativeStatus]:
    """Rows of ``JobID|State|Reason|ExitCode`` (sacct -P) or squeue's ``%i|%T|%r|``."""
    result = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 3 or not fields[0] or "." in fields[0]:
            continue
        state, reason = fields[1], fields[2]
        exit_code = fields[3] if len(fields) > 3 else ""
        for job_id in expand_array_ids(fields[0].strip()):
            result[job_id] = NativeStatus(state.strip(), reason.strip(), exit_code.strip())
    return result
