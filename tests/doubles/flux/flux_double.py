#!/usr/bin/env python3
"""Test double of the flux-core 0.88 ``flux`` command line interface.

Emulates one single-user Flux instance whose state lives in a directory
(see README.md).  Behaviour follows the flux-core 0.88 man pages
(flux-submit(1), flux-batch(1), flux-run(1), flux-jobs(1), flux-job(1),
flux-cancel(1), flux-environment(7)), the RFCs they cite (19 FLUID,
21 job states and events, 26/36 dependencies and directives) and the
dependency-after / job-list sources those pages describe.  Everything
that is simplified is listed in README.md.

Python 3.9+ standard library only.
"""
import argparse
import fcntl
import json
import locale
import math
import os
import pwd
import re
import select
import shlex
import signal
import socket
import string
import subprocess
import sys
import time
from collections import ChainMap
from contextlib import contextmanager
from datetime import datetime, timedelta

VERSION = "0.88.0"
F58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
F58_PREFIX = "\u0192"
URGENCY_HOLD, URGENCY_DEFAULT, URGENCY_EXPEDITE = 0, 16, 31
PRIORITY_MAX = 4294967295
KILL_TIMEOUT = 5.0          # job-exec kill-timeout default (SIGKILL after 5 s)
BROKER_POLL = 0.2           # seconds between broker scheduling passes
BROKER_IDLE_EXIT = 20.0     # broker exits after this long without active jobs
DEFAULT_UPTIME = 7 * 86400  # pretend the instance has been up a week (FLUIDs)
PENDING = ("DEPEND", "PRIORITY", "SCHED")
RUNNING = ("RUN", "CLEANUP")
ACTIVE = PENDING + RUNNING
STATE_SINGLE = {"NEW": "N", "DEPEND": "D", "PRIORITY": "P", "SCHED": "S",
                "RUN": "R", "CLEANUP": "C", "INACTIVE": "I"}
RESULT_ABBREV = {"COMPLETED": "CD", "FAILED": "F", "CANCELED": "CA", "TIMEOUT": "TO"}
BATCH_UNSET_ENV = ("FLUX_JOB_ID", "FLUX_JOB_SIZE", "FLUX_JOB_NNODES", "FLUX_JOB_TMPDIR",
                   "FLUX_TASK_RANK", "FLUX_TASK_LOCAL_ID", "FLUX_KVS_NAMESPACE",
                   "FLUX_PROXY_REMOTE", "FLUX_PMI_LIBRARY_PATH", "I_MPI_PMI_LIBRARY")


class FluxError(Exception):
    """An error reported the way the emulated command reports it.

    ``text`` is the complete stderr line(s); ``code`` the exit status.
    """

    def __init__(self, text, code=1):
        super().__init__(text)
        self.text = text
        self.code = code


class RequestError(Exception):
    """An RPC error response (errno + error string), as a Flux future raises."""

    def __init__(self, errnum, message):
        super().__init__(message)
        self.errnum = errnum
        self.message = message

    def oserror_str(self):
        """``str(OSError(errno, msg))``: how flux submit prints a rejection."""
        return f"[Errno {self.errnum}] {self.message}"


# --------------------------------------------------------------------------
# FLUID job ids (RFC 19)
# --------------------------------------------------------------------------

def use_ascii_f58():
    """RFC 19 / flux FAQ: fall back to ASCII ``f`` when FLUX_F58_FORCE_ASCII is
    set or the locale is not UTF-8 (Python coerces the C locale to UTF-8)."""
    if "FLUX_F58_FORCE_ASCII" in os.environ:
        return True
    try:
        codeset = locale.nl_langinfo(locale.CODESET)
    except (AttributeError, ValueError):
        return False
    return codeset.upper().replace("-", "") != "UTF8"


def f58_encode(value, plain=None):
    """Encode a FLUID in base58 (most significant digit first) with the ƒ prefix."""
    if plain is None:
        plain = use_ascii_f58()
    digits = ""
    while True:
        value, rem = divmod(value, 58)
        digits = F58_ALPHABET[rem] + digits
        if value == 0:
            break
    return ("f" if plain else F58_PREFIX) + digits


def f58_decode(text):
    """Decode F58 (prefix ``ƒ`` or ASCII ``f``); ValueError if malformed."""
    if not text.startswith((F58_PREFIX, "f")):
        raise ValueError(text)
    body = text[1:]
    if not body:
        raise ValueError(text)
    value = 0
    for char in body:
        index = F58_ALPHABET.find(char)
        if index < 0:
            raise ValueError(text)
        value = value * 58 + index
    if value >= 1 << 64:
        raise ValueError(text)
    return value


def dothex(value):
    """RFC 19 dotted hex: four groups of four hex digits."""
    raw = f"{value:016x}"
    return ".".join(raw[i:i + 4] for i in range(0, 16, 4))


def parse_jobid(text):
    """Decode any RFC 19 encoding using the RFC's disambiguation rules.

    words and emoji encodings are not emulated (ValueError)."""
    text = text.strip()
    if not text:
        raise ValueError(text)
    if "." in text:
        parts = text.removeprefix("job.").split(".")
        if len(parts) != 4 or not all(re.fullmatch(r"[0-9a-fA-F]{4}", p) for p in parts):
            raise ValueError(text)
        return int("".join(parts), 16)
    if "-" in text:
        raise ValueError(text)
    if text.startswith((F58_PREFIX, "f")):
        return f58_decode(text)
    if text.startswith("0x"):
        if not re.fullmatch(r"0x[0-9a-fA-F]+", text):
            raise ValueError(text)
        value = int(text, 16)
    else:
        if not re.fullmatch(r"[0-9]+", text):
            raise ValueError(text)
        value = int(text)
    if value >= 1 << 64:
        raise ValueError(text)
    return value


def encode_jobid(value, to):
    """flux_job_id_encode(): dec, hex, dothex, kvs, f58, f58plain."""
    if to == "dec":
        return str(value)
    if to == "hex":
        return f"0x{value:x}"
    if to == "dothex":
        return dothex(value)
    if to == "kvs":
        return "job." + dothex(value)
    if to == "f58":
        return f58_encode(value)
    if to == "f58plain":
        return f58_encode(value, plain=True)
    if to in ("words", "emoji"):
        raise NotImplementedError(to)
    raise KeyError(to)


class JobID(int):
    """Like flux.job.JobID: an int whose str() is F58, with encoding attributes."""

    def __new__(cls, value):
        if isinstance(value, int):
            self = super().__new__(cls, value)
            self.orig = str(value)
            return self
        try:
            self = super().__new__(cls, parse_jobid(value))
        except ValueError:
            raise ValueError(f"{value} is not a valid Flux jobid") from None
        self.orig = value
        return self

    def __str__(self):
        return self.f58

    def __repr__(self):
        return f"JobID({int(self)})"

    dec = property(lambda self: str(int(self)))
    f58 = property(lambda self: f58_encode(int(self)))
    f58plain = property(lambda self: f58_encode(int(self), plain=True))
    hex = property(lambda self: f"0x{int(self):x}")
    dothex = property(lambda self: dothex(int(self)))
    kvs = property(lambda self: "job." + dothex(int(self)))


def new_fluid(state):
    """RFC 19 layout: 40-bit ms timestamp since the instance epoch, 14-bit
    generator id (rank 0), 10-bit sequence."""
    now_ms = int((time.time() - state["epoch"]) * 1000)
    if now_ms <= state["last_ms"]:
        now_ms, seq = state["last_ms"], state["seq"] + 1
        if seq >= 1024:
            now_ms, seq = now_ms + 1, 0
    else:
        seq = 0
    state["last_ms"], state["seq"] = now_ms, seq
    return (now_ms << 24) | seq


# --------------------------------------------------------------------------
# Durations (RFC 23 Flux Standard Duration)
# --------------------------------------------------------------------------

def parse_fsd(text):
    """flux.util.parse_fsd(): float with optional s|m|h|d|ms suffix."""
    if text in ("inf", "infinity", "INF", "INFINITY"):
        return float("inf")
    match = re.match(r"(.*?)(s|m|h|d|ms)$", text)
    try:
        value = float(match.group(1) if match else text)
    except ValueError:
        raise ValueError("invalid Flux standard duration") from None
    unit = match.group(2) if match else "s"
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "ms": 0.001}[unit]
    seconds = value * scale
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise ValueError("invalid Flux standard duration")
    return seconds


def fsd(secs):
    """flux.util.fsd(): render seconds as a Flux Standard Duration."""
    if math.isinf(secs):
        return "inf"
    if secs < 1.0e-3:
        return "0s"
    if secs < 10.0:
        return f"{secs:.03f}s"
    if secs < 60.0:
        return f"{secs:.4g}s"
    if secs < 3600.0:
        return f"{secs / 60.0:.4g}m"
    if secs < 86400.0:
        return f"{secs / 3600.0:.4g}h"
    return f"{secs / 86400.0:.4g}d"


def parse_time_limit(value):
    """Submission commands: bare number = minutes, otherwise FSD (seconds)."""
    try:
        return float(value) * 60
    except ValueError:
        return parse_fsd(value)


def decode_signal(value):
    """flux.job._utils.decode_signal(): number, SIGNAME or NAME."""
    try:
        return int(value)
    except ValueError:
        pass
    for name in (value, "SIG" + value):
        if hasattr(signal, name) and name.startswith("SIG") and "_" not in name:
            return int(getattr(signal, name))
    raise ValueError(f"signal '{value}' is invalid")


def parse_signal_option(arg):
    """--signal=[SIG][@TIME]: defaults SIGUSR1 and 60 s before expiration."""
    sig, _, tleft = arg.partition("@")
    try:
        signum = decode_signal(sig or "SIGUSR1")
        if signum <= 0:
            raise ValueError("signal must be > 0")
    except ValueError as exc:
        raise ValueError(f"--signal={arg}: {exc}") from None
    try:
        timeleft = float(tleft) if tleft and re.fullmatch(r"[0-9.]+", tleft) else \
            parse_fsd(tleft) if tleft else 60.0
    except ValueError as exc:
        raise ValueError(f"--signal={arg}: {exc}") from None
    return {"signum": signum, "timeleft": timeleft}


# --------------------------------------------------------------------------
# The instance: a state directory guarded by fcntl locks
# --------------------------------------------------------------------------

class ConnectError(Exception):
    """flux_open() failed: there is no instance to talk to."""


def env_int(name, default):
    """Integer environment knob with a default."""
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return default


class Instance:
    """One emulated Flux instance.  FLUX_URI=local://DIR names it like a
    local broker socket path would; FLUX_DOUBLE_DIR is the fallback."""

    def __init__(self, uri, path):
        self.uri = uri
        self.path = path
        self.state_path = os.path.join(path, "state.json")
        self.lock_path = os.path.join(path, "lock")

    @classmethod
    def open(cls):
        """Locate the instance the way flux_open() locates a broker."""
        uri = os.environ.get("FLUX_URI", "")
        if uri.startswith("local://"):
            path = uri[len("local://"):]
            if not os.path.isdir(path):
                raise ConnectError(f"broker socket {path} was not found")
            return cls(uri, os.path.abspath(path))
        path = os.environ.get("FLUX_DOUBLE_DIR")
        if path:
            path = os.path.abspath(path)
            os.makedirs(path, exist_ok=True)
            return cls("local://" + path, path)
        raise ConnectError("broker socket /run/flux/local was not found")

    def job_dir(self, jobid):
        """Per-job directory (spec, script copy, shell logs, KVS-output stand-in)."""
        return os.path.join(self.path, "jobs", str(int(jobid)))

    def _new_state(self):
        """Empty state of a new instance (epoch = now - FLUX_DOUBLE_UPTIME)."""
        uptime = env_int("FLUX_DOUBLE_UPTIME", DEFAULT_UPTIME)
        return {"version": 1, "epoch": time.time() - uptime, "last_ms": 0,
                "seq": 0, "jobs": {}}

    def _load(self):
        """Read state.json (a new state if the instance has none yet)."""
        try:
            with open(self.state_path, encoding="utf-8") as fp:
                return json.load(fp)
        except FileNotFoundError:
            return self._new_state()

    def _save(self, state):
        """Write state.json atomically (temporary file + rename)."""
        tmp = f"{self.state_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fp:
            json.dump(state, fp, separators=(",", ":"))
        os.replace(tmp, self.state_path)

    @contextmanager
    def transaction(self):
        """Exclusive fcntl lock; the state is saved when the block succeeds."""
        with open(self.lock_path, "a+") as lockfp:
            fcntl.flock(lockfp, fcntl.LOCK_EX)
            state = self._load()
            yield state
            self._save(state)

    def snapshot(self):
        """Read the state under a shared lock."""
        with open(self.lock_path, "a+") as lockfp:
            fcntl.flock(lockfp, fcntl.LOCK_SH)
            return self._load()

    def hostname(self):
        """Short host name used for nodelists."""
        return socket.gethostname().split(".")[0]



def idset_encode(ids):
    """RFC 22 idset string, e.g. ``0-2,5``."""
    ids = sorted(set(ids))
    parts, start = [], None
    for i, value in enumerate(ids):
        if start is None:
            start = value
        if i + 1 == len(ids) or ids[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)


def idset_decode(text):
    """Parse an RFC 22 idset (``0-3,7`` or ``[0-3]``); ValueError if invalid."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ids = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"invalid idset {text}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        ids.extend(range(low, high + 1))
    return ids


def hostlist_encode(names):
    """RFC 29 hostlist for our node names (``host`` or ``host[0-3]``)."""
    if len(names) == 1:
        return names[0]
    prefix = re.sub(r"\d+$", "", names[0])
    numbers = [int(n[len(prefix):]) for n in names]
    return f"{prefix}[{idset_encode(numbers)}]"


# --------------------------------------------------------------------------
# Job manager: RFC 21 states and events, dependency-after semantics
# --------------------------------------------------------------------------

AFTER_TYPES = {"after": "after-start", "afterstart": "after-start",
               "afterany": "after-finish", "afterok": "after-success",
               "afternotok": "after-failure", "afterexcept": "after-except"}
STATE_TIME = {"DEPEND": "t_depend", "PRIORITY": "t_priority", "SCHED": "t_sched",
              "RUN": "t_run", "CLEANUP": "t_cleanup", "INACTIVE": "t_inactive"}


def instance_config(state):
    """Instance configuration, fixed when the state is first created (like a
    broker reading its config at startup)."""
    if "config" not in state:
        raw = os.environ.get("FLUX_DOUBLE_QUEUES", "")
        state["config"] = {
            "cores": max(1, env_int("FLUX_DOUBLE_CORES", 8)),
            "nodes": max(1, env_int("FLUX_DOUBLE_NODES", 1)),
            "queues": [q.strip() for q in raw.split(",") if q.strip()],
            "default_queue": os.environ.get("FLUX_DOUBLE_DEFAULT_QUEUE") or None,
        }
    return state["config"]


def priority_for(urgency):
    """priority-default plugin: priority = urgency; hold -> 0, expedite -> max."""
    if urgency == URGENCY_HOLD:
        return 0
    if urgency == URGENCY_EXPEDITE:
        return PRIORITY_MAX
    return urgency


def post_event(job, name, context=None, timestamp=None):
    """Append an RFC 18 entry (timestamp, name, optional context)."""
    stamp = time.time() if timestamp is None else timestamp
    if job["eventlog"]:
        stamp = max(stamp, job["eventlog"][-1]["timestamp"])
    entry = {"timestamp": stamp, "name": name}
    if context is not None:
        entry["context"] = context
    job["eventlog"].append(entry)
    return stamp


def has_event(job, name):
    """True if the job eventlog contains an event called ``name``."""
    return any(entry["name"] == name for entry in job["eventlog"])


def signal_group(job, signum):
    """Deliver a signal to the job's process group (job shell + tasks)."""
    pgid = job.get("pgid")
    if pgid:
        try:
            os.killpg(pgid, signum)
        except OSError:
            pass


