"""IBM LSF: #BSUB scripts, job arrays, a submit.sh chained with bsub -w, status from bjobs/bhist."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..bundles import time_limit
from ..expand import count, make_safe
from ..model import Node, Study
from ..plan import Capabilities, Job
from ..runner import Command
from ..states import NativeStatus, State
from ..walltime import lsf_limit
from .base import LaunchRequest
from .scheduled import ScheduledBackend, Target, allocation, directive_value, sh, truthy

FIELDS = "jobid jobindex stat exit_code exit_reason pend_reason"

# bjobs STAT -> our state; EXIT is refined by its exit reason (TERM_*)
STATES = {"PEND": State.PENDING, "PSUSP": State.PENDING, "PROV": State.PENDING, "WAIT": State.PENDING,
          "RUN": State.RUNNING, "USUSP": State.SUSPENDED, "SSUSP": State.SUSPENDED, "DONE": State.FINISHED,
          "EXIT": State.FAILED, "ZOMBI": State.CANCELLED, "UNKWN": State.UNKNOWN}
EXIT_REASONS = {"TERM_RUNLIMIT": State.TIMEDOUT, "TERM_DEADLINE": State.TIMEDOUT,
                "TERM_MEMLIMIT": State.OUT_OF_MEMORY, "TERM_OWNER": State.CANCELLED,
                "TERM_FORCE_OWNER": State.CANCELLED, "TERM_ADMIN": State.CANCELLED,
                "TERM_FORCE_ADMIN": State.CANCELLED, "TERM_ORPHAN_SYSTEM": State.CANCELLED,
                "TERM_REQUEUE_OWNER": State.PENDING, "TERM_REQUEUE_ADMIN": State.PENDING,
                "TERM_HOST": State.NODE_FAIL, "TERM_LOAD": State.NODE_FAIL}


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
    launchers = ("jsrun", "lrun")
    capabilities = Capabilities(arrays=True, max_array_size=1000, directive_prefix=prefix,  # MAX_JOB_ARRAY_SIZE
                                bundles=True)
    job_id = re.compile(r"[0-9]+(?:\[[0-9]+\])?")
    tag_field = "job description (-Jd)"
    queue_limit_name = "your pending-job limit (MAX_PEND_JOBS), from busers -w"

    # --- cluster facts, read once at compile time (before rendering) ---
    def queue_limit_commands(self, user: str) -> List[Command]:
        if not user:
            return []
        # any user may run busers for themself; a login node cut off from mbatchd: no answer, no limit
        return [Command(("busers", "-w", user), self.scheduler, optional=True, timeout=5)]

    def parse_queue_limit(self, texts: Sequence[str], batch: Mapping[str, Any]) -> Optional[int]:
        return parse_pending_limit(texts[0] if texts else "")

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
        seconds = node.walltime
        if seconds:
            lines.append(f"-W {lsf_limit(seconds)}")
        if truthy(res.get("exclusive", False)):
            lines.append("-x")
        reservation = res.get("reservation") or batch.get("reservation")
        if reservation:
            lines.append(f'-U "{directive_value(reservation)}"')
        if node.restart is not None and seconds:
            # USR1 ahead of the run limit; the script then requeues itself with brequeue
            lines += ["-wa USR1", f"-wt {warning_minutes(seconds)}"]
        lines += self.user_directives(study, node)
        return lines

    def node_directives(self, study: Study, node: Node) -> List[str]:
        base = make_safe(node.job_name)
        return ([f'-J "{directive_value(node.job_name)}"', f'-Jd "{directive_value(self.tag(study.identity))}"',
                 f"-o {base}.out", f"-e {base}.err"] + self.shared_directives(study, node))

    def array_directives(self, study: Study, job: Job, log: str) -> List[str]:
        throttle = study.options.get("throttle") or 0
        spec = f"{array_name(job.step)}[1-{job.tasks}]" + (f"%{throttle}" if throttle else "")
        return ([f'-J "{spec}"', f'-Jd "{directive_value(self.tag(study.identity))}"', f"-o {log}", f"-e {log}"]
                + self.shared_directives(study, job.nodes[0]))

    def bundle_directives(self, study: Study, job: Job, log: str) -> List[str]:
        """An array's header (a single bundle: a plain job's), with a run limit for a bundle's nodes
        run one after another."""
        lines = [line for line in self.array_directives(study, job, log) if not line.startswith("-W ")]
        if not job.array:
            lines[0] = f'-J "{array_name(job.step)}"'
        seconds = time_limit(job)
        return lines + [f"-W {lsf_limit(seconds)}"] if seconds else lines

    def job_args(self, target: Target, throttle: int) -> List[str]:
        """bsub's words for one job: held (-H) when it has no conditions (resumed at the end of the
        submit script), else chained with -w and terminated by LSF (-ti) once a condition cannot be met.
        An array's size and throttle are in its script's -J directive."""
        conditions = []
        for dep in target.depends:
            if dep.kind == "aftercorr":
                conditions.append(f"done(${{J{dep.job}}}[*])")     # element i waits for element i
            elif dep.task is not None:
                conditions.append(f"done(${{J{dep.job}}}[{dep.task + 1}])")
            else:
                conditions.append(f"done(${{J{dep.job}}})")
        args = ["-H"] if not conditions else ["-w", '"' + " && ".join(conditions) + '"', "-ti"]
        return args + list(target.options) + ["-cwd", sh(target.workdir), "<", sh(target.script)]

    selects_bundle_nodes = True

    def bundle_node_args(self, step: str, nodes: str, log: Path) -> List[str]:
        """bsub's own -J (a plain name) wins over the script's array name; -env adds the variable to
        the submitter's environment."""
        return ["-J", sh(array_name(step)), "-env", sh(f"all, MAESTRO_BUNDLE_NODES={nodes}"),
                "-o", sh(log), "-e", sh(log)]

    # --- status ---
    def query_id(self, job_id: str) -> str:
        return job_id.split("[")[0]

    def status_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Command:
        # bjobs exits non-zero when some ids are unknown, and still answers for the others
        return Command(("bjobs", "-a", "-o", FIELDS, "-json", *ids), self.scheduler, partial=True,
                       tolerate=("not found",))

    def parse_status(self, text: str) -> Dict[str, NativeStatus]:
        return parse_bjobs_json(text)

    def fallback_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Optional[Command]:
        # older than CLEAN_PERIOD: mbatchd forgot them, the event log still has them
        return Command(("bhist", "-l", "-n", "0", *ids), self.scheduler, partial=True, tolerate=("not found",))

    def parse_fallback(self, text: str) -> Dict[str, NativeStatus]:
        return parse_bhist(text)

    def native_state(self, native: NativeStatus) -> State:
        if native.state == "EXIT":
            for term, state in EXIT_REASONS.items():
                if term in native.reason:
                    return state
        return STATES.get(native.state, State.UNKNOWN)

    def is_held(self, native: NativeStatus) -> bool:
        return native.state == "PSUSP"

    def blocked_by_parent(self, native: NativeStatus) -> bool:
        return "TERM_ORPHAN" in native.reason or "ependency" in native.reason

    def cancel_argv(self, ids: Sequence[str]) -> List[str]:
        return ["bkill", *ids]

    # --- maestro update --throttle ---
    throttle_min = 1          # bmod -J "%N": a job array's job slot limit, N >= 1

    def throttle_argv(self, array_id: str, throttle: int) -> List[str]:
        """Change how many elements of a submitted job array run at once (bmod -J "%job_limit")."""
        return ["bmod", "-J", f"%{throttle}", array_id]

    def throttle_outcome(self, returncode: int, stderr: str) -> Optional[bool]:
        """True: changed; False: the array has ended or LSF forgot it; None: bmod failed."""
        if returncode == 0:
            return True
        if any(text in stderr for text in ("already finished", "No matching job found")):
            return False
        return None

    def release_argv(self, ids: Sequence[str]) -> Optional[List[str]]:
        return ["bresume", *ids]

    def tagged_command(self, tag: str, env: Optional[Dict[str, str]]) -> Optional[Command]:
        # without ids bjobs lists the user's unfinished jobs ("No unfinished job found" when none)
        return Command(("bjobs", "-o", "jobid job_description", "-json"), self.scheduler, partial=True,
                       tolerate=("No unfinished job found",), timeout=30)

    def parse_tagged(self, text: str, tag: str) -> List[str]:
        return sorted({str(r["JOBID"]) for r in _records(text) if r.get("JOB_DESCRIPTION") == tag and r.get("JOBID")})

    def active_command(self, ids: Sequence[str], env: Optional[Dict[str, str]]) -> Optional[Command]:
        return Command(("bjobs", "-o", "jobid stat", "-json", *ids), self.scheduler, partial=True,
                       tolerate=("not found",), timeout=30)

    def parse_active(self, text: str) -> List[str]:
        return sorted({str(r["JOBID"]) for r in _records(text)
                       if r.get("JOBID") and r.get("STAT") in ACTIVE_STATS})

    def may_still_run(self, name: str, runtime) -> bool:
        native = runtime.jobs.get(name)
        return bool(native) and native.state == "UNKWN"   # mbatchd lost the host; the job may go on


