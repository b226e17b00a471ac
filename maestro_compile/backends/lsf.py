"""IBM LSF: #BSUB scripts, job arrays, a submit.sh chained with bsub -w, status from bjobs/bhist."""
from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ..errors import SchedulerCommandError
from ..expand import count, make_safe
from ..model import Node, Study
from ..plan import Job
from .base import LaunchRequest
from .scheduled import ScheduledBackend, allocation, directive_value, run_command, sh, split_user_directives, truthy

CHUNK = 500   # ids per bjobs/bhist call
FIELDS = "jobid jobindex stat exit_code exit_reason pend_reason"

# bjobs STAT -> our state; EXIT is refined by its exit reason (TERM_*)
STATES = {"PEND": "PENDING", "PSUSP": "PENDING", "PROV": "PENDING", "WAIT": "PENDING",
          "RUN": "RUNNING", "USUSP": "SUSPENDED", "SSUSP": "SUSPENDED", "DONE": "FINISHED",
          "EXIT": "FAILED", "ZOMBI": "CANCELLED", "UNKWN": "UNKNOWN"}
EXIT_REASONS = {"TERM_RUNLIMIT": "TIMEDOUT", "TERM_DEADLINE": "TIMEDOUT", "TERM_MEMLIMIT": "OUT_OF_MEMORY",
                "TERM_OWNER": "CANCELLED", "TERM_FORCE_OWNER": "CANCELLED", "TERM_ADMIN": "CANCELLED",
                "TERM_FORCE_ADMIN": "CANCELLED", "TERM_ORPHAN_SYSTEM": "CANCELLED", "TERM_REQUEUE_OWNER": "PENDING",
                "TERM_REQUEUE_ADMIN": "PENDING", "TERM_HOST": "NODE_FAIL", "TERM_LOAD": "NODE_FAIL"}