def parse_dependency_uri(uri):
    """RFC 26 URI ``SCHEME:VALUE[?k=v]`` as flux.job._utils.URIArg splits it."""
    if ":" not in uri:
        uri += ":"
    scheme, _, rest = uri.partition(":")
    value, _, query = rest.partition("?")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) or not value:
        raise ValueError(f'Invalid dependency URI "{uri}"')
    return {"scheme": scheme, "value": value, "query": query}


class JobManager:
    """The job manager's view of the instance for one locked transaction."""

    def __init__(self, inst, state):
        self.inst = inst
        self.state = state
        self.jobs = state["jobs"]
        self.config = instance_config(state)
        self._inactive = []

    def get(self, jobid):
        """Active or inactive job record, or None (nothing is ever purged)."""
        return self.jobs.get(str(int(jobid)))

    def set_state(self, job, new):
        """Enter an RFC 21 state; the job-list t_* timestamp is that of the
        event just posted."""
        job["state"] = new
        job[STATE_TIME[new]] = job["eventlog"][-1]["timestamp"]

    # ---- submission ------------------------------------------------------

    def check_queue(self, name):
        """Queue validation: job-manager messages for the anonymous queue,
        frobnicator messages when named queues are configured."""
        queues = self.config["queues"]
        if not queues:
            if name:
                raise RequestError(22, f"'{name}' is not a valid queue")
            return None
        name = name or self.config["default_queue"]
        if not name:
            raise RequestError(22, "no queue specified")
        if name not in queues:
            raise RequestError(22, f"Invalid queue '{name}' specified")
        return name

    def check_feasible(self, req):
        """Feasibility check against FLUX_DOUBLE_NODES x FLUX_DOUBLE_CORES."""
        nodes, cpn = self.config["nodes"], self.config["cores"]
        unsat = RequestError(19, "Unsatisfiable request")
        if req["gpus"]:
            raise unsat
        if req["nnodes"]:
            per = cpn if req["exclusive"] else -(-req["cores"] // req["nnodes"])
            if req["nnodes"] > nodes or per > cpn:
                raise unsat
        elif req["cores"] > nodes * cpn:
            raise unsat

    def check_dependency(self, uri):
        """Validate one dependency as the job-manager plugins do at submit."""
        scheme, value = uri["scheme"], uri["value"]
        if scheme == "begin-time":
            try:
                stamp = float(value)
            except ValueError:
                raise RequestError(22, f"begin-time: invalid timestamp: {value}") from None
            return {"kind": "begin", "time": stamp, "description": f"begin-time={value}"}
        if scheme not in AFTER_TYPES:
            raise RequestError(22, f'dependency scheme "{scheme}" not supported')
        try:
            target_id = parse_jobid(value)
        except ValueError:
            raise RequestError(
                22, f'dependency: {scheme}: "{value}" is not a valid jobid') from None
        target = self.get(target_id)
        if target is None:
            raise RequestError(22, f"dependency: {scheme}: id {value}: job not found")
        dep = {"kind": "after", "type": AFTER_TYPES[scheme], "target": target_id,
               "description": f"{AFTER_TYPES[scheme]}={value}", "immediate": False}
        if target["state"] == "INACTIVE":
            self._check_inactive_target(dep, target, value)
            dep["immediate"] = True
        elif dep["type"] == "after-start" and has_event(target, "start"):
            dep["immediate"] = True
        return dep

    def _check_inactive_target(self, dep, target, value):
        """dependency_handle_inactive(): reject what can never be satisfied."""
        dtype = dep["type"]
        if dtype != "after-finish" and not has_event(target, "alloc"):
            raise RequestError(22, f"dependency: after: {value} never started")
        if dtype == "after-start" and not has_event(target, "start"):
            raise RequestError(22, f"dependency: after: {value} never started")
        if dtype == "after-success" and target["result"] != "COMPLETED":
            raise RequestError(22, f"dependency: afterok: job {value} failed or was canceled")
        if dtype == "after-failure" and target["result"] == "COMPLETED":
            raise RequestError(22, f"dependency: afternotok: job {value} succeeded")
        if dtype == "after-except" and target.get("end_event") != "exception":
            raise RequestError(22, f"dependency: afterexcept: job {value}: no exception")

    def submit(self, spec):
        """Validate and enqueue a job; returns its id.  RequestError rejects."""
        if not 0 <= spec["urgency"] <= 31:
            raise RequestError(22, "urgency out of range")
        queue = self.check_queue(spec.get("queue"))
        self.check_feasible(spec["req"])
        deps = [self.check_dependency(uri) for uri in spec["dependencies"]]
        jobid = new_fluid(self.state)
        job = self._new_record(jobid, spec, queue)
        self.jobs[str(jobid)] = job
        self._write_job_files(jobid, spec)
        post_event(job, "submit", {"userid": job["userid"], "urgency": job["urgency"],
                                   "flags": spec["flags"], "version": 1}, job["t_submit"])
        post_event(job, "validate", None)
        self.set_state(job, "DEPEND")
        for dep in deps:
            post_event(job, "dependency-add", {"description": dep["description"]})
            job["deps"].append(dep)
            job["dependencies"].append(dep["description"])
        for dep in [d for d in deps if d.get("immediate")]:
            self.remove_dependency(job, dep)
        self.maybe_leave_depend(job)
        return jobid

    def _new_record(self, jobid, spec, queue):
        """The job-list style record kept in state.json."""
        job = {key: None for key in ("priority", "nnodes", "ranks", "nodelist", "alloc",
                                     "waitstatus", "success", "result", "exception",
                                     "end_event", "kill", "pgid", "broker")}
        job.update({
            "id": jobid, "kind": spec["kind"], "userid": os.getuid(),
            "urgency": spec["urgency"], "state": "NEW", "name": spec["name"],
            "queue": queue, "bank": spec.get("bank"), "project": None,
            "cwd": spec["cwd"], "ntasks": spec["ntasks"], "ncores": spec["req"]["cores"],
            "req": spec["req"], "duration": spec["duration"] or 0.0,
            "t_submit": time.time(), "expiration": 0.0, "deps": [], "dependencies": [],
            "eventlog": [], "signal": spec.get("signal"), "signal_sent": False,
        })
        for key in STATE_TIME.values():
            job[key] = 0.0
        return job

    def _write_job_files(self, jobid, spec):
        """Spec (environment, command, jobspec) and batch script copy."""
        jdir = self.inst.job_dir(jobid)
        os.makedirs(jdir, exist_ok=True)
        script = spec.pop("script", None)
        if script is not None:
            with open(os.path.join(jdir, "script"), "w", encoding="utf-8") as fp:
                fp.write(script)
        spec["uri"] = self.inst.uri
        with open(os.path.join(jdir, "spec.json"), "w", encoding="utf-8") as fp:
            json.dump(spec, fp)

    # ---- dependencies and priority -------------------------------------

    def remove_dependency(self, job, dep):
        """Post dependency-remove; leave DEPEND once none are outstanding."""
        post_event(job, "dependency-remove", {"description": dep["description"]})
        job["deps"].remove(dep)
        if dep["description"] in job["dependencies"]:
            job["dependencies"].remove(dep["description"])
        self.maybe_leave_depend(job)

    def maybe_leave_depend(self, job):
        """depend event -> PRIORITY -> priority event -> SCHED."""
        if job["state"] != "DEPEND" or job["deps"]:
            return
        post_event(job, "depend", None)
        self.set_state(job, "PRIORITY")
        job["priority"] = priority_for(job["urgency"])
        post_event(job, "priority", {"priority": job["priority"]})
        self.set_state(job, "SCHED")

    def set_urgency(self, job, urgency, userid):
        """job-manager urgency RPC; returns the old urgency."""
        if job["state"] == "INACTIVE":
            raise RequestError(22, "job is inactive")
        if job["alloc"]:
            raise RequestError(22, "urgency cannot be changed once resources are allocated")
        old = job["urgency"]
        post_event(job, "urgency", {"userid": userid, "urgency": urgency})
        job["urgency"] = urgency
        if job["state"] == "SCHED" and priority_for(urgency) != job["priority"]:
            job["priority"] = priority_for(urgency)
            post_event(job, "priority", {"priority": job["priority"]})
        return old

    def release_afterstart(self, target):
        """start event of ``target`` satisfies after-start dependencies."""
        for job, dep in self._waiting_on(target):
            if dep["type"] == "after-start":
                self.remove_dependency(job, dep)

    def _waiting_on(self, target):
        """(job, dep) pairs of DEPEND jobs with an outstanding dep on target."""
        return [(job, dep) for job in list(self.jobs.values()) if job["state"] == "DEPEND"
                for dep in list(job["deps"]) if dep.get("target") == target["id"]]

    def release_dependents(self, target):
        """dependency-after inactive_cb(): release what is satisfied, raise a
        fatal type=dependency exception on what never can be."""
        waiting = self._waiting_on(target)
        if not waiting:
            return
        if not has_event(target, "alloc"):
            release, note = {"after-finish"}, "job never started"
        elif target["result"] == "COMPLETED":
            release, note = {"after-finish", "after-success"}, "can never be satisfied"
        else:
            release, note = {"after-finish", "after-failure"}, "can never be satisfied"
            if target.get("end_event") == "exception":
                release.add("after-except")
        for job, dep in waiting:
            if dep["type"] in release and dep in job["deps"]:
                self.remove_dependency(job, dep)
        for job, dep in waiting:
            if dep["type"] not in release and job["state"] == "DEPEND":
                self.raise_exception(job, "dependency",
                                     f"dependency {dep['description']} {note}")

    def check_begin_times(self, now):
        """begin-time dependencies are removed once the time has passed."""
        for job in list(self.jobs.values()):
            if job["state"] != "DEPEND":
                continue
            for dep in list(job["deps"]):
                if dep["kind"] == "begin" and now >= dep["time"]:
                    self.remove_dependency(job, dep)

    # ---- exceptions, completion -----------------------------------------

    def raise_exception(self, job, etype, note, severity=0, userid=None):
        """RFC 21 exception event; severity 0 moves the job to CLEANUP."""
        context = {"type": etype, "severity": severity}
        if userid is not None:
            context["userid"] = userid
        context["note"] = note
        post_event(job, "exception", context)
        exc = job.get("exception")
        if not exc or severity < exc["severity"]:
            job["exception"] = {"occurred": True, "severity": severity,
                                "type": etype, "note": note}
        if severity != 0 or job["state"] not in ACTIVE or job["state"] == "CLEANUP":
            return
        job["end_event"] = "exception"
        if job["state"] in PENDING:
            self.set_state(job, "CLEANUP")
            post_event(job, "clean", None)
            self._inactivate(job)
        else:
            self.set_state(job, "CLEANUP")
            job["kill"] = {"t": job["t_cleanup"], "sigkill": False}
            signal_group(job, signal.SIGALRM if etype == "timeout" else signal.SIGTERM)

    def finish(self, job, waitstatus):
        """finish (largest shell wait status), release, free, clean."""
        post_event(job, "finish", {"status": waitstatus})
        job["waitstatus"] = waitstatus
        if job["state"] == "RUN":
            job["end_event"] = "finish"
            self.set_state(job, "CLEANUP")
        post_event(job, "release", {"ranks": "all", "final": True})
        post_event(job, "free", None)
        post_event(job, "clean", None)
        self._inactivate(job)

    def _inactivate(self, job):
        """INACTIVE with the job-list result rules (eventlog_inactive_complete)."""
        self.set_state(job, "INACTIVE")
        exc = job.get("exception")
        fatal = bool(exc) and exc["severity"] == 0
        job["success"] = job.get("waitstatus") == 0 and not fatal
        if job["success"]:
            job["result"] = "COMPLETED"
        elif exc and exc["type"] == "cancel":
            job["result"] = "CANCELED"
        elif exc and exc["type"] == "timeout":
            job["result"] = "TIMEOUT"
        else:
            job["result"] = "FAILED"
        job["kill"] = None
        job["pgid"] = None
        self._inactive.append(job)

    def settle(self):
        """Propagate completions to dependents until nothing changes (cascade)."""
        while self._inactive:
            self.release_dependents(self._inactive.pop(0))

    # ---- resources --------------------------------------------------------

    def free_cores(self):
        """Free cores per node rank, from jobs still holding an allocation."""
        free = [self.config["cores"]] * self.config["nodes"]
        for job in self.jobs.values():
            if job["state"] in RUNNING and job["alloc"]:
                for rank, count in job["alloc"].items():
                    free[int(rank)] -= count
        return free

    def try_alloc(self, req, free):
        """First-fit allocation {rank: cores} or None."""
        cpn = self.config["cores"]
        if req["nnodes"]:
            per = cpn if req["exclusive"] else -(-req["cores"] // req["nnodes"])
            ranks = [r for r, f in enumerate(free) if f >= per]
            if len(ranks) < req["nnodes"]:
                return None
            return {str(r): per for r in ranks[:req["nnodes"]]}
        for rank, avail in enumerate(free):
            if avail >= req["cores"]:
                return {str(rank): req["cores"]}
        alloc, need = {}, req["cores"]
        for rank, avail in enumerate(free):
            take = min(avail, need)
            if take > 0:
                alloc[str(rank)] = take
                need -= take
        return alloc if need == 0 else None

    def sched_queue(self):
        """SCHED jobs the scheduler may consider, in priority order."""
        jobs = [j for j in self.jobs.values() if j["state"] == "SCHED" and j["priority"]]
        return sorted(jobs, key=lambda j: (-j["priority"], j["t_submit"], j["id"]))

    def alloc(self, job, alloc):
        """alloc event: the job enters RUN holding ``alloc``."""
        post_event(job, "alloc", None)
        self.set_state(job, "RUN")
        ranks = sorted(int(r) for r in alloc)
        names = self.inst_node_names()
        job["alloc"] = alloc
        job["nnodes"] = len(ranks)
        job["ranks"] = idset_encode(ranks)
        job["nodelist"] = hostlist_encode([names[r] for r in ranks])
        job["expiration"] = job["t_run"] + job["duration"] if job["duration"] else 0.0

    def inst_node_names(self):
        """Node names for this instance's configured node count."""
        host = self.inst.hostname()
        count = self.config["nodes"]
        return [host] if count == 1 else [f"{host}{i}" for i in range(count)]


# --------------------------------------------------------------------------
# Broker: a detached daemon that schedules and runs jobs
# --------------------------------------------------------------------------

SELF = os.path.abspath(__file__)


def wake_broker(inst):
    """Nudge a running broker (SIGUSR1) to act now rather than at its next poll."""
    try:
        with open(os.path.join(inst.path, "broker.pid")) as fp:
            pid = int(fp.read())
        with open(f"/proc/{pid}/cmdline", "rb") as fp:
            argv = fp.read().split(b"\0")
    except (OSError, ValueError):
        return
    if b"broker" in argv and os.fsencode(inst.path) in argv:
        os.kill(pid, signal.SIGUSR1)


def ensure_broker(inst):
    """Start the broker (setsid, detached) unless one holds broker.lock."""
    lock_path = os.path.join(inst.path, "broker.lock")
    with open(lock_path, "a+") as lockfp:
        try:
            fcntl.flock(lockfp, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            wake_broker(inst)
            return
        fcntl.flock(lockfp, fcntl.LOCK_UN)
    with open(os.path.join(inst.path, "broker.log"), "ab") as log:
        subprocess.Popen([sys.executable, SELF, "broker", inst.path], cwd=inst.path,
                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True, close_fds=True)


class Broker:
    """Polls the state every BROKER_POLL seconds: reaps job shells, enforces
    time limits and kill timeouts, resolves begin-time, starts jobs."""

    def __init__(self, inst):
        self.inst = inst
        self.token = f"{os.getpid()}.{time.time()}"
        self.children = {}
        try:
            self.idle_exit = float(os.environ.get("FLUX_DOUBLE_BROKER_IDLE", BROKER_IDLE_EXIT))
        except ValueError:
            self.idle_exit = BROKER_IDLE_EXIT

    def run(self):
        """Main loop; exits after BROKER_IDLE_EXIT seconds with no active job."""
        lock_path = os.path.join(self.inst.path, "broker.lock")
        lockfp = open(lock_path, "a+")  # noqa: SIM115 (held until exit)
        try:
            fcntl.flock(lockfp, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        pidfile = os.path.join(self.inst.path, "broker.pid")
        with open(pidfile, "w") as fp:
            fp.write(f"{os.getpid()}\n")
        self.install_wakeup()
        idle_since, exiting = time.time(), False
        while not exiting:
            now = time.time()
            with self.inst.transaction() as state:
                jm = JobManager(self.inst, state)
                busy = self.step(jm, now)
                if busy or self.children:
                    idle_since = now
                elif now - idle_since >= self.idle_exit:
                    fcntl.flock(lockfp, fcntl.LOCK_UN)
                    exiting = True
            if not exiting:
                self.pause()
        os.unlink(pidfile)
        return 0

    def install_wakeup(self):
        """SIGCHLD (a job shell exited) and SIGUSR1 (a command changed the
        state) end the poll sleep early."""
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(signum, _ignore_signal)

    def pause(self):
        """Sleep up to BROKER_POLL seconds, or until woken."""
        try:
            ready, _, _ = select.select([self.wake_r], [], [], BROKER_POLL)
            if ready:
                os.read(self.wake_r, 4096)
        except (InterruptedError, BlockingIOError):
            pass

    def step(self, jm, now):
        """One scheduling pass; returns True if any job is active."""
        self.post_starts(jm)
        self.reap(jm)
        self.check_orphans(jm)
        self.escalate_kills(jm, now)
        self.check_timers(jm, now)
        jm.check_begin_times(now)
        jm.settle()
        self.schedule(jm)
        jm.settle()
        return any(job["state"] in ACTIVE for job in jm.jobs.values())

    def reap(self, jm):
        """Collect exited job shells: exec exception (if any), then finish."""
        for jobid, proc in list(self.children.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.children[jobid]
            job = jm.get(jobid)
            if job is None or job["state"] not in RUNNING:
                continue
            status = (code << 8) if code >= 0 else -code
            if not has_event(job, "start"):
                post_event(job, "start", None)
                jm.release_afterstart(job)
            exc = read_json(os.path.join(jm.inst.job_dir(jobid), "shell-exception.json"))
            if exc and job["state"] == "RUN":
                jm.raise_exception(job, exc["type"], exc["note"])
            jm.finish(job, status)

    def check_orphans(self, jm):
        """Running jobs left by a broker that died: finish them once gone."""
        for job in jm.jobs.values():
            if job["state"] not in RUNNING or job["broker"] == self.token:
                continue
            try:
                os.killpg(job["pgid"], 0)
                continue
            except (OSError, TypeError):
                pass
            if job["state"] == "RUN":
                jm.raise_exception(job, "exec", "lost contact with job shell")
            for name, ctx in (("release", {"ranks": "all", "final": True}), ("free", None),
                              ("clean", None)):
                post_event(job, name, ctx)
            jm._inactivate(job)

    def escalate_kills(self, jm, now):
        """job-exec kill-timeout: SIGKILL the job KILL_TIMEOUT s after SIGTERM."""
        for job in jm.jobs.values():
            kill = job.get("kill")
            if kill and not kill["sigkill"] and now - kill["t"] >= KILL_TIMEOUT:
                kill["sigkill"] = True
                signal_group(job, signal.SIGKILL)

    def check_timers(self, jm, now):
        """--signal warning and the time limit (exception type=timeout)."""
        for job in list(jm.jobs.values()):
            if job["state"] != "RUN" or not job["expiration"]:
                continue
            sig = job.get("signal")
            if sig and not job["signal_sent"] and now >= job["expiration"] - sig["timeleft"]:
                job["signal_sent"] = True
                signal_group(job, sig["signum"])
            if now >= job["expiration"]:
                jm.raise_exception(job, "timeout", "resource allocation expired")

    def schedule(self, jm):
        """First-fit in priority order; held jobs (priority 0) never start."""
        free = jm.free_cores()
        for job in jm.sched_queue():
            alloc = jm.try_alloc(job["req"], free)
            if alloc is None:
                continue
            for rank, count in alloc.items():
                free[int(rank)] -= count
            self.start(jm, job, alloc)

    def start(self, jm, job, alloc):
        """alloc, spawn the job shell in its own session, start."""
        jm.alloc(job, alloc)
        jdir = jm.inst.job_dir(job["id"])
        with open(os.path.join(jdir, "R.json"), "w") as fp:
            json.dump(make_R(job), fp)
        with open(os.path.join(jdir, "shell.log"), "ab") as log:
            proc = subprocess.Popen([sys.executable, "-I", "-S", SELF, "shell", jm.inst.path,
                                     str(job["id"])], cwd=jm.inst.path,
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True)
        self.children[job["id"]] = proc
        job["pgid"], job["broker"] = proc.pid, self.token

    def post_starts(self, jm):
        """start event once the job shell has launched its tasks."""
        for jobid in self.children:
            job = jm.get(jobid)
            if job and job["state"] in RUNNING and not has_event(job, "start") and \
                    os.path.exists(os.path.join(jm.inst.job_dir(jobid), "started")):
                post_event(job, "start", None)
                jm.release_afterstart(job)


def make_R(job):
    """An RFC 20 R object for the allocation (flux job info ID R)."""
    lite = [{"rank": rank, "children": {"core": idset_encode(range(count))}}
            for rank, count in sorted(job["alloc"].items(), key=lambda kv: int(kv[0]))]
    return {"version": 1, "execution": {
        "R_lite": lite, "starttime": job["t_run"], "expiration": job["expiration"],
        "nodelist": [job["nodelist"]]}}


def read_json(path):
    """Load a JSON file, or None if it does not exist."""
    try:
        with open(path, encoding="utf-8") as fp:
            return json.load(fp)
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------
# Job shell: runs the tasks of one job
# --------------------------------------------------------------------------

FORWARDED_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGALRM", "SIGUSR1", "SIGUSR2")


def _ignore_signal(signum, frame):
    """Handler (not SIG_IGN, so tasks get default dispositions after exec)."""


def mustache(template, tags):
    """Expand {{tag}} mustache templates; unknown tags are left in place."""
    def expand(match):
        key = match.group(1).strip()
        return str(tags[key]) if key in tags else match.group(0)
    return re.sub(r"\{\{([^{}]+)\}\}", expand, template)


def job_tags(jobid, name, ntasks, nnodes, tmpdir, ascii_ids):
    """Job-level mustache tags (flux-submit(1) MUSTACHE TEMPLATES)."""
    jid = int(jobid)
    tags = {"name": name, "nnodes": nnodes, "size": ntasks, "ntasks": ntasks,
            "node.id": 0, "node.name": socket.gethostname().split(".")[0],
            "node.broker_rank": 0, "tmpdir": tmpdir}
    f58 = f58_encode(jid, plain=ascii_ids)
    for prefix in ("id", "jobid"):
        tags[prefix] = f58
        tags[f"{prefix}.f58"] = f58
        for enc in ("dec", "hex", "dothex", "kvs", "f58plain"):
            tags[f"{prefix}.{enc}"] = encode_jobid(jid, enc)
    return tags


def open_output(template, tags, cwd, kvs_fp):
    """--output/--error target: a file (truncated) or the KVS stand-in."""
    if template is None or template in ("none", "kvs"):
        return kvs_fp
    path = os.path.join(cwd, mustache(template, tags))
    return open(path, "w")


def task_environment(spec, job, jobid, tmpdir):
    """Job environment per flux-environment(7): batch initial programs get
    FLUX_ENCLOSING_ID and have FLUX_JOB_* unset; tasks get FLUX_JOB_* ."""
    env = dict(spec["environment"])
    ascii_ids = "FLUX_F58_FORCE_ASCII" in env or use_ascii_f58()
    f58 = f58_encode(int(jobid), plain=ascii_ids)
    if spec["kind"] == "batch":
        env = {k: v for k, v in env.items() if k not in BATCH_UNSET_ENV
               and not k.startswith(("PMI_", "SLURM_"))}
        env.update(FLUX_URI=spec["uri"], FLUX_ENCLOSING_ID=f58)
        return env
    env.update(FLUX_JOB_ID=f58, FLUX_JOB_SIZE=str(job["ntasks"]),
               FLUX_JOB_NNODES=str(job["nnodes"]), FLUX_JOB_TMPDIR=tmpdir,
               FLUX_URI=spec["uri"], FLUX_KVS_NAMESPACE=f"job-{int(jobid)}")
    return env


def shell_main(path, jobid):
    """Job shell: starts the tasks in this process group and exits with the
    largest task exit code (128+signo for a task killed by a signal)."""
    for name in FORWARDED_SIGNALS:
        signal.signal(getattr(signal, name), _ignore_signal)
    inst = Instance("", path)
    jdir = inst.job_dir(jobid)
    spec = read_json(os.path.join(jdir, "spec.json"))
    spec["broker_pid"] = os.getppid()
    job = {"ntasks": spec["ntasks"], "nnodes": len(read_json(
        os.path.join(jdir, "R.json"))["execution"]["R_lite"])}
    tmpdir = os.path.join(jdir, "tmp")
    os.makedirs(tmpdir, exist_ok=True)
    env = task_environment(spec, job, jobid, tmpdir)
    ascii_ids = "FLUX_F58_FORCE_ASCII" in env or use_ascii_f58()
    tags = job_tags(jobid, spec["name"], spec["ntasks"], job["nnodes"], tmpdir, ascii_ids)
    command = spec["command"]
    if spec["kind"] == "batch":
        script = os.path.join(tmpdir, "script")
        with open(os.path.join(jdir, "script"), encoding="utf-8") as src, \
                open(script, "w", encoding="utf-8") as dst:
            dst.write(src.read())
        os.chmod(script, 0o700)
        command = [script] + spec["args"]
    with open(os.path.join(jdir, "output"), "a") as kvs_fp:
        code = run_tasks(spec, command, env, tags, kvs_fp, jdir)
    return code


def run_tasks(spec, command, env, tags, kvs_fp, jdir):
    """Start every task, wait for all; record start failures."""
    cwd = spec["cwd"]
    ntasks = 1 if spec["kind"] == "batch" else spec["ntasks"]
    try:
        out_fp = open_output(spec.get("output"), tags, cwd, kvs_fp)
        err_fp = open_output(spec.get("error"), tags, cwd, kvs_fp) \
            if spec.get("error") is not None else out_fp
        stdin = subprocess.DEVNULL
        if spec.get("input"):
            stdin = open(os.path.join(cwd, spec["input"]))  # noqa: SIM115 (until exit)
    except OSError as exc:
        write_shell_exception(jdir, f"shell: {exc.filename}: {exc.strerror}")
        return 1
    procs, code = [], 0
    for rank in range(ntasks):
        task_env = dict(env)
        if spec["kind"] != "batch":
            task_env.update(FLUX_TASK_RANK=str(rank), FLUX_TASK_LOCAL_ID=str(rank))
        task_tags = dict(tags, **{"task.id": rank, "task.rank": rank, "taskid": rank,
                                  "task.index": rank, "task.localid": rank})
        argv = [mustache(arg, task_tags) for arg in command]
        try:
            procs.append(subprocess.Popen(argv, env=task_env, cwd=cwd, stdin=stdin,
                                          stdout=out_fp, stderr=err_fp))
        except OSError as exc:
            code = 126 if isinstance(exc, PermissionError) else 127
            host = socket.gethostname().split(".")[0]
            if spec["kind"] == "batch":
                # the sub-instance's rc2 fails to run the initial program
                err_fp.write(f"flux-broker: {argv[0]}: {exc.strerror}\n")
                err_fp.flush()
            else:
                write_shell_exception(jdir, f"task {rank} ({host}): start failed: "
                                            f"{argv[0]}: {exc.strerror}")
            for proc in procs:
                proc.kill()
            break
    with open(os.path.join(jdir, "started"), "w"):
        pass
    if os.getppid() == spec.get("broker_pid"):
        os.kill(spec["broker_pid"], signal.SIGUSR1)    # wake the broker
    for proc in procs:
        status = proc.wait()
        code = max(code, 128 - status if status < 0 else status)
    return code


def write_shell_exception(jdir, note):
    """Ask the broker to raise a fatal exec exception on the job."""
    with open(os.path.join(jdir, "shell-exception.json"), "w") as fp:
        json.dump({"type": "exec", "note": note}, fp)


# --------------------------------------------------------------------------
# Submission commands: flux submit / flux batch / flux run
# --------------------------------------------------------------------------

class EnvFilterAction(argparse.Action):
    """--env-remove=PATTERN is stored as an ``-PATTERN`` --env rule."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.env = (getattr(namespace, "env", None) or []) + ["-" + values]


class EnvFileAction(argparse.Action):
    """--env-file=FILE is stored as a ``^FILE`` --env rule."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.env = (getattr(namespace, "env", None) or []) + ["^" + values]


class BeginTimeAction(argparse.Action):
    """--begin-time=+FSD (or epoch seconds) becomes a begin-time dependency."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            if values.startswith("+"):
                stamp = time.time() + parse_fsd(values[1:])
            else:
                stamp = float(values)
        except ValueError:
            parser.error(f"argument --begin-time: only +FSD offsets and epoch "
                         f"seconds are emulated: {values!r}")
        deps = getattr(namespace, "dependency", None) or []
        namespace.dependency = [*deps, f"begin-time:{stamp}"]


class PosixParser(argparse.ArgumentParser):
    """flux.cli.argparse.FluxArgumentParser(posix=True): no abbreviations;
    option parsing stops at the first non-option (the command or script)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("add_help", False)
        super().__init__(*args, **kwargs)

    def split_posix(self, argv):
        """Split argv into (options, remainder) at the first non-option."""
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--" or not arg.startswith("-") or arg == "-":
                return argv[:i], argv[i:]
            i += 1
            is_long = arg.startswith("--")
            if (is_long and "=" in arg) or (not is_long and len(arg) > 2):
                continue
            action = self._option_string_actions.get(arg)
            takes_value = action is not None and (action.nargs is None or (
                action.nargs == "?" and i < len(argv) and not argv[i].startswith("-")))
            if takes_value:
                i += 1
        return argv, []

    def parse_args(self, args=None, namespace=None):
        """Parse options; everything from the first non-option is REMAINDER."""
        options, rest = self.split_posix(list(args))
        result = super().parse_args(options, namespace)
        for action in self._actions:
            if action.nargs == argparse.REMAINDER:
                setattr(result, action.dest, (getattr(result, action.dest, None) or []) + rest)
                return result
        if rest:
            self.error("unrecognized arguments: " + " ".join(rest))
        return result


def add_common_options(parser):
    """Options shared by submit, run and batch (flux.cli.base.MiniCmd)."""
    add = parser.add_argument
    add("--help", nargs="?", const="default", metavar="TOPIC")
    add("-B", "--bank", metavar="BANK")
    add("-q", "--queue", metavar="NAME")
    add("-t", "--time-limit", metavar="MIN|FSD")
    add("--urgency", metavar="N", default="16")
    add("--job-name", metavar="NAME")
    add("-o", "--setopt", action="append", metavar="OPT")
    add("-S", "--setattr", action="append", metavar="ATTR")
    add("--add-file", action="append", metavar="[NAME=]PATH")
    add("--dependency", action="append", metavar="URI")
    add("--requires", "--require", action="append", metavar="CONSTRAINT")
    add("--begin-time", action=BeginTimeAction, metavar="+FSD|TIME")
    add("--env", action="append", metavar="RULE")
    add("--env-remove", action=EnvFilterAction, metavar="PATTERN")
    add("--env-file", action=EnvFileAction, metavar="FILE")
    add("--rlimit", action="append", metavar="RULE")
    add("--input", metavar="FILENAME")
    add("--output", metavar="FILENAME")
    add("--error", metavar="FILENAME")
    add("-u", "--unbuffered", action="store_true")
    add("-l", "--label-io", action="store_true")
    add("--cwd", metavar="DIRECTORY")
    add("--flags", action="append", metavar="FLAGS")
    add("--signal", metavar="[SIG][@TIME]")
    add("--dry-run", "--dry", action="store_true")
    add("--quiet", action="store_true")
    add("--list-plugins", action="store_true")
    add("--debug-emulate", action="store_true", help=argparse.SUPPRESS)


def make_parser(kind):
    """Parser for ``flux submit``, ``flux run`` or ``flux batch``."""
    usage = {"batch": "flux batch [OPTIONS...] [SCRIPT] [ARGS...]"}.get(
        kind, f"flux {kind} [OPTIONS...] COMMAND [ARGS...]")
    parser = PosixParser(prog=f"flux {kind}", usage=usage)
    add_common_options(parser)
    add = parser.add_argument
    if kind == "batch":
        add("--add-brokers", default=0, type=int, help=argparse.SUPPRESS)
        add("--conf", action="append", metavar="CONF")
        add("--broker-opts", "--broker-opt", action="append", metavar="OPTS")
        add("--dump", nargs="?", const="flux-{{jobid}}-dump.tgz", metavar="FILE")
        add("-n", "--nslots", type=int, metavar="N")
        add("-c", "--cores-per-slot", type=int, metavar="N", default=1)
        add("-g", "--gpus-per-slot", type=int, metavar="N")
        add("-N", "--nodes", type=int, metavar="N")
        add("-x", "--exclusive", action="store_true")
        add("--wrap", action="store_true")
        add("SCRIPT", nargs=argparse.REMAINDER)
        return parser
    add("--taskmap", metavar="URI")
    add("-N", "--nodes", metavar="N")
    add("-x", "--exclusive", action="store_true")
    add("-n", "--ntasks", metavar="N")
    add("-c", "--cores-per-task", metavar="N")
    add("-g", "--gpus-per-task", metavar="N")
    for opt in ("--cores", "--tasks-per-node", "--tasks-per-core", "--gpus-per-node"):
        add(opt, metavar="N")
    add("-v", "--verbose", action="count", default=0)
    if kind == "submit":
        add("--cc", metavar="IDSET")
        add("--bcc", metavar="IDSET")
        add("--wait-event", metavar="NAME", dest="wait")
        add("--wait", action="store_const", const="clean")
        add("--watch", action="store_true")
        add("--log", metavar="FILE")
        add("--log-stderr", metavar="FILE")
        add("--progress", action="store_true")
        add("--jps", action="store_true")
    else:
        add("--wait-event", metavar="NAME")
    add("command", nargs=argparse.REMAINDER)
    return parser


NOT_EMULATED = ("cores", "tasks_per_node", "tasks_per_core", "gpus_per_node", "add_file",
                "wait", "watch", "progress", "jps")


def reject_not_emulated(args, prog):
    """Options whose behaviour the double does not reproduce are refused."""
    for dest in NOT_EMULATED:
        if getattr(args, dest, None):
            opt = "--wait-event/--wait" if dest == "wait" else "--" + dest.replace("_", "-")
            raise FluxError(f"{prog}: ERROR: {opt} is not emulated by the flux test double", 2)


def filter_env(environ, pattern, keep_matching=False):
    """Remove (or keep only) variables matching a glob, or /regex/ pattern."""
    import fnmatch
    if pattern.startswith("/"):
        regex = re.compile(pattern[1:].rstrip("/"))
    else:
        regex = re.compile(fnmatch.translate(pattern))
    return {k: v for k, v in environ.items() if bool(regex.match(k)) == keep_matching}


def filtered_environment(rules, environ=None):
    """--env/--env-remove/--env-file rules applied in order (ENV RULES)."""
    environ = dict(os.environ) if environ is None else environ
    for rule in rules or []:
        if rule.startswith("-"):
            environ = filter_env(environ, rule[1:])
        elif rule.startswith("^"):
            try:
                with open(os.path.expanduser(rule[1:])) as fp:
                    lines = [line.strip() for line in fp]
            except OSError as exc:
                raise ValueError(f"--env: {exc}") from None
            environ = filtered_environment(lines, environ)
        elif "=" not in rule:
            for key, value in filter_env(os.environ, rule, keep_matching=True).items():
                environ.setdefault(key, value)
        else:
            var, value = rule.split("=", 1)
            try:
                environ[var] = string.Template(value).substitute(ChainMap(environ, os.environ))
            except ValueError:
                raise ValueError(f"--env: Unable to substitute {rule}") from None
            except KeyError as exc:
                raise ValueError(f"--env: Variable {exc} not found in {rule}") from None
    return environ


def parse_keyval(keyval):
    """--setopt/--setattr KEY[=VAL]: VAL is JSON if it parses, default 1."""
    key, val = (keyval.split("=", 1) + [1])[:2]
    if key.startswith("^"):
        key = key.lstrip("^")
        with open(val) as fp:
            return key, json.load(fp)
    try:
        val = json.loads(val)
    except (TypeError, ValueError):
        pass
    return key, val


def parse_urgency(text):
    """--urgency=N|hold|default|expedite."""
    names = {"hold": URGENCY_HOLD, "default": URGENCY_DEFAULT, "expedite": URGENCY_EXPEDITE}
    return names[text] if text in names else int(text)


def parse_flags(flag_args):
    """--flags=waitable,debug,novalidate -> RFC 21 submit flags mask."""
    bits = {"debug": 1, "waitable": 2, "novalidate": 4}
    mask = 0
    for item in flag_args or []:
        for flag in item.split(","):
            if flag not in bits:
                raise ValueError("--flags: Unknown flag " + flag)
            mask |= bits[flag]
    return mask


def common_spec(args, kind, prog):
    """Fields every submission shares (apply_options + submit_async)."""
    reject_not_emulated(args, prog)
    deps = []
    for uri in args.dependency or []:
        parsed = parse_dependency_uri(uri)
        if parsed["scheme"] == "after":
            print("dependency scheme 'after' is deprecated, use 'afterstart'", file=sys.stderr)
        deps.append(parsed)
    attributes = {}
    for keyval in args.setattr or []:
        key, val = parse_keyval(keyval)
        if not key.startswith((".", "attributes.", "user.", "system.")):
            key = "system." + key
        attributes[key] = val
    shell_options = dict(parse_keyval(kv) for kv in args.setopt or [])
    return {
        "kind": kind, "environment": filtered_environment(args.env),
        "signal": parse_signal_option(args.signal) if args.signal else None,
        "dependencies": deps, "attributes": attributes, "shell_options": shell_options,
        "queue": args.queue, "bank": args.bank,
        "cwd": os.path.abspath(args.cwd) if args.cwd is not None else os.getcwd(),
        "input": args.input, "output": args.output, "error": args.error,
        "requires": args.requires,
    }


def int_option(args, dest):
    """Submit/run integer options are converted after parsing."""
    value = getattr(args, dest)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--{dest.replace('_', '-')}: invalid int value '{value}'") from None


def submit_spec(args, kind, prog):
    """Job spec for ``flux submit`` / ``flux run`` (init_jobspec + from_command)."""
    if not args.command:
        raise ValueError("job command and arguments are missing")
    command = list(args.command)
    if command[0] == "--":
        command.pop(0)
    duration = parse_time_limit(args.time_limit) if args.time_limit is not None else 0.0
    ntasks, nodes = int_option(args, "ntasks"), int_option(args, "nodes")
    cpt, gpt = int_option(args, "cores_per_task"), int_option(args, "gpus_per_task")
    exclusive = args.exclusive
    if not ntasks and nodes:
        ntasks, exclusive = nodes, True
    ntasks, cpt = ntasks or 1, cpt or 1
    if ntasks < 1:
        raise ValueError("task count must be a integer >= 1")
    if nodes is not None and nodes > ntasks:
        raise ValueError("node count must not be greater than task count")
    if exclusive and not nodes:
        raise ValueError("exclusive can only be set with a node count")
    spec = common_spec(args, kind, prog)
    spec.update(command=command, ntasks=ntasks, duration=duration,
                name=args.job_name or job_name_from_command(command[0]),
                req={"nnodes": nodes or 0, "cores": ntasks * cpt,
                     "exclusive": bool(exclusive), "gpus": (gpt or 0) * ntasks},
                cores_per_task=cpt, explicit_name=args.job_name)
    return spec


def job_name_from_command(arg0):
    """job-list: basename of the command when no job name was given."""
    base = arg0.rsplit("/", 1)[-1]
    return base if base else arg0


def make_jobspec(spec):
    """An approximate RFC 14/25 jobspec V1 (for --dry-run and flux job info)."""
    req = spec["req"]
    if spec["kind"] == "batch":
        slots, per_slot, command = spec["nslots"], spec["cores_per_slot"], \
            ["{{tmpdir}}/script"] + spec["args"]
    else:
        slots, per_slot, command = spec["ntasks"], spec["cores_per_task"], spec["command"]
    slot = {"type": "slot", "count": slots, "label": "task",
            "with": [{"type": "core", "count": per_slot}]}
    resources = [slot]
    if req["nnodes"]:
        slot["count"] = -(-slots // req["nnodes"])
        resources = [{"type": "node", "count": req["nnodes"], "exclusive": req["exclusive"],
                      "with": [slot]}]
    system = {"duration": spec["duration"], "cwd": spec["cwd"],
              "environment": spec["environment"]}
    if spec.get("explicit_name") or spec["kind"] == "batch":
        system["job"] = {"name": spec["name"]}
    for key in ("queue", "bank"):
        if spec.get(key):
            system[key] = spec[key]
    if spec["dependencies"]:
        system["dependencies"] = [{"scheme": d["scheme"], "value": d["value"]}
                                  for d in spec["dependencies"]]
    if spec["shell_options"] or spec.get("signal"):
        system["shell"] = {"options": dict(spec["shell_options"])}
        if spec.get("signal"):
            system["shell"]["options"]["signal"] = spec["signal"]
    attributes = {"system": system}
    for key, val in spec["attributes"].items():
        parts = key.split(".")
        node = attributes
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = val
    return {"resources": resources,
            "tasks": [{"command": command, "slot": "task", "count": {"per_slot": 1}}],
            "attributes": attributes, "version": 1}


def cc_list(args):
    """--cc/--bcc IDSET: one copy of the job per id."""
    if args.cc and args.bcc:
        raise ValueError("specify only one of --cc or --bcc")
    ids = args.cc or args.bcc
    return idset_decode(ids) if ids else [None]


def cc_args(args, cc):
    """Substitute {cc} in mutable options and the command (flux.cli Xcmd)."""
    if cc is None:
        return args
    new = argparse.Namespace(**vars(args))
    for key, val in vars(args).items():
        if isinstance(val, str):
            setattr(new, key, val.replace("{cc}", str(cc)))
        elif isinstance(val, list) and all(isinstance(v, str) for v in val):
            setattr(new, key, [v.replace("{cc}", str(cc)) for v in val])
    return new


def submit_to_instance(inst, spec):
    """One locked job-manager submit; returns the new job id."""
    with inst.transaction() as state:
        jm = JobManager(inst, state)
        jobid = jm.submit(spec)
    return JobID(jobid)


def cmd_submit(argv):
    """flux submit: enqueue one job (or one per --cc id), print each id."""
    args = make_parser("submit").parse_args(argv)
    if args.help:
        make_parser("submit").print_help()
        return 0
    inst, exitcode = None, 0
    out = open(args.log, "w") if args.log else sys.stdout  # noqa: SIM115 (until exit)
    err = out if args.log else sys.stderr
    if args.log_stderr:
        err = open(args.log_stderr, "w")  # noqa: SIM115 (until exit)
    for cc in cc_list(args):
        xargs = cc_args(args, cc)
        spec = submit_spec(xargs, "submit", "flux-submit")
        if cc is not None and not args.bcc:
            spec["environment"]["FLUX_JOB_CC"] = str(cc)
        if args.dry_run:
            print(json.dumps(make_jobspec(spec)))
            return 0
        spec["flags"] = parse_flags(args.flags)
        spec["urgency"] = parse_urgency(args.urgency)
        inst = inst or Instance.open()
        label = f"cc={cc}: " if cc is not None else ""
        try:
            jobid = submit_to_instance(inst, spec)
        except RequestError as exc:
            print(f"{label}{exc.oserror_str()}", file=err)
            exitcode = 1
            continue
        if not args.quiet:
            print(jobid, file=out, flush=True)
    if inst is not None:
        ensure_broker(inst)
    return exitcode


DIRECTIVE_RE = re.compile(r"^([^A-Za-z0-9\r\n]*)(flux:|FLUX:)(.*)$")


def inline_triple_quotes(value):
    """Paired triple quotes on one line are shell-quoted verbatim (RFC 36)."""
    for quote in ('"""', "'''"):
        count = value.count(quote)
        if count and count % 2 == 0:
            return re.sub(re.escape(quote) + r"(.*?)" + re.escape(quote),
                          lambda m: shlex.quote(m.group(1)), value)
    if re.search(r"(\"\"\"|''').", value):
        raise ValueError(f"unclosed triple quote: {value.strip()}")
    return value


def split_directive(value, lineno):
    """Shell-split one directive; ``#`` starts a comment."""
    try:
        args = shlex.split(value, comments=True, posix=True)
    except ValueError as exc:
        raise ValueError(f"line {lineno}: {value}: {exc}") from None
    if args and not args[0].startswith("-"):
        raise ValueError(f"line {lineno}: Unknown directive: {value}")
    return args


class DirectiveScanner:
    """RFC 36 submission directives: same sentinel everywhere, grouped,
    shell quoting, comments, triple-quoted multi-line values."""

    def __init__(self):
        self.directives = []          # (lineno, [args])
        self.sentinel = self.prefix = None
        self.disabled_after = None
        self.multi = None

    def scan(self, text):
        """Scan a whole script; returns the list of (lineno, args)."""
        for lineno, line in enumerate(text.splitlines(), 1):
            match = DIRECTIVE_RE.match(line)
            if match:
                self.directive_line(lineno, *match.groups())
            else:
                self.other_line(lineno, line)
        if self.multi:
            raise ValueError(f"unterminated multi-line quote at line "
                             f"{self.multi['start']}: `{self.multi['text']}'")
        return self.directives

    def other_line(self, lineno, line):
        """A non-directive line ends the directive group unless blank or
        starting with the sentinel prefix (e.g. an ordinary comment)."""
        if self.multi:
            raise ValueError(f"line {lineno}: unterminated multi-line quote at line "
                             f"{self.multi['start']}: `{self.multi['text']}'")
        if self.sentinel and self.disabled_after is None and line.strip() \
                and not line.startswith(self.prefix.rstrip()):
            self.disabled_after = lineno - 1

    def directive_line(self, lineno, prefix, tag, value):
        """One ``<prefix>flux:`` line."""
        if self.disabled_after is not None:
            raise ValueError(f"line {lineno}: orphan '{tag}' detected: directives "
                             f"disabled after line {self.disabled_after}")
        if self.sentinel is None:
            self.sentinel, self.prefix = prefix + tag, prefix
        elif prefix + tag != self.sentinel:
            raise ValueError(f"line {lineno}: sentinel changed from '{self.sentinel}' "
                             f"to '{prefix + tag}'")
        try:
            value = inline_triple_quotes(value)
        except ValueError as exc:
            raise ValueError(f"line {lineno}: {exc}") from None
        if value.endswith(('"""', "'''")):
            self.multiline(lineno, value)
        elif self.multi:
            self.multi["lines"].append(self.unindent(value))
        elif value.strip():
            self.directives.append((lineno, split_directive(value, lineno)))

    def unindent(self, value):
        """Remove the opening line's indentation from a continuation line."""
        indent = self.multi["indent"]
        return value.removeprefix(indent) if indent else value

    def multiline(self, lineno, value):
        """Open or close a triple-quoted multi-line value."""
        if self.multi is None:
            self.multi = {"start": lineno, "quote": value[-3:], "text": value.lstrip(),
                          "indent": value[:len(value) - len(value.lstrip())],
                          "lines": []}
            self.multi["lines"].append(self.unindent(value[:-3]))
            return
        if value[-3:] != self.multi["quote"]:
            self.multi["lines"].append(self.unindent(value))
            return
        self.multi["lines"].append(self.unindent(value[:-3]))
        lines, start = self.multi["lines"], self.multi["start"]
        self.multi = None
        joined = lines[0] + shlex.quote("\n".join(lines[1:]))
        self.directives.append((start, split_directive(joined, start)))


def batch_script_and_args(parser, args, argv):
    """Read SCRIPT (or stdin), apply its directives, then the command line
    again so that command line options override directives."""
    if args.SCRIPT and args.SCRIPT[0] == "--":
        args.SCRIPT.pop(0)
    if args.SCRIPT and args.wrap:
        return " ".join(args.SCRIPT) + "\n", args
    name = args.SCRIPT[0] if args.SCRIPT else "stdin"
    if args.SCRIPT:
        with open(args.SCRIPT[0], encoding="utf-8") as fp:
            text = fp.read()
    else:
        text = sys.stdin.read()
    try:
        directives = DirectiveScanner().scan(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    namespace = None
    for lineno, dargs in directives:
        try:
            namespace = parser.parse_args(dargs, namespace=namespace)
        except SystemExit:
            raise FluxError(f"flux-batch: ERROR: argument parsing failed at {name} "
                            f"line {lineno}", 2) from None
    args = parser.parse_args(argv, namespace=namespace)
    if args.SCRIPT and args.SCRIPT[0] == "--":
        args.SCRIPT.pop(0)
    return text, args


def batch_spec(args, script):
    """Job spec for ``flux batch`` (init_common + from_batch_command)."""
    if args.wrap:
        script = "#!/bin/sh\n" + script
    nslots, nodes, exclusive = args.nslots, args.nodes, args.exclusive
    if not nslots:
        if not nodes:
            raise ValueError("Number of slots to allocate must be specified")
        nslots, exclusive = nodes, True
    duration = parse_time_limit(args.time_limit) if args.time_limit is not None else 0.0
    name = args.job_name or (args.SCRIPT[0] if args.SCRIPT else "batch")
    if not script.startswith("#!"):
        raise ValueError(f"{name} does not appear to start with '#!'")
    spec = common_spec(args, "batch", "flux-batch")
    if spec["output"] is None:
        spec["output"] = "flux-{{id}}.out"
    script_args = args.SCRIPT[1:]
    spec.update(script=script, args=script_args, nslots=nslots,
                cores_per_slot=args.cores_per_slot, name=name, explicit_name=name,
                ntasks=nodes if nodes else nslots, duration=duration,
                command=["{{tmpdir}}/script"] + script_args,
                req={"nnodes": nodes or 0, "cores": nslots * args.cores_per_slot,
                     "exclusive": bool(exclusive),
                     "gpus": (args.gpus_per_slot or 0) * nslots})
    return spec


def cmd_batch(argv):
    """flux batch: submit SCRIPT as the initial program of a (not emulated)
    sub-instance; print the job id."""
    parser = make_parser("batch")
    args = parser.parse_args(argv)
    if args.help:
        parser.print_help()
        return 0
    script, args = batch_script_and_args(parser, args, argv)
    spec = batch_spec(args, script)
    if args.dry_run:
        print(json.dumps(make_jobspec(spec)))
        return 0
    spec["flags"] = parse_flags(args.flags)
    spec["urgency"] = parse_urgency(args.urgency)
    inst = Instance.open()
    try:
        jobid = submit_to_instance(inst, spec)
    except RequestError as exc:
        raise FluxError(f"flux-batch: ERROR: {exc.message}") from None
    ensure_broker(inst)
    if not args.quiet:
        print(jobid, flush=True)
    return 0


def cmd_run(argv):
    """flux run: submit + attach.  Emulated as a local foreground run of the
    tasks (no scheduling, no job record); exit code as flux job attach."""
    parser = make_parser("run")
    args = parser.parse_args(argv)
    if args.help:
        parser.print_help()
        return 0
    spec = submit_spec(args, "run", "flux-run")
    if args.dry_run:
        print(json.dumps(make_jobspec(spec)))
        return 0
    parse_flags(args.flags)
    if args.dependency or parse_urgency(args.urgency) == URGENCY_HOLD or args.wait_event:
        raise FluxError("flux-run: ERROR: --dependency/--begin-time/--urgency=hold/"
                        "--wait-event are not emulated by the flux test double for flux run", 2)
    if spec["req"]["gpus"]:
        raise FluxError("flux-run: ERROR: [Errno 19] Unsatisfiable request")
    inst = Instance.open()
    with inst.transaction() as state:
        jobid = JobID(new_fluid(state))
    if args.verbose:
        print(f"jobid: {jobid}", file=sys.stderr, flush=True)
    return LocalRun(inst, spec, jobid).run()


class LocalRun:
    """Foreground execution of a ``flux run`` job's tasks."""

    def __init__(self, inst, spec, jobid):
        self.inst, self.spec, self.jobid = inst, spec, jobid
        self.procs = []
        self.killed_at = None

    def environment(self, tmpdir):
        """Task environment as a job shell sets it (flux-environment(7))."""
        env = dict(self.spec["environment"])
        env.update(FLUX_JOB_ID=str(self.jobid), FLUX_JOB_SIZE=str(self.spec["ntasks"]),
                   FLUX_JOB_NNODES="1", FLUX_JOB_TMPDIR=tmpdir, FLUX_URI=self.inst.uri)
        return env

    def forward(self, signum, frame):
        """flux job attach forwards SIGTERM, SIGHUP, SIGALRM, SIGUSR1/2."""
        for proc in self.procs:
            try:
                proc.send_signal(signum)
            except OSError:
                pass

    def start_tasks(self, tmpdir):
        """Start all tasks; returns an exit code if a task could not start."""
        spec = self.spec
        tags = job_tags(self.jobid, spec["name"], spec["ntasks"], 1, tmpdir, use_ascii_f58())
        out = open_output(spec["output"], tags, spec["cwd"], None) if spec["output"] else None
        err = open_output(spec["error"], tags, spec["cwd"], None) if spec["error"] else out
        stdin = None
        if spec["input"]:
            stdin = open(os.path.join(spec["cwd"], spec["input"]))  # noqa: SIM115 (until exit)
        env = self.environment(tmpdir)
        for rank in range(spec["ntasks"]):
            task_tags = dict(tags, **{"task.id": rank, "task.rank": rank, "taskid": rank,
                                      "task.index": rank, "task.localid": rank})
            argv = [mustache(a, task_tags) for a in spec["command"]]
            task_env = dict(env, FLUX_TASK_RANK=str(rank), FLUX_TASK_LOCAL_ID=str(rank))
            try:
                self.procs.append(subprocess.Popen(argv, env=task_env, cwd=spec["cwd"],
                                                   stdin=stdin, stdout=out, stderr=err))
            except OSError as exc:
                print(f"flux-job: task {rank}: start failed: {argv[0]}: {exc.strerror}",
                      file=sys.stderr)
                self.forward(signal.SIGKILL, None)
                return 126 if isinstance(exc, PermissionError) else 127
        return None

    def run(self):
        """Run to completion honouring the time limit (SIGALRM, then SIGKILL)."""
        import tempfile
        for name in ("SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT"):
            signal.signal(getattr(signal, name), self.forward)
        tmpdir = tempfile.mkdtemp(prefix="flux-run-")
        code = self.start_tasks(tmpdir)
        deadline = time.time() + self.spec["duration"] if self.spec["duration"] else None
        while any(p.poll() is None for p in self.procs):
            self.check_limit(deadline)
            time.sleep(0.02)
        codes = [128 - p.returncode if p.returncode < 0 else p.returncode for p in self.procs]
        import shutil
        shutil.rmtree(tmpdir, ignore_errors=True)
        return max(codes + [code or 0])

    def check_limit(self, deadline):
        """Time limit: exception type=timeout, SIGALRM, SIGKILL after 5 s."""
        now = time.time()
        if deadline is None or now < deadline:
            return
        if self.killed_at is None:
            self.killed_at = now
            print(f"flux-job: {self.jobid}: job.exception type=timeout severity=0 "
                  f"resource allocation expired", file=sys.stderr, flush=True)
            self.forward(signal.SIGALRM, None)
        elif now - self.killed_at >= KILL_TIMEOUT:
            self.forward(signal.SIGKILL, None)


# --------------------------------------------------------------------------
# flux jobs: JobInfo fields, output formats, --json
# --------------------------------------------------------------------------

class Empty:
    """Formats as an empty string whatever the spec (flux.job.info.EmptyObject)."""

    def __getattr__(self, attr):
        return Empty()

    def __str__(self):
        return ""

    def __format__(self, spec):
        return "".__format__(spec.rstrip("bcdoxXeEfFgGn%"))


class Attrs:
    """Attribute bag: missing attributes are Empty (annotations, exception)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __getattr__(self, attr):
        return Empty()

    def __str__(self):
        return ""


def display_dependency(desc):
    """flux.job.info.DependencyList: ``begin-time=TS`` shows as ``begin@HH:MM``
    (``begin@MonDD-HH:MM`` on another day, ``:SS`` when seconds are set)."""
    if not desc.startswith("begin-time="):
        return desc
    moment = datetime.fromtimestamp(float(desc.partition("=")[2])).astimezone()
    text = f"begin@{moment:%H:%M}" if moment.date() == datetime.now().astimezone().date() \
        else f"begin@{moment:%b%d-%H:%M}"
    return text + (f":{moment:%S}" if moment.second > 0 else "")


class InfoList(list):
    """A list that prints comma-separated (dependencies)."""

    def __str__(self):
        return ",".join(self)

    def __format__(self, spec):
        return str(self).__format__(spec)


def username(uid):
    """Login name for a uid, or the uid as a string."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class JobView:
    """The fields of flux.job.JobInfo computed from a job record."""

    def __init__(self, rec, now=None):
        self.rec = rec
        self.now = time.time() if now is None else now
        inactive = rec["state"] == "INACTIVE"
        self.id = JobID(rec["id"])
        self.userid = rec["userid"]
        self.username = username(rec["userid"])
        self.urgency = rec["urgency"]
        self.priority = "" if rec["priority"] is None else rec["priority"]
        self.state = rec["state"]
        self.state_single = STATE_SINGLE[rec["state"]]
        self.result = rec["result"] if inactive else ""
        self.result_abbrev = RESULT_ABBREV.get(self.result, "")
        self.status = self.result if inactive else self.state
        self.status_abbrev = self.result_abbrev if inactive else self.state_single
        self.name = rec["name"]
        self.cwd = rec["cwd"] or ""
        self.queue = rec["queue"] or ""
        self.project = rec.get("project") or ""
        self.bank = rec["bank"] or ""
        self.ntasks = rec["ntasks"]
        self.ncores = rec["ncores"]
        self.duration = rec["duration"]
        self.nnodes = "" if rec["nnodes"] is None else rec["nnodes"]
        self.ranks = rec["ranks"] or ""
        self.nodelist = rec["nodelist"] or ""
        self.success = rec["success"] if inactive else ""
        self.waitstatus = "" if rec["waitstatus"] is None else rec["waitstatus"]
        for key in STATE_TIME.values():
            setattr(self, key, rec[key])
        self.t_submit = rec["t_submit"]
        self.expiration = rec["expiration"] if rec["t_run"] else 0.0
        self.exception = self._exception(rec, inactive)
        self.annotations = Attrs()
        self.sched = Empty()
        self.user = Empty()
        self.dependencies = InfoList(display_dependency(d) for d in rec["dependencies"])

    @staticmethod
    def _exception(rec, inactive):
        """job-list reports exception fields only for inactive jobs."""
        exc = rec.get("exception")
        if not inactive:
            return Attrs(occurred="", severity="", type="", note="")
        if not exc:
            return Attrs(occurred=False, severity="", type="", note="")
        return Attrs(**exc)

    @property
    def runtime(self):
        """t_cleanup - t_run, or time since t_run while running."""
        if self.t_cleanup > 0 and self.t_run > 0:
            return self.t_cleanup - self.t_run
        if self.t_run > 0:
            return self.now - self.t_run
        return 0.0

    @property
    def t_remaining(self):
        """Seconds left before expiration while in RUN."""
        if self.state != "RUN" or not self.expiration:
            return 0.0
        return max(0.0, self.expiration - self.now)

    @property
    def returncode(self):
        """Highest shell exit code, -signo if the shell was signaled, -128 if
        canceled before running, 1 for other failures before running."""
        status = self.waitstatus
        if not isinstance(status, int):
            if self.result == "CANCELED":
                return -128
            if self.result == "FAILED":
                return 1
            return ""
        if os.WIFSIGNALED(status):
            return -os.WTERMSIG(status)
        return os.WEXITSTATUS(status)

    @property
    def contextual_info(self):
        """PRIORITY: priority-wait; DEPEND: depends:...; SCHED: held or
        priority-hold; later: the nodelist."""
        if self.state == "PRIORITY":
            return "priority-wait"
        if self.state == "DEPEND":
            return f"depends:{self.dependencies}"
        if self.state == "SCHED":
            if self.urgency == 0:
                return "held"
            return "priority-hold" if self.priority == 0 else ""
        return self.nodelist

    @property
    def contextual_time(self):
        """Duration while pending, runtime afterwards."""
        return self.duration if self.state in PENDING else self.runtime

    @property
    def inactive_reason(self):
        """Why the job ended (Exit N, Canceled, Timeout, Exception: ...)."""
        if self.state != "INACTIVE":
            return ""
        exc, code = self.exception, self.returncode
        if self.result == "CANCELED":
            return f"Canceled: {exc.note}" if exc.occurred and exc.type == "cancel" \
                and exc.note else "Canceled"
        if self.result == "TIMEOUT":
            return "Timeout"
        if self.result == "FAILED":
            if exc.occurred and exc.type != "exec" and exc.severity == 0:
                note = f" note={exc.note}" if exc.note else ""
                return f"Exception: type={exc.type}{note}"
            if code > 128:
                try:
                    return signal.strsignal(code - 128)
                except ValueError:
                    return f"Signaled {code - 128}"
            return {126: "Command invoked cannot execute", 127: "command not found",
                    128: "Invalid argument to exit"}.get(code, f"Exit {code}")
        return f"Exit {code}"

    def to_dict(self):
        """JobInfo.to_dict(): unset/empty values are left out."""
        keys = ("t_depend", "t_priority", "t_sched", "t_run", "t_cleanup", "t_inactive",
                "duration", "expiration", "name", "cwd", "queue", "project", "bank",
                "ntasks", "ncores", "nnodes", "priority", "ranks", "nodelist", "success",
                "result", "waitstatus", "id", "t_submit", "t_remaining", "state",
                "username", "userid", "urgency", "runtime", "status", "returncode",
                "dependencies")
        result = {}
        for key in keys:
            val = getattr(self, key)
            if key == "id":
                val = int(val)
            if key == "dependencies":
                val = list(val)
            zero_drop = key.startswith("t_") or key in ("runtime", "expiration")
            if (isinstance(val, str) and val == "") or (zero_drop and val == 0):
                continue
            result[key] = val
        result["jobid"] = self.id.f58
        result["annotations"] = {}
        exc = self.exception
        result["exception"] = {"occurred": True, "severity": exc.severity, "type": exc.type,
                               "note": exc.note} if exc.occurred is True \
            else {"occurred": False}
        return result


HEADINGS = {
    "id": "JOBID", "id.dec": "JOBID", "id.hex": "JOBID", "id.f58": "JOBID",
    "id.f58plain": "JOBID", "id.kvs": "JOBID", "id.dothex": "JOBID",
    "userid": "UID", "username": "USER", "urgency": "URG", "priority": "PRI",
    "state": "STATE", "state_single": "S", "name": "NAME", "cwd": "CWD", "queue": "QUEUE",
    "project": "PROJECT", "bank": "BANK", "ntasks": "NTASKS", "ncores": "NCORES",
    "duration": "DURATION", "nnodes": "NNODES", "expiration": "EXPIRATION",
    "t_remaining": "T_REMAINING", "ranks": "RANKS", "nodelist": "NODELIST",
    "success": "SUCCESS", "result": "RESULT", "result_abbrev": "RS",
    "t_submit": "T_SUBMIT", "t_depend": "T_DEPEND", "t_priority": "T_PRIORITY",
    "t_sched": "T_SCHED", "t_run": "T_RUN", "t_cleanup": "T_CLEANUP",
    "t_inactive": "T_INACTIVE", "runtime": "RUNTIME", "status": "STATUS",
    "status_abbrev": "ST", "waitstatus": "WSTATUS", "returncode": "RC",
    "exception.occurred": "EXCEPTION-OCCURRED", "exception.severity": "EXCEPTION-SEVERITY",
    "exception.type": "EXCEPTION-TYPE", "exception.note": "EXCEPTION-NOTE",
    "annotations": "ANNOTATIONS", "dependencies": "DEPENDENCIES",
    "contextual_info": "INFO", "contextual_time": "TIME",
    "inactive_reason": "INACTIVE-REASON", "sched": "SCHED", "user": "USER",
}

NAMED_FORMATS = {
    "default": ("Default flux-jobs format string", (
                "{id.f58:>12} ?:{queue:<8.8} +:{username:<8.8} {name:<10.10+} "
                "{status_abbrev:>2.2} {ntasks:>6} {nnodes:>6h} "
                "{contextual_time!F:>8h} {contextual_info}")),
    "long": ("Extended flux-jobs format string", (
             "{id.f58:>12} ?:{queue:<8.8} +:{username:<8.8} {name:<10.10+} "
             "{status:>9.9} {ntasks:>6} {nnodes:>6h} "
             "{t_submit!d:%b%d %R::>12} {t_remaining!F:>12h} "
             "{contextual_time!F:>8h} {contextual_info}")),
    "deps": ("Show job urgency, priority, and dependencies", (
             "{id.f58:>12} ?:{queue:<8.8} {name:<10.10+} {urgency:<3} "
             "{priority:<12} {state:<8.8} {dependencies}")),
    "endreason": ("Show why each job ended", (
                  "{id.f58:>12} ?:{queue:<8.8} +:{username:<8.8} {name:<10.10+} "
                  "{status_abbrev:>2.2} {t_inactive!d:%b%d %R::>12h} {inactive_reason}")),
}


class UtilDatetime(datetime):
    """datetime whose format spec may carry ``::`` + a width/alignment spec."""

    def __format__(self, fmt):
        timefmt, *spec = fmt.split("::", 1)
        result = "" if self.timestamp() == 0 else self.strftime(timefmt or "%FT%T")
        spec = spec[0] if spec else ""
        if spec.endswith("h"):
            result = result or "-"
            spec = spec[:-1] + "s"
        return result.__format__(spec)


EMPTY_OUTPUTS = ("", "0s", "0.0", "0:00:00", "1970-01-01T00:00:00",
                 datetime.fromtimestamp(0.0).strftime("%FT%T"))


class JobFormatter(string.Formatter):
    """flux.util.UtilFormatter: !D !d !F !H !P conversions, ``h`` and ``+``."""

    def convert_field(self, value, conv):
        """!d datetime, !D ISO 8601, !F FSD, !H H:MM:SS, !P percentage."""
        if conv in ("d", "D", "F", "H", "P") and str(value) == "" and \
                not isinstance(value, (int, float)):
            return UtilDatetime.fromtimestamp(0.0) if conv == "d" else ""
        if conv == "d":
            return UtilDatetime.fromtimestamp(value)
        if conv == "D":
            return datetime.fromtimestamp(value).strftime("%FT%T") if value else ""
        if conv == "F":
            return fsd(value)
        if conv == "H":
            return str(timedelta(seconds=round(1 if 0 < value < 1 else value)))
        if conv == "P":
            value = value * 100
            return f"{value:.2f}%" if 0 < value < 1 else f"{value:.3g}%"
        return super().convert_field(value, conv)

    def format_field(self, value, spec):
        """``h``: empty-ish values become ``-``; ``+``: mark truncation."""
        truncate = spec.endswith("+")
        if truncate:
            spec = spec[:-1]
        if spec.endswith("h") and not isinstance(value, UtilDatetime):
            value = "-" if str(value) in EMPTY_OUTPUTS else str(value)
            spec = spec[:-1] + "s"
        result = super().format_field(value, spec)
        if truncate and len(result) < len(str(value)):
            result = result[:-1] + "+"
        return result


class HeaderFormatter(JobFormatter):
    """Looks field names up literally in the headings."""

    def get_field(self, field_name, args, kwargs):
        return kwargs.get(field_name, ""), field_name

    def convert_field(self, value, conv):
        return value


SENTINELS = ("?+:", "?:", "+:")


def widen_spec(spec, align, width):
    """Set the width (and a precision, if any) of a format spec."""
    match = re.match(r"^(.?[<>=^])?\d*(\.\d+)?", spec)
    head = (match.group(1) or align) + str(width) + (f".{width}" if match.group(2) else "")
    return head + spec[match.end():]


class JobsFormat:
    """A parsed --format: validation, header, ``?:``/``+:`` sentinels."""

    def __init__(self, fmt):
        self.items = [[t or "", f or "", s or "", c or ""]
                      for t, f, s, c in string.Formatter().parse(fmt)]
        for _, field, _, _ in self.items:
            if field and field not in HEADINGS and not field.startswith(
                    ("annotations.", "sched.", "user.")):
                raise ValueError("Error in user format: Unknown format field: " + field)

    @staticmethod
    def _spec_width(spec):
        """(align, width) of a format spec, ignoring datetime ``::`` prefixes."""
        spec = spec.split("::", 1)[-1]
        match = re.match(r"(?:.?([<>=^]))?[-+ ]?z?#?0?(\d+)?", spec)
        return (match.group(1) or "", match.group(2) or "") if match else ("", "")

    def _tuple(self, text, field, spec, conv):
        """Rebuild ``text{field!conv:spec}``."""
        if not field:
            return text
        conv = f"!{conv}" if conv else ""
        spec = f":{spec}" if spec else ""
        return text + "{" + field + conv + spec + "}"

    def heading(self, field):
        """Header text for a field (annotation fields use their upper-cased name)."""
        if field in HEADINGS:
            return HEADINGS[field]
        if field.startswith("annotations."):
            return field[len("annotations."):].upper()
        return field.upper()

    def header(self):
        """The header row: fields replaced by headings, align+width kept."""
        parts, headings = [], {}
        for text, field, spec, _ in self.items:
            align, width = self._spec_width(spec)
            headings[field] = self.heading(field)
            parts.append(self._tuple(text, field, f"{align}{width}", ""))
        return HeaderFormatter().format("".join(parts), **headings)

    def filtered(self, views):
        """Drop ``?:`` fields empty for every job; widen ``+:`` fields."""
        items = [list(item) for item in self.items]
        remove = set()
        for index, (text, field, spec, conv) in enumerate(items):
            sentinel = next((s for s in SENTINELS if text.endswith(s)), None)
            if not sentinel or not field:
                continue
            bare = self._tuple("", "0." + field, "", conv)
            widths = [0 if r in EMPTY_OUTPUTS else len(r)
                      for r in (JobFormatter().format(bare, v) for v in views)]
            width = max(widths, default=0)
            if width == 0 and "?" in sentinel:
                remove.add(index)
            elif "+" in sentinel:
                align, old = self._spec_width(spec)
                new = max(width, int(old or 0), len(self.heading(field)))
                items[index][2] = widen_spec(spec, align, new)
        result = JobsFormat.__new__(JobsFormat)
        result.items = [item for i, item in enumerate(items) if i not in remove]
        for item in result.items:
            for sentinel in SENTINELS:
                item[0] = item[0].replace(sentinel, "")
        return result

    def render(self, view):
        """Format one job."""
        fmt = "".join(self._tuple(t, "0." + f if f else f, s, c) for t, f, s, c in self.items)
        return JobFormatter().format(fmt, view)


JOB_STATES = {"depend": ("DEPEND",), "priority": ("PRIORITY",), "sched": ("SCHED",),
              "run": ("RUN",), "cleanup": ("CLEANUP",), "inactive": ("INACTIVE",),
              "pending": PENDING, "running": RUNNING, "active": ACTIVE}
JOB_RESULTS = {"completed": "COMPLETED", "failed": "FAILED", "canceled": "CANCELED",
               "timeout": "TIMEOUT"}


class FilterAction(argparse.Action):
    """Options that count as filtering (warned about with a jobid list)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.filtered = True


class FilterUpdateAction(argparse.Action):
    """Comma-separated values accumulated into a set (-f, -q)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.filtered = True
        getattr(namespace, self.dest).update(values.split(","))


class FilterTrueAction(argparse.Action):
    """-a / -A."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        namespace.filtered = True


def jobs_parser():
    """flux-jobs(1) options (plain argparse, as flux-jobs.py uses)."""
    parser = argparse.ArgumentParser(prog="flux-jobs")
    add = parser.add_argument
    add("-a", action=FilterTrueAction)
    add("-A", action=FilterTrueAction)
    add("-c", "--count", action=FilterAction, type=int, metavar="N", default=1000)
    add("-f", "--filter", action=FilterUpdateAction, metavar="STATE|RESULT", default=set())
    add("--since", action=FilterAction, metavar="WHEN", default=0.0)
    add("-n", "--no-header", action="store_true")
    add("--suppress-header", action="store_true", dest="no_header", help=argparse.SUPPRESS)
    add("-u", "--user", action=FilterAction, metavar="[USERNAME|UID]", default=str(os.getuid()))
    add("--name", action=FilterAction, metavar="JOB-NAME")
    add("-q", "--queue", action=FilterUpdateAction, default=set(), metavar="QUEUE,...")
    add("-i", "--include", metavar="HOSTS|RANKS")
    add("-o", "--format", default=os.environ.get("FLUX_JOBS_FORMAT_DEFAULT", "default"),
        metavar="FORMAT")
    add("--sort", default="", metavar="KEY,...")
    add("--json", action="store_true")
    add("--color", nargs="?", const="always", default="auto",
        choices=["never", "always", "auto"], metavar="WHEN")
    add("-R", "--recursive", action="store_true")
    add("-L", "--level", type=int, default=9999, metavar="N")
    add("--recurse-all", action="store_true")
    add("--threads", type=int, metavar="N")
    add("--stats", action="store_true")
    add("--stats-only", action="store_true")
    add("jobids", metavar="JOBID", type=JobID, nargs="*")
    parser.set_defaults(filtered=False)
    return parser


def resolve_format(name):
    """A format string, or a named format (``help`` lists them)."""
    if "{" in name:
        return name
    if name == "help":
        print("\nConfigured flux-jobs output formats:\n")
        for key, (desc, _) in NAMED_FORMATS.items():
            print(f"  {key:<12} {desc}")
        raise SystemExit(0)
    if name not in NAMED_FORMATS:
        raise FluxError(f"flux-jobs: ERROR: --format: No such format {name}")
    return NAMED_FORMATS[name][1]


def listing_order(jobs):
    """job-list order: pending by priority, running newest first, inactive
    most recently inactive first."""
    def key(job):
        if job["state"] in PENDING:
            return (0, -(job["priority"] or 0), job["t_submit"], job["id"])
        if job["state"] in RUNNING:
            return (1, -job["t_run"], 0, job["id"])
        return (2, -job["t_inactive"], 0, job["id"])
    return sorted(jobs, key=key)


def job_matches(job, states, results, args, since):
    """State/result/name/queue/user/since filters of job-list."""
    inactive = job["state"] == "INACTIVE"
    ok = job["state"] in states or (inactive and job["result"] in results)
    if not ok:
        return False
    if args.name and job["name"] != args.name:
        return False
    if args.queue and job["queue"] not in args.queue:
        return False
    if since and inactive and job["t_inactive"] < since:
        return False
    user = "all" if args.A else args.user
    return user == "all" or user in (str(job["userid"]), username(job["userid"]))


def select_jobs(state, args):
    """Jobs to list and whether the listing was truncated by --count."""
    jobs = state["jobs"]
    if args.jobids:
        found = []
        for jobid in args.jobids:
            rec = jobs.get(str(int(jobid)))
            if rec is None:
                print(f"JobID {jobid.orig} unknown", file=sys.stderr)
            else:
                found.append(rec)
        return found, False
    since = 0.0
    if args.since:
        if not args.filter:
            args.a = True
        since = time.time() - parse_fsd(args.since[1:]) if args.since.startswith("-") \
            else float(args.since)
    if args.a:
        if args.filter:
            print("flux-jobs: WARNING: Both -a and --filter specified, ignoring -a",
                  file=sys.stderr)
        else:
            args.filter.update(["pending", "running", "inactive"])
    states, results = set(), set()
    for name in args.filter or {"pending", "running"}:
        name = name.lower()
        if name in JOB_STATES:
            states.update(JOB_STATES[name])
        elif name in JOB_RESULTS:
            results.add(JOB_RESULTS[name])
        else:
            raise ValueError(f"Invalid filter specified: {name}")
    matched = listing_order([j for j in jobs.values()
                             if job_matches(j, states, results, args, since)])
    if args.count > 0 and len(matched) > args.count:
        return matched[:args.count], True
    return matched, False


def sort_views(views, keys):
    """--sort=KEY[,-KEY...] (a leading ``-`` reverses)."""
    for key in reversed([k for k in keys.split(",") if k]):
        reverse = key.startswith("-")
        field = key.lstrip("-")
        if field not in HEADINGS:
            raise ValueError(f"Invalid sort key: {field}")
        views.sort(key=lambda v: (str(getattr(v, field.split(".")[0])) == "",
                                  getattr(v, field.split(".")[0])), reverse=reverse)
    return views


def cmd_jobs(argv):
    """flux jobs: list jobs (default pending+running, at most 1000)."""
    args = jobs_parser().parse_args(argv)
    if args.json and (args.stats or args.stats_only):
        raise FluxError("flux-jobs: ERROR: --json incompatible with --stats or --stats-only")
    if args.jobids and args.filtered and not args.recursive:
        print("flux-jobs: WARNING: Filtering options ignored with jobid list", file=sys.stderr)
    fmt = JobsFormat(resolve_format(args.format))
    inst = Instance.open()
    state = inst.snapshot()
    if args.stats or args.stats_only:
        active = print_stats(state)
        if args.stats_only:
            return 0 if active else 1
    if args.json:
        args.no_header = True
    jobs, truncated = select_jobs(state, args)
    now = time.time()
    views = sort_views([JobView(rec, now) for rec in jobs], args.sort)
    if args.json:
        result = [v.to_dict() for v in views]
        if args.jobids and len(args.jobids) == 1:
            if result:
                print(json.dumps(result[0]))
        else:
            print(json.dumps({"jobs": result}))
    else:
        shown = fmt.filtered(views)
        if not args.no_header:
            print(shown.header())
        for view in views:
            print(shown.render(view))
    if not args.no_header and truncated:
        print(f"warning: output truncated at {args.count} jobs.", file=sys.stderr)
        print("Use --count to increase returned results or use filters to alter results.",
              file=sys.stderr)
    return 0


def print_stats(state):
    """--stats line: running, completed, failed, pending, inactive purged."""
    jobs = list(state["jobs"].values())
    running = sum(j["state"] in RUNNING for j in jobs)
    pending = sum(j["state"] in PENDING for j in jobs)
    done = [j for j in jobs if j["state"] == "INACTIVE"]
    completed = sum(j["result"] == "COMPLETED" for j in done)
    print(f"{running} running, {completed} completed, {len(done) - completed} failed, "
          f"{pending} pending, 0 inactive purged")
    return running + pending > 0


# --------------------------------------------------------------------------
# flux job (C plumbing commands) and flux cancel
# --------------------------------------------------------------------------

def getopt_parse(prog, usage, argv, options):
    """liboptparse/getopt_long style parsing: permuted arguments,
    unambiguous long-option prefixes.  options: {long: (short, has_arg)}."""
    opts, positional, i = {}, [], 0

    def fail(msg):
        raise FluxError(f"{prog}: {msg}\nUsage: {usage}", 1)

    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg.startswith("--"):
            name, eq, val = arg[2:].partition("=")
            match = [k for k in options if k == name] or [k for k in options if k.startswith(name)]
            if len(match) != 1:
                fail(f"unrecognized option '{arg}'")
            name = match[0]
            if options[name][1] and not eq:
                if i >= len(argv):
                    fail(f"option '--{name}' requires an argument")
                val, i = argv[i], i + 1
            opts[name] = val if options[name][1] else True
        elif arg.startswith("-") and len(arg) > 1:
            short = {v[0]: k for k, v in options.items() if v[0]}
            name = short.get(arg[1])
            if name is None:
                fail(f"invalid option -- '{arg[1]}'")
            if options[name][1]:
                val = arg[2:]
                if not val:
                    if i >= len(argv):
                        fail(f"option requires an argument -- '{arg[1]}'")
                    val, i = argv[i], i + 1
                opts[name] = val
            else:
                opts[name] = True
                for extra in arg[2:]:
                    argv = argv[:i] + [f"-{extra}"] + argv[i:]
        else:
            positional.append(arg)
    return opts, positional


def job_arg(text):
    """parse_jobid() of flux-job: error parsing jobid."""
    try:
        return parse_jobid(text)
    except ValueError:
        raise FluxError(f'flux-job: error parsing jobid: "{text}"') from None


def local_iso(stamp):
    """ISO 8601 local time with microseconds and numeric zone offset."""
    moment = datetime.fromtimestamp(stamp).astimezone()
    zone = moment.strftime("%z")
    zone = "Z" if zone in ("+0000", "-0000") else f"{zone[:3]}:{zone[3:]}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}" + zone


class EventFormatter:
    """libeventlog formatter: text (``TIMESTAMP name key=json ...``) or json."""

    def __init__(self, fmt="text", time_format="raw"):
        if fmt not in ("text", "json"):
            raise FluxError(f"flux-job: invalid format type '{fmt}'")
        if time_format not in ("raw", "iso", "offset", "human", "reltime"):
            raise FluxError(f"flux-job: invalid time-format type '{time_format}'")
        self.fmt, self.time_format = fmt, time_format
        self.t0 = None
        self.last = None

    def stamp(self, stamp):
        """Timestamp in the selected time format."""
        if self.t0 is None:
            self.t0 = stamp
        if self.time_format == "raw":
            return f"{stamp:f}"
        if self.time_format == "iso":
            return local_iso(stamp)
        if self.time_format == "offset":
            return f"{stamp - self.t0:f}"
        moment = datetime.fromtimestamp(stamp)
        minute = moment.strftime("%Y%m%d%H%M")
        if self.last and self.last[0] == minute:
            return f"[{stamp - self.last[1]:+11.6f}]"
        self.last = (minute, stamp)
        return moment.strftime("[%b%d %H:%M]")

    def format(self, entry):
        """One eventlog entry as a line (without newline)."""
        if self.fmt == "json":
            return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
        parts = [self.stamp(entry["timestamp"]), entry["name"]]
        for key, val in (entry.get("context") or {}).items():
            parts.append(f"{key}={json.dumps(val, separators=(',', ':'), ensure_ascii=False)}")
        return " ".join(parts)


EVENTLOG_OPTS = {"format": ("f", True), "time-format": ("T", True), "human": ("H", False),
                 "color": ("L", True), "path": ("p", True)}


def event_formatter(opts):
    """--format/--time-format/--human options of eventlog and wait-event."""
    if opts.get("human"):
        return EventFormatter("text", "human")
    return EventFormatter(opts.get("format", "text"), opts.get("time-format", "raw"))


def job_eventlog(inst, jobid, text, path="eventlog"):
    """The main eventlog of a job (other eventlog paths are not emulated)."""
    path = {"exec": "guest.exec.eventlog", "output": "guest.output",
            "input": "guest.input"}.get(path, path)
    job = inst.snapshot()["jobs"].get(str(jobid))
    if job is None:
        raise FluxError(f"flux-job: job {text} not found")
    if path != "eventlog":
        raise FluxError(f"flux-job: eventlog path {path} not found")
    return job["eventlog"]


def job_eventlog_cmd(inst, argv):
    """flux job eventlog [-f FMT] [-T TIMEFMT] [-H] ID."""
    usage = "flux job eventlog [OPTIONS] id"
    opts, pos = getopt_parse("flux-job", usage, argv, EVENTLOG_OPTS)
    if len(pos) != 1:
        raise FluxError(f"Usage: {usage}", 1)
    evf = event_formatter(opts)
    for entry in job_eventlog(inst, job_arg(pos[0]), pos[0], opts.get("path", "eventlog")):
        print(evf.format(entry))
    return 0


def job_wait_event_cmd(inst, argv):
    """flux job wait-event [-t TIMEOUT] [-m KEY=VAL] [-c N] [-q] [-v] ID EVENT."""
    usage = "flux job wait-event [OPTIONS] id event"
    spec = dict(EVENTLOG_OPTS, timeout=("t", True), **{"match-context": ("m", True)},
                count=("c", True), quiet=("q", False), verbose=("v", False),
                waitcreate=("W", False))
    opts, pos = getopt_parse("flux-job", usage, argv, spec)
    if len(pos) != 2:
        raise FluxError(f"Usage: {usage}", 1)
    jobid, name = job_arg(pos[0]), pos[1]
    evf, count = event_formatter(opts), int(opts.get("count", 1))
    if count <= 0:
        raise FluxError("flux-job: count must be > 0")
    key, _, want = opts.get("match-context", "").partition("=")
    if "match-context" in opts and not _:
        raise FluxError("flux-job: must specify a context test as key=value")
    deadline = time.time() + parse_fsd(opts["timeout"]) if "timeout" in opts else None
    while True:
        events = job_eventlog(inst, jobid, pos[0], opts.get("path", "eventlog"))
        found = wait_event_match(events, name, key, want, count)
        if found is not None:
            break
        if inst.snapshot()["jobs"][str(jobid)]["state"] == "INACTIVE":
            raise FluxError(f"flux-job: event '{name}' never received")
        if deadline and time.time() >= deadline:
            raise FluxError(f"flux-job: wait-event timeout on event '{name}'")
        time.sleep(0.05)
    if opts.get("verbose"):
        for entry in events[:found]:
            print(evf.format(entry))
    if not opts.get("quiet"):
        print(evf.format(events[found]))
    return 0


def wait_event_match(events, name, key, want, count):
    """Index of the count-th event called ``name`` matching key=want, or None."""
    matches = 0
    for index, entry in enumerate(events):
        if entry["name"] != name:
            continue
        if key:
            val = (entry.get("context") or {}).get(key, KeyError)
            if val is KeyError or (json.dumps(val, separators=(",", ":")) != want
                                   and not (isinstance(val, str) and val == want)):
                continue
        matches += 1
        if matches == count:
            return index
    return None


def job_info_cmd(inst, argv):
    """flux job info ID KEY: eventlog (RFC 18 JSON lines), jobspec, R."""
    _, pos = getopt_parse("flux-job", "flux job info id key", argv,
                             {"original": ("o", False), "base": ("b", False)})
    if len(pos) != 2:
        raise FluxError("Usage: flux job info id key\nsome useful keys are:\n"
                        "  J                    - signed jobspec\n"
                        "  R                    - allocated resources\n"
                        "  eventlog             - primary job eventlog\n"
                        "  jobspec              - job specification\n"
                        "  guest.exec.eventlog  - execution eventlog\n"
                        "  guest.input          - job input log\n"
                        "  guest.output         - job output log\n"
                        "Use flux job info -h to list available options", 1)
    jobid, key = job_arg(pos[0]), pos[1]
    job = inst.snapshot()["jobs"].get(str(jobid))
    jdir = inst.job_dir(jobid)
    value = None
    if job is not None and key == "eventlog":
        value = "".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n"
                        for e in job["eventlog"])
    elif job is not None and key == "jobspec":
        value = json.dumps(make_jobspec(read_json(os.path.join(jdir, "spec.json"))),
                           separators=(",", ":"), ensure_ascii=False)
    elif job is not None and key == "R" and os.path.exists(os.path.join(jdir, "R.json")):
        value = json.dumps(read_json(os.path.join(jdir, "R.json")), separators=(",", ":"))
    if value is None:
        raise FluxError("flux-job: No such file or directory")
    print(value)
    return 0


def job_id_cmd(argv):
    """flux job id [--to=dec|hex|dothex|kvs|f58|f58plain] [ID...] (or stdin)."""
    opts, pos = getopt_parse("flux-job", "flux job id [OPTIONS] [id ...]", argv,
                             {"to": ("t", True)})
    to = opts.get("to", "dec")
    sources = pos if pos else [line for line in sys.stdin.read().splitlines()]
    if not sources:
        return 1
    for src in sources:
        try:
            value = parse_jobid(src)
        except ValueError:
            raise FluxError(f"flux-job: {src.strip()}: malformed input") from None
        try:
            print(encode_jobid(value, to))
        except KeyError:
            raise FluxError(f"flux-job: Unknown to={to}") from None
        except NotImplementedError:
            raise FluxError(f"flux-job: Unable to encode id {src} to {to} "
                            f"(not emulated by the flux test double)") from None
    return 0


def job_urgency_cmd(inst, argv):
    """flux job urgency [-v] ID N|hold|default|expedite."""
    usage = "flux job urgency [OPTIONS] id urgency"
    opts, pos = getopt_parse("flux-job", usage, argv, {"verbose": ("v", False)})
    if len(pos) != 2:
        raise FluxError(f"Usage: {usage}", 1)
    jobid = job_arg(pos[0])
    names = {"hold": URGENCY_HOLD, "expedite": URGENCY_EXPEDITE, "default": URGENCY_DEFAULT}
    if pos[1].lower() in names:
        urgency = names[pos[1].lower()]
    elif re.fullmatch(r"\d+", pos[1]):
        urgency = int(pos[1])
    else:
        raise FluxError(f'flux-job: error parsing urgency: "{pos[1]}"')
    with inst.transaction() as state:
        jm = JobManager(inst, state)
        job = jm.get(jobid)
        try:
            if not 0 <= urgency <= 31:
                raise RequestError(22, "urgency value is out of range")
            if job is None:
                raise RequestError(22, "unknown job")
            old = jm.set_urgency(job, urgency, os.getuid())
        except RequestError as exc:
            raise FluxError(f"flux-job: {pos[0]}: {exc.message}") from None
    ensure_broker(inst)
    if opts.get("verbose"):
        text = {URGENCY_HOLD: "job held", URGENCY_EXPEDITE: "job expedited"}.get(old, old)
        print(f"old urgency: {text}", file=sys.stderr)
    return 0


def raise_on_jobs(inst, args, etype, severity, note, userid, prefix):
    """job-manager raise RPC for each id; returns the number of errors."""
    errors = 0
    with inst.transaction() as state:
        jm = JobManager(inst, state)
        for text, jobid in args:
            job = jm.get(jobid)
            try:
                if note and "=" in note:
                    raise RequestError(71, "exception note may not contain key=value attributes")
                if job is None or job["state"] == "INACTIVE":
                    raise RequestError(2, "unknown job id")
                jm.raise_exception(job, etype, note or "", severity, userid)
            except RequestError as exc:
                errors += 1
                print(prefix(text, jobid, exc.message), file=sys.stderr)
        jm.settle()
    wake_broker(inst)
    return errors


def job_raise_cmd(inst, argv):
    """flux job raise [-s N] [-t TYPE] [-m NOTE] ID... [--] [NOTE...]."""
    opts, pos = getopt_parse("flux-job", "flux job raise [OPTIONS] ids... [--] [message...]",
                             argv, {"severity": ("s", True), "type": ("t", True),
                                    "message": ("m", True)})
    ids, rest = split_ids_and_note(pos)
    note = " ".join(rest) if rest else opts.get("message")
    if rest and "message" in opts:
        raise FluxError("flux-job: Do not set note on command line and with --message")
    errors = raise_on_jobs(inst, ids, opts.get("type", "cancel"), int(opts.get("severity", 0)),
                           note, os.getuid(), lambda t, j, m: f"flux-job: raise {t}: {m}")
    return 1 if errors else 0


def split_ids_and_note(args):
    """Leading arguments that parse as job ids; the rest is a note."""
    ids = []
    for index, text in enumerate(args):
        try:
            ids.append((text, parse_jobid(text)))
        except ValueError:
            rest = args[index:]
            return ids, rest[1:] if rest and rest[0] == "--" else rest
    return ids, []


def job_kill_cmd(inst, argv):
    """flux job kill [-s SIG] ID...: signal running jobs (default SIGTERM)."""
    opts, pos = getopt_parse("flux-job", "flux job kill [--signal=SIG] ids...", argv,
                             {"signal": ("s", True)})
    if not pos:
        raise FluxError("Usage: flux job kill [--signal=SIG] ids...", 1)
    ids, rest = split_ids_and_note(pos)
    if rest:
        raise FluxError(f"flux-job: invalid jobid: {rest[0]}")
    sig = opts.get("signal", "SIGTERM")
    try:
        signum = decode_signal(sig)
    except ValueError:
        raise FluxError(f"flux-job: kill: Invalid signal {sig}") from None
    errors = 0
    state = inst.snapshot()
    for text, jobid in ids:
        job = state["jobs"].get(str(jobid))
        if job is None or job["state"] == "INACTIVE":
            message = "unknown job id"
        elif job["state"] != "RUN":
            message = "job is not running"
        else:
            signal_group(job, signum)
            continue
        errors += 1
        print(f"flux-job: kill {text}: {message}", file=sys.stderr)
    return 1 if errors else 0


def job_last_cmd(inst, argv):
    """flux job last [N|[SLICE]]: most recently submitted job ids."""
    jobs = sorted(inst.snapshot()["jobs"].values(), key=lambda j: -j["t_submit"])
    ids = [JobID(j["id"]) for j in jobs if j["userid"] == os.getuid()]
    if not ids:
        raise FluxError("flux-job: job history is empty")
    arg = argv[0] if argv else "1"
    if arg.startswith("[") and arg.endswith("]"):
        parts = [int(p) if p else None for p in arg[1:-1].split(":")]
        selected = ids[slice(*parts)]
    else:
        selected = ids[:int(arg)]
    for jobid in selected:
        print(jobid)
    return 0


def cmd_job(argv):
    """flux job SUBCOMMAND: id, urgency, eventlog, wait-event, info, kill, raise, last."""
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage: flux-job [OPTIONS] COMMAND ARGS", file=sys.stderr)
        return 1 if not argv else 0
    sub, rest = argv[0], argv[1:]
    if sub == "id":
        return job_id_cmd(rest)
    handlers = {"urgency": job_urgency_cmd, "eventlog": job_eventlog_cmd,
                "wait-event": job_wait_event_cmd, "info": job_info_cmd,
                "kill": job_kill_cmd, "raise": job_raise_cmd, "last": job_last_cmd}
    if sub not in handlers:
        raise FluxError(f"flux-job: Unknown subcommand: {sub}", 1)
    try:
        inst = Instance.open()
    except ConnectError:
        raise FluxError("flux-job: flux_open: No such file or directory") from None
    return handlers[sub](inst, rest)


def plural(count, word):
    """flux-cancel's ``job{'s'[:count^1]}`` pluralisation."""
    return f"{count} {word}{'s'[:count ^ 1]}"


def cmd_cancel(argv):
    """flux cancel [--all] [-m NOTE] [JOBID...]: exception type=cancel."""
    parser = argparse.ArgumentParser(prog="flux-cancel",
                                     usage="flux cancel [OPTIONS] [JOBID...]")
    parser.add_argument("--all", action="store_true")
    parser.add_argument("-n", "--dry-run", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("-u", "--user", metavar="USER")
    parser.add_argument("-S", "--states", action="append")
    parser.add_argument("-m", "--message", metavar="NOTE")
    parser.add_argument("jobids", metavar="JOBID...", type=JobID, nargs="*")
    args = parser.parse_args(argv)
    if args.user or args.states:
        args.all = True
    if args.jobids and args.all:
        raise FluxError("flux-cancel: ERROR: Do not specify a list of jobids with "
                        "--all,--user,--states options")
    if args.all:
        return cancel_all(args)
    if not args.jobids:
        raise ValueError("No target jobs were provided")
    if args.dry_run:
        print(f"flux-cancel: Would cancel {plural(len(args.jobids), 'job')}", file=sys.stderr)
        return 0
    inst = Instance.open()
    errors = raise_on_jobs(inst, [(j.orig, j) for j in args.jobids], "cancel", 0,
                           args.message, os.getuid(),
                           lambda t, j, m: f"flux-cancel: ERROR: {JobID(j)}: {m}")
    return 1 if errors else 0


def cancel_all(args):
    """flux cancel --all [--states=...]: raiseall type=cancel."""
    states = set()
    for name in ",".join(args.states or ["pending", "running"]).split(","):
        if name.lower() not in JOB_STATES or name.lower() == "inactive":
            raise ValueError(f"Invalid state {name} specified")
        states.update(JOB_STATES[name.lower()])
    inst = Instance.open()
    uid = os.getuid() if args.user in (None, str(os.getuid()), username(os.getuid())) \
        else None if args.user == "all" else -1
    targets = [(str(j["id"]), j["id"]) for j in inst.snapshot()["jobs"].values()
               if j["state"] in states and (uid is None or j["userid"] == uid)]
    if targets and not args.dry_run:
        raise_on_jobs(inst, targets, "cancel", 0, args.message, os.getuid(),
                      lambda t, j, m: f"flux-cancel: ERROR: {JobID(j)}: {m}")
    if targets:
        verb = "Would cancel" if args.dry_run else "Canceled"
        tail = "" if args.dry_run else " (0 errors)"
        print(f"flux-cancel: {verb} {plural(len(targets), 'job')}{tail}", file=sys.stderr)
    elif not args.quiet:
        print("flux-cancel: Matched 0 jobs", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------
# flux queue, flux version, dispatch
# --------------------------------------------------------------------------

def cmd_queue(argv):
    """flux queue drain|idle [-t TIMEOUT]: wait for the queue to empty / go idle."""
    parser = argparse.ArgumentParser(prog="flux-queue")
    parser.add_argument("subcommand", choices=["drain", "idle"])
    parser.add_argument("-t", "--timeout", metavar="DURATION")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    inst = Instance.open()
    watch = ACTIVE if args.subcommand == "drain" else RUNNING
    deadline = time.time() + parse_fsd(args.timeout) if args.timeout else None
    while any(j["state"] in watch for j in inst.snapshot()["jobs"].values()):
        if deadline and time.time() >= deadline:
            raise FluxError(f"flux-queue: ERROR: {args.subcommand}: "
                            f"Connection timed out")
        time.sleep(0.1)
    return 0


def cmd_version(argv):
    """flux version: versions of the (emulated) components."""
    print(f"commands:    \t\t{VERSION}")
    print(f"libflux-core:\t\t{VERSION}")
    try:
        inst = Instance.open()
        print(f"broker:      \t\t{VERSION}")
        print(f"FLUX_URI:    \t\t{inst.uri}")
    except ConnectError:
        pass
    print("build-options:\t\t+test-double")
    return 0


PYTHON_COMMANDS = {"submit": cmd_submit, "batch": cmd_batch, "run": cmd_run,
                   "jobs": cmd_jobs, "cancel": cmd_cancel, "queue": cmd_queue}


def run_python_command(name, argv):
    """flux.util.CLIMain error reporting: ``flux-NAME: ERROR: message``."""
    logger = f"flux-{name}"
    try:
        return PYTHON_COMMANDS[name](argv) or 0
    except FluxError as exc:
        print(exc.text, file=sys.stderr)
        return exc.code
    except ConnectError as exc:
        print(f"{logger}: ERROR: Unable to connect to Flux: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise
    except (ValueError, OSError) as exc:
        message = getattr(exc, "strerror", None) or str(exc)
        if getattr(exc, "filename", None):
            message += f": '{exc.filename}'"
        print(f"{logger}: ERROR: {message}", file=sys.stderr)
        return 1


def main(argv):
    """Entry point: ``flux COMMAND ...`` plus the internal broker/shell roles."""
    sys.stdout.reconfigure(encoding="utf-8", errors="surrogateescape")
    sys.stderr.reconfigure(encoding="utf-8", errors="surrogateescape")
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print("Usage: flux [OPTIONS] COMMAND ARGS\n(flux test double: submit batch run "
              "jobs job cancel queue version)", file=sys.stderr)
        return 0 if len(argv) >= 2 else 1
    cmd, rest = argv[1], argv[2:]
    if cmd == "broker":
        return Broker(Instance("local://" + rest[0], rest[0])).run()
    if cmd == "shell":
        return shell_main(rest[0], int(rest[1]))
    if cmd in PYTHON_COMMANDS:
        return run_python_command(cmd, rest)
    if cmd in ("version", "-V", "--version"):
        return cmd_version(rest)
    if cmd == "job":
        try:
            return cmd_job(rest)
        except FluxError as exc:
            print(exc.text, file=sys.stderr)
            return exc.code
    print(f"flux: {cmd}: command not found (not emulated by the flux test double)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