# busers -w columns holding the user's pending thresholds: MPJOBS is MAX_PEND_JOBS (jobs; LSF
# 10.1.0.3 and later); MPEND is MAX_PEND_SLOTS (tasks) there, and MAX_PEND_JOBS before 10.1.0.3.
# A pending job holds at least one slot, so the slot threshold also bounds the number of jobs.
PENDING_THRESHOLDS = ("MPJOBS", "MPEND")


def parse_pending_limit(text: str) -> Optional[int]:
    """The smallest pending threshold in `busers -w USER`'s table (None: none, or "-": unlimited).
    The columns are found by their header names, so older layouts without PJOBS/MPJOBS parse too."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    header = next((i for i, words in enumerate(lines) if words and words[0] == "USER/GROUP"), None)
    if header is None:
        return None    # an error message ("No such user"), or nothing at all
    columns = [lines[header].index(name) for name in PENDING_THRESHOLDS if name in lines[header]]
    limits = [int(row[column]) for row in lines[header + 1:] for column in columns
              if column < len(row) and row[column].isdigit()]
    return min(limits) if limits else None


ACTIVE_STATS = {"PEND", "PSUSP", "PROV", "WAIT", "RUN", "USUSP", "SSUSP"}


def _records(text: str) -> List[dict]:
    try:
        return [r for r in json.loads(text).get("RECORDS", []) if "ERROR" not in r] if text.strip() else []
    except (ValueError, AttributeError):
        return []


def _ledger_id(job_id: str, index: str) -> str:
    return f"{job_id}[{index}]" if index not in ("", "0", "-") else job_id


def parse_bjobs_json(text: str) -> Dict[str, NativeStatus]:
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
        result[_ledger_id(str(record["JOBID"]), str(record.get("JOBINDEX", "")))] = NativeStatus(
            record.get("STAT", ""), reason.strip(), str(record.get("EXIT_CODE", "")).strip())
    return result


def parse_bhist(text: str) -> Dict[str, NativeStatus]:
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
            native = NativeStatus("DONE", "", "0")
        elif exited or "Exited" in flat or "Completed <exit>" in flat:
            native = NativeStatus("EXIT", reason, exited.group(1) if exited else "")
        elif "Starting" in flat or "Dispatched" in flat:
            native = NativeStatus("RUN", "", "")
        else:
            native = NativeStatus("PEND", reason, "")
        result[_ledger_id(head.group(1), head.group(2) or "")] = native
    return result