def run_limit(seconds: int) -> str:
    """bsub -W takes [hour:]minute: round the seconds up to whole minutes."""
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def warning_minutes(seconds: int) -> int:
    """-wt ahead of the run limit for the restart: a fifth of it, 1 to 5 minutes."""
    return max(1, min(5, math.ceil(seconds / 60) // 5))


def array_name(step: str) -> str:
    """LSF allows only a-z A-Z 0-9 . - _ in a job array's name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", step)


class LsfBackend(ScheduledBackend):
    name = "lsf"
    script_suffix = ".lsf.sh"
    prefix = "#BSUB"
    scheduler = "LSF"
    submit_command = "bsub"
    cancel_command = "bkill"
    first_task = 1          # LSF array indexes start at 1

    # --- compile time ---
    def launcher(self, study: Study, node: Node, request: LaunchRequest) -> str:
        if str(study.spec.batch.get("launcher", "jsrun")) == "lrun":
            words = ["lrun"]
            if request.nodes:
                words += ["-N", str(request.nodes)]
            if request.procs:
                words += ["-n", str(request.procs)]
            return " ".join(words)
        res = node.resources
        words = ["jsrun", "--nrs", str(request.procs or request.nodes or 1),
                 "-b", sh(res.get("bind") or "rs")]
        if request.gpus:
            words += ["-g", str(request.gpus)]
        if res.get("bind gpus"):
            words += ["-B", sh(res["bind gpus"])]
        words += ["-a", str(count(res.get("tasks per rs")) or 1), "-r", str(count(res.get("rs per node")) or 1),
                  "-c", str(count(res.get("cpus per rs")) or 1)]
        return " ".join(words)

    def resource_directives(self, study: Study, node: Node) -> List[str]:
        batch, res = study.spec.batch, node.resources
        nodes, procs = allocation(study, node)
        lines = []
        if nodes:
            lines.append(f"-nnodes {nodes}")       # CSM "easy mode", as Maestro
        elif procs:
            lines.append(f"-n {procs}")            # slots, for clusters without CSM
        if batch.get("queue"):
            lines.append(f'-q "{directive_value(batch["queue"])}"')
        if batch.get("bank"):
            lines.append(f'-G "{directive_value(batch["bank"])}"')
        seconds = self.walltime(study, node)
        if seconds:
            lines.append(f"-W {run_limit(seconds)}")
        if truthy(res.get("exclusive", False)):
            lines.append("-x")
        reservation = res.get("reservation") or batch.get("reservation")
        if reservation:
            lines.append(f'-U "{directive_value(reservation)}"')
        if node.restart is not None and seconds:
            # USR1 ahead of the run limit; the script then requeues itself with brequeue
            lines += ["-wa USR1", f"-wt {warning_minutes(seconds)}"]
        lines += split_user_directives(node.cmd, self.prefix)[0]
        return lines

    def node_directives(self, study: Study, node: Node) -> List[str]:
        base = make_safe(node.job_name)
        return ([f'-J "{directive_value(node.job_name)}"', f"-o {base}.out", f"-e {base}.err"]
                + self.shared_directives(study, node))

    def array_directives(self, study: Study, job: Job, log: str) -> List[str]:
        throttle = study.options.get("throttle") or 0
        spec = f"{array_name(job.step)}[1-{len(job.nodes)}]" + (f"%{throttle}" if throttle else "")
        return [f'-J "{spec}"', f"-o {log}", f"-e {log}"] + self.shared_directives(study, job.nodes[0])

    def submit_args(self, study: Study, job: Job, script: str) -> List[str]:
        conditions = []
        for dep in job.depends:
            if dep.kind == "aftercorr":
                conditions.append(f"done(${{J{dep.job}}}[*])")     # element i waits for element i
            elif dep.task is not None:
                conditions.append(f"done(${{J{dep.job}}}[{dep.task + 1}])")
            else:
                conditions.append(f"done(${{J{dep.job}}})")
        workdir = study.directory / (job.step if job.array else job.nodes[0].workspace)
        return bsub_args(conditions, workdir, study.directory / script)

    def resubmit_args(self, study_dir: Path, manifest: Mapping[str, Any], name: str,
                      parents: Sequence[int]) -> List[str]:
        info = manifest["nodes"][name]
        return bsub_args([f"done(${{J{p}}})" for p in parents], study_dir / info["workspace"],
                         study_dir / info["script"])

    # --- status ---
    def query(self, ids: Sequence[str], manifest: Mapping[str, Any]) -> Dict[str, Tuple[str, str, str]]:
        """ledger id (123 or 123[4]) -> (STAT, exit or pending reason, exit code): bjobs, then bhist."""
        bases = sorted({i.split("[")[0] for i in ids}, key=int)
        result: Dict[str, Tuple[str, str, str]] = {}
        for start in range(0, len(bases), CHUNK):
            chunk = bases[start:start + CHUNK]
            found = parse_bjobs_json(_run(["bjobs", "-a", "-o", FIELDS, "-json", *chunk]).stdout)
            result.update(found)
            known = {job_id.split("[")[0] for job_id in found}
            missing = [base for base in chunk if base not in known]
            if missing:
                # older than CLEAN_PERIOD: mbatchd forgot them, the event log still has them
                result.update(parse_bhist(_run(["bhist", "-l", "-n", "0", *missing]).stdout))
        return result

    def native_state(self, native: Tuple[str, str, str]) -> str:
        stat, reason = native[0], native[1]
        if stat == "EXIT":
            for term, state in EXIT_REASONS.items():
                if term in reason:
                    return state
        return STATES.get(stat, "UNKNOWN")

    def is_held(self, native: Tuple[str, str, str]) -> bool:
        return native[0] == "PSUSP"

    def blocked_by_parent(self, native: Tuple[str, str, str]) -> bool:
        return "TERM_ORPHAN" in native[1] or "ependency" in native[1]

    def cancel_argv(self, ids: Sequence[str]) -> List[str]:
        return ["bkill", *sorted({i.split("[")[0] for i in ids}, key=int)]

    def may_still_run(self, name: str, runtime: Mapping[str, Any]) -> bool:
        native = runtime["jobs"].get(name)
        return bool(native) and native[0] == "UNKWN"   # mbatchd lost the host; the job may go on


def bsub_args(conditions: Sequence[str], workdir: Path, script: Path) -> List[str]:
    """bsub's words for one job: held (-H) when it has no conditions (resumed at the end of the
    submit script), else chained with -w and terminated by LSF (-ti) once a condition cannot be met."""
    args = ["-H"] if not conditions else ["-w", '"' + " && ".join(conditions) + '"', "-ti"]
    return args + ["-cwd", sh(workdir), "<", sh(script)]


def _run(argv: List[str]) -> subprocess.CompletedProcess:
    proc = run_command(argv, "LSF")
    if proc.returncode != 0 and not proc.stdout.strip() and "not found" not in proc.stderr:
        raise SchedulerCommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def _ledger_id(job_id: str, index: str) -> str:
    return f"{job_id}[{index}]" if index not in ("", "0", "-") else job_id


def parse_bjobs_json(text: str) -> Dict[str, Tuple[str, str, str]]:
    """`bjobs -o "..." -json`: {"RECORDS": [{"JOBID": ..., "JOBINDEX": ..., "STAT": ...}]}."""
    try:
        records = json.loads(text).get("RECORDS", []) if text.strip() else []
    except ValueError:
        return {}
    result = {}
    for record in records:
        if "ERROR" in record or not record.get("JOBID"):
            continue  # an id bjobs does not know (any more)
        reason = record.get("EXIT_REASON") or record.get("PEND_REASON") or ""
        result[_ledger_id(str(record["JOBID"]), str(record.get("JOBINDEX", "")))] = (
            record.get("STAT", ""), reason.strip(), str(record.get("EXIT_CODE", "")).strip())
    return result


def parse_bhist(text: str) -> Dict[str, Tuple[str, str, str]]:
    """`bhist -l`: per "Job <ID>" or "Job <ID[i]>" block, how it ended."""
    result = {}
    blocks = re.split(r"(?m)^(?=Job <)", text)
    for block in blocks:
        head = re.match(r"Job <(\d+)(?:\[(\d+)\])?>", block)
        if not head:
            continue
        flat = " ".join(block.split())    # bhist folds long lines
        term = re.search(r"\bTERM_[A-Z_]+", flat)
        reason = term.group(0) if term else ""
        exited = re.search(r"Exited with exit code (\d+)", flat)
        if "Done successfully" in flat:
            native = ("DONE", "", "0")
        elif exited or "Exited" in flat or "Completed <exit>" in flat:
            native = ("EXIT", reason, exited.group(1) if exited else "")
        elif "Starting" in flat or "Dispatched" in flat:
            native = ("RUN", "", "")
        else:
            native = ("PEND", reason, "")
        result[_ledger_id(head.group(1), head.group(2) or "")] = native
    return result
