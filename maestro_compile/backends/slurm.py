"""Slurm: #SBATCH scripts, job arrays, a submit.sh chained with --dependency, status from sacct."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import SchedulerCommandError
from ..expand import count, make_safe
from ..model import Node, Study
from ..plan import Job
from .base import LaunchRequest
from .scheduled import ScheduledBackend, allocation, directive_value, run_command, sh, split_user_directives, truthy

DEFAULT_MAX_ARRAY = 1001   # Slurm's default MaxArraySize (slurm.conf)
CHUNK = 500                # ids per sacct/squeue call (argument length, slurmdbd load)

# sacct/squeue state -> our state; "CANCELLED by 123" is matched on its first word
STATES = {
    "PENDING": "PENDING", "REQUEUED": "PENDING", "REQUEUE_HOLD": "PENDING", "REQUEUE_FED": "PENDING",
    "CONFIGURING": "PENDING", "RESV_DEL_HOLD": "PENDING",
    "RUNNING": "RUNNING", "COMPLETING": "RUNNING", "STAGE_OUT": "RUNNING", "SIGNALING": "RUNNING",
    "RESIZING": "RUNNING", "SUSPENDED": "SUSPENDED", "STOPPED": "SUSPENDED",
    "COMPLETED": "FINISHED", "FAILED": "FAILED", "SPECIAL_EXIT": "FAILED", "REVOKED": "CANCELLED",
    "TIMEOUT": "TIMEDOUT", "DEADLINE": "TIMEDOUT", "CANCELLED": "CANCELLED", "PREEMPTED": "PREEMPTED",
    "OUT_OF_MEMORY": "OUT_OF_MEMORY", "NODE_FAIL": "NODE_FAIL", "BOOT_FAIL": "NODE_FAIL",
}


def walltime_seconds(value: Any) -> Optional[int]:
    """Slurm --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (sbatch.1)."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text) if day_text.isdigit() else 0
        parts = [int(p) for p in text.split(":") if p.isdigit()]
        parts += [0] * (3 - len(parts))
        return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    parts = [int(p) for p in text.split(":") if p.isdigit()]
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    if len(parts) == 3:
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    return None


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

    def launcher(self, study: Study, node: Node, request: LaunchRequest) -> str:
        words = ["srun"]
        if request.procs:
            words += ["-n", str(request.procs)]
        if request.nodes:
            words += ["-N", str(request.nodes)]
        if request.cores_per_task:
            words += ["-c", str(request.cores_per_task)]
        return " ".join(words)

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
        walltime = res.get("walltime")
        if walltime not in (None, ""):
            lines.append(f'--time="{directive_value(walltime)}"')
        if count(res.get("gpus")):
            lines.append(f"--gres=gpu:{count(res.get('gpus'))}")
        if truthy(res.get("exclusive", False)):
            lines.append("--exclusive")
        for key in ("reservation", "qos"):
            value = res.get(key) or batch.get(key)
            if value:
                lines.append(f'--{key}="{directive_value(value)}"')
        seconds = walltime_seconds(walltime)
        if node.restart is not None and seconds:
            # USR1 to the batch shell ahead of the limit; the script then requeues itself
            lines += ["--requeue", "--open-mode=append", f"--signal=B:USR1@{warning_seconds(seconds)}"]
        lines += split_user_directives(node.cmd, self.prefix)[0]
        return lines

    def node_directives(self, study: Study, node: Node) -> List[str]:
        base = make_safe(node.job_name)
        return ([f'--job-name="{directive_value(node.job_name)}"', f"--output={base}.out", f"--error={base}.err",
                 f'--comment="{directive_value(node.description)}"'] + self.shared_directives(study, node))

    def array_directives(self, study: Study, job: Job, log: str) -> List[str]:
        # the description may differ per node (parameters); the array carries the step's own text
        description = next(s.description for s in study.spec.steps if s.name == job.step)
        return ([f'--job-name="{directive_value(job.step)}"', f"--output={log}", "--open-mode=append",
                 f'--comment="{directive_value(description)}"'] + self.shared_directives(study, job.nodes[0]))

    def max_array_size(self) -> int:
        """The cluster's MaxArraySize when scontrol is here, else Slurm's default."""
        if not shutil.which("scontrol"):
            return DEFAULT_MAX_ARRAY
        try:
            # a login node cut off from slurmctld would make scontrol retry for a minute
            out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return DEFAULT_MAX_ARRAY
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
        return int(match.group(1)) if match else DEFAULT_MAX_ARRAY

    # --- status ---
    def query(self, ids: Sequence[str], manifest: Mapping[str, Any]) -> Dict[str, Tuple[str, str, str]]:
        """job id (123 or 123_4) -> (native state, reason, exit code), from sacct or squeue."""
        bases = sorted({i.split("_")[0] for i in ids}, key=int)
        result: Dict[str, Tuple[str, str, str]] = {}
        for start in range(0, len(bases), CHUNK):
            chunk = bases[start:start + CHUNK]
            proc = _run(["sacct", "-X", "-P", "-n", "-j", ",".join(chunk), "--format=JobID,State,Reason,ExitCode"])
            found = parse_job_table(proc.stdout) if proc.returncode == 0 else {}
            result.update(found)
            # accounting lags a second or so behind submission, and may be disabled: ask squeue
            known = {job_id.split("_")[0] for job_id in found}
            missing = [base for base in chunk if base not in known]
            if missing:
                result.update(self._squeue(missing))
        return result

    def _squeue(self, bases: Sequence[str]) -> Dict[str, Tuple[str, str, str]]:
        argv = ["squeue", "-h", "-t", "all", "-j", ",".join(bases), "-o", "%i|%T|%r|"]
        proc = _run(argv)
        if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
            raise SchedulerCommandError(argv, proc.returncode, proc.stdout, proc.stderr)
        return parse_job_table(proc.stdout)

    def native_state(self, native: Tuple[str, str, str]) -> str:
        words = native[0].split()  # "CANCELLED by 123"
        return STATES.get(words[0].rstrip("+"), "UNKNOWN") if words else "UNKNOWN"

    def is_held(self, native: Tuple[str, str, str]) -> bool:
        return "Held" in native[1]     # JobHeldUser

    def blocked_by_parent(self, native: Tuple[str, str, str]) -> bool:
        return "Dependency" in native[1]   # Dependency / DependencyNeverSatisfied

    def submit_args(self, study: Study, job: Job, script: str) -> List[str]:
        deps = []
        for dep in job.depends:
            target = f"${{J{dep.job}}}" + (f"_{dep.task}" if dep.task is not None else "")
            deps.append(f"{dep.kind}:{target}")
        array = None
        if job.array:
            throttle = study.options.get("throttle") or 0
            array = f"--array=0-{len(job.nodes) - 1}" + (f"%{throttle}" if throttle else "")
        workdir = study.directory / (job.step if job.array else job.nodes[0].workspace)
        return sbatch_args(deps, workdir, study.directory / script, array)

    def resubmit_args(self, study_dir: Path, manifest: Mapping[str, Any], name: str,
                      parents: Sequence[int]) -> List[str]:
        info = manifest["nodes"][name]
        # one afterok with every id (afterok:a:b, the same as afterok:a,afterok:b): half as long
        deps = ["afterok:" + ":".join(f"${{J{p}}}" for p in parents)] if parents else []
        return sbatch_args(deps, study_dir / info["workspace"], study_dir / info["script"])

    def cancel_argv(self, ids: Sequence[str]) -> List[str]:
        return ["scancel", *sorted({i.split("_")[0] for i in ids}, key=int)]


def sbatch_args(deps: Sequence[str], workdir: Path, script: Path, array: Optional[str] = None) -> List[str]:
    """sbatch's words for one job: held when it has no dependencies (released at the end of the
    submit script), else chained and cancelled by Slurm once a dependency can no longer be met."""
    args = ["--hold"] if not deps else [f'"--dependency={",".join(deps)}"', "--kill-on-invalid-dep=yes"]
    if array:
        args.append(array)
    return args + ["-D", sh(workdir), sh(script)]


def _run(argv: List[str]) -> subprocess.CompletedProcess:
    return run_command(argv, "Slurm")


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


def parse_job_table(text: str) -> Dict[str, Tuple[str, str, str]]:
    """Rows of ``JobID|State|Reason|ExitCode`` (sacct -P) or squeue's ``%i|%T|%r|``."""
    result = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 3 or not fields[0] or "." in fields[0]:
            continue
        state, reason = fields[1], fields[2]
        exit_code = fields[3] if len(fields) > 3 else ""
        for job_id in expand_array_ids(fields[0].strip()):
            result[job_id] = (state.strip(), reason.strip(), exit_code.strip())
    return result
