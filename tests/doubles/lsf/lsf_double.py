#!/usr/bin/env python3
"""Test double of the IBM Spectrum LSF 10.1 batch commands.

One file implements ``bsub``, ``bjobs``, ``bkill``, ``bresume``, ``brequeue``, ``bhist``,
``busers`` and a small ``mbatchd`` daemon that really runs the jobs on this machine.  The wrappers in
``bin/`` call ``python3 lsf_double.py <command> ARGS...``; putting that directory first on
PATH makes them "the" LSF commands.  Behaviour follows the LSF 10.1 command reference
(bsub, bjobs -o/-json, bhist -l, bkill, bresume, brequeue, busers -w, the termination-reason table);
what could not be verified is listed in README.md.

State lives in the directory named by ``LSF_DOUBLE_DIR`` (a JSON file guarded by an
``fcntl`` lock, spooled job scripts, default output files, the daemon's pid file).
Python 3.9+, standard library only.
"""
import contextlib
import fcntl
import getpass
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
POLL = 0.2                      # daemon poll interval, seconds
WAKE = signal.SIGURG            # commands nudge mbatchd with it (default action: ignore)
DASHES = "-" * 78               # separator between jobs in bhist -l / bjobs -l
RES_REQ = "select[type == local] order[r15s:pg] "
UNFINISHED = ("PEND", "PSUSP", "RUN")
FINISHED = ("DONE", "EXIT")

# Termination reasons: keyword -> text shown after it by bjobs -o exit_reason / bhist -l
# (keywords and integer codes from "Termination reasons displayed by bacct, bhist, and bjobs").
TERM_TEXT = {
    "TERM_OWNER": "job killed by owner",
    "TERM_FORCE_OWNER": "job killed by owner without time for cleanup",
    "TERM_RUNLIMIT": "job killed after reaching LSF run time limit",
    "TERM_ORPHAN_SYSTEM": "orphan job was automatically terminated by LSF",
    "TERM_CWD_NOTEXIST": "current working directory is not accessible or does not exist "
                         "on the execution host",
    "TERM_ZOMBIE": "job exited while LSF is not available",
}

PEND_NEW = "New job is waiting for scheduling;"
PEND_DEP = "Job dependency condition not satisfied;"
PEND_ORPHAN = "Dependency condition invalid or never satisfied;"
PEND_HELD = "The job was suspended by the user while pending;"
PEND_THROTTLE = "The job array has reached its job slot limit;"
PEND_REQUEUED = "Requeued job is waiting for rescheduling;"


class LsfError(Exception):
    """A command failure: message for stderr and the exit status LSF uses (255)."""

    def __init__(self, message, status=255):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- configuration

def _env_float(name, default):
    """A numeric knob from the environment (invalid values fall back to the default)."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


def _env_threshold(name):
    """A pending threshold knob (lsb.users MAX_PEND_JOBS / MAX_PEND_SLOTS): None when unset or "-"."""
    text = os.environ.get(name, "").strip()
    return int(text) if text.isdigit() else None


def knobs():
    """The env knobs of this command; stored in the state so the daemon uses the same."""
    queues = [q for q in os.environ.get("LSF_DOUBLE_QUEUES", "normal").replace(" ", "").split(",") if q]
    return {
        "slots": int(_env_float("LSF_DOUBLE_SLOTS", 8)),
        "minute": _env_float("LSF_DOUBLE_MINUTE", 60),
        "clean_period": _env_float("LSF_DOUBLE_CLEAN_PERIOD", 3600),
        "max_array": int(_env_float("LSF_DOUBLE_MAX_JOB_ARRAY_SIZE", 1000)),
        "queues": queues or ["normal"],
        "terminate_interval": _env_float("LSF_DOUBLE_TERMINATE_INTERVAL", 1.0),
        "idle_exit": _env_float("LSF_DOUBLE_IDLE_EXIT", 20),
        "first_id": int(_env_float("LSF_DOUBLE_FIRST_JOBID", 1)),
        "max_requeue": int(_env_float("LSF_DOUBLE_MAX_JOB_REQUEUE", 0)),
        "max_pend_jobs": _env_threshold("LSF_DOUBLE_MAX_PEND_JOBS"),
        "max_pend_slots": _env_threshold("LSF_DOUBLE_MAX_PEND_SLOTS"),
        "sub_try_interval": _env_float("LSF_DOUBLE_SUB_TRY_INTERVAL", 60),
    }


def state_dir():
    """The state directory from LSF_DOUBLE_DIR (created if missing)."""
    path = os.environ.get("LSF_DOUBLE_DIR")
    if not path:
        raise LsfError("LSF_DOUBLE_DIR is not set: the LSF test double needs a state directory.")
    path = os.path.abspath(path)
    for sub in ("", "spool", "output"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return path


# --------------------------------------------------------------------------- state store

class Store:
    """The cluster state (one JSON document) guarded by an exclusive fcntl lock."""

    def __init__(self, path):
        self.dir = path
        self.file = os.path.join(path, "state.json")
        self.lockfile = os.path.join(path, "lock")
        self.pidfile = os.path.join(path, "mbatchd.pid")

    @contextlib.contextmanager
    def locked(self):
        """Hold the state lock (all commands and the daemon serialise on it)."""
        with open(self.lockfile, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self):
        """Read the state; an empty cluster when nothing was submitted yet."""
        try:
            with open(self.file) as handle:
                return json.load(handle)
        except FileNotFoundError:
            return {"next_id": None, "jobs": {}, "config": {}}

    def save(self, state):
        """Write the state atomically (rename over the old file)."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".state.")
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle)
        os.replace(tmp, self.file)


# --------------------------------------------------------------------------- small helpers

def now():
    """Current time (epoch seconds); all state timestamps use it."""
    return time.time()


def short_time(t):
    """LSF's short timestamp (bjobs SUBMIT_TIME etc.): 'Oct  2 09:22'."""
    lt = time.localtime(t)
    return "%s %2d %s" % (time.strftime("%b", lt), lt.tm_mday, time.strftime("%H:%M", lt))


def event_time(t):
    """bhist event timestamp: the first 19 characters of ctime, 'Sun Jan 10 17:47:38'."""
    return time.ctime(t)[:19]


def home_relative(path):
    """CWD as bhist/bjobs print it: relative to $HOME when below it."""
    home = os.path.expanduser("~")
    if path == home:
        return "$HOME"
    if path.startswith(home.rstrip("/") + "/"):
        return "$HOME/" + path[len(home.rstrip("/")) + 1:]
    return path


def hostname():
    """The only host of this cluster: short name, as LSF prints host names."""
    return socket.gethostname().split(".")[0]


def user():
    """Submitting user (every job belongs to the user running the commands)."""
    return getpass.getuser()


def wrap79(text):
    """LSF long-format wrapping: 79 columns, continuation lines indented by 21 blanks."""
    lines, rest = [text[:79]], text[79:]
    while rest:
        lines.append(" " * 21 + rest[:58])
        rest = rest[58:]
    return "\n".join(line.rstrip() for line in lines)


def default_signals():
    """In a job about to start: every signal back to its default action, as sbatchd does. The
    daemon may have been started by a shell that ignores SIGINT and SIGQUIT (`cmd &`), and an
    ignored signal stays ignored across exec: bkill's SIGINT would then not reach the job."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGPIPE, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)


def signal_number(name):
    """A signal given as name (USR1, SIGUSR1) or number, as -wa and bkill -s accept it."""
    text = str(name).strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    sig = getattr(signal, text, None)
    if not isinstance(sig, signal.Signals):
        raise ValueError(name)
    return int(sig)


def signal_name(num):
    """Signal number -> LSF style name without the SIG prefix."""
    try:
        return signal.Signals(num).name[3:]
    except ValueError:
        return str(num)


def pid_alive(pid):
    """True while a process with that pid exists (and is not a zombie)."""
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def killpg(pgid, sig):
    """Send a signal to a job's process group (ignoring groups that are gone)."""
    if not pgid:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- job model

def elements(job):
    """(index, element) pairs of a job in index order (index 0 for a non-array job)."""
    return sorted(((int(k), v) for k, v in job["elements"].items()), key=lambda kv: kv[0])


def element_name(job, idx):
    """Job name as bjobs shows it: 'name[7]' for array elements."""
    return "%s[%d]" % (job["name"], idx) if job["indices"] else job["name"]


def element_label(job, idx):
    """Job id as LSF messages print it: '1234' or '1234[7]'."""
    return "%d[%d]" % (job["id"], idx) if job["indices"] else str(job["id"])


def new_element(t, held):
    """A freshly submitted (or requeued) element: PEND, or PSUSP with bsub -H."""
    return {"stat": "PSUSP" if held else "PEND", "since": t, "queue_time": t,
            "acc": {"PEND": 0.0, "PSUSP": 0.0, "RUN": 0.0}, "pid": None, "pgid": None,
            "start_time": None, "finish_time": None, "exit_code": None, "exit_reason": None,
            "cpu": 0.0, "runs": 0, "exec_cwd": None, "kill": None, "limit_t": None,
            "warned": False, "requeues": 0, "events": []}


def set_stat(elem, stat, t):
    """Move an element to a new state, accumulating time spent in the old one (bhist summary)."""
    old = elem["stat"]
    if old in elem["acc"]:
        elem["acc"][old] += max(0.0, t - elem["since"])
    elem["stat"], elem["since"] = stat, t


def add_event(elem, t, text):
    """Append a bhist -l event line (without the timestamp)."""
    elem["events"].append([t, text])


def visible(elem, clean_period, t):
    """Is the element still known to mbatchd (unfinished, or finished within CLEAN_PERIOD)?"""
    return elem["stat"] in UNFINISHED or (elem["finish_time"] or t) + clean_period > t


def job_visible(job, clean_period, t):
    """A job is known while any of its elements is (arrays: per element)."""
    return any(visible(e, clean_period, t) for _, e in elements(job))


def finish(elem, t, stat, code=None, reason=None):
    """Terminal transition to DONE or EXIT."""
    set_stat(elem, stat, t)
    elem.update(finish_time=t, exit_code=code, exit_reason=reason, pid=None, kill=None)


# --------------------------------------------------------------------------- job id arguments

IDSPEC = re.compile(r'^"?(\d+)(?:\[([0-9,:\- ]+)\])?"?$')


def parse_index_list(text):
    """'1-10:2,20' -> [1, 3, 5, 7, 9, 20] (LSF index list: start[-end[:step]], ...)."""
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*(?::\s*(\d+)\s*)?)?", part)
        if not m:
            raise ValueError(part)
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else start
        step = int(m.group(3)) if m.group(3) else 1
        if start < 1 or end < start or step < 1:
            raise ValueError(part)
        out.extend(range(start, end + 1, step))
    return out


def parse_jobid_arg(text):
    """'1234' -> (1234, None); '1234[3]' / '"1234[3-5]"' -> (1234, [3, 4, 5])."""
    m = IDSPEC.match(text.strip())
    if not m:
        raise ValueError(text)
    return int(m.group(1)), (parse_index_list(m.group(2)) if m.group(2) else None)


def pick(job, indices):
    """Elements of a job selected by an optional index list (missing indices are skipped)."""
    if indices is None:
        return elements(job)
    return [(i, job["elements"][str(i)]) for i in indices if str(i) in job["elements"]]


# --------------------------------------------------------------------------- dependency expressions

DEP_TOKEN = re.compile(r"""\s*(?:
      (?P<op>&&|\|\||>=|<=|==|!=|[!()<>,])
    | (?P<str>"[^"]*")
    | (?P<word>[A-Za-z0-9_.\-*]+(?:\[[^\]]*\])?)
    )""", re.X)
DEP_FUNCS = ("done", "ended", "exit", "started", "post_done", "post_err",
             "numdone", "numended", "numexit", "numrun", "numpend", "numhold", "numstart")
COMPARE = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
           "<=": lambda a, b: a <= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def dep_tokens(text):
    """Tokenise a -w expression into (kind, value) pairs."""
    out, pos = [], 0
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] == "'":
        text = text[1:-1]
    while pos < len(text):
        m = DEP_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ValueError("bad token at %r" % text[pos:])
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class DepParser:
    """Recursive-descent parser for the bsub -w grammar (&&, ||, !, parentheses, conditions)."""

    def __init__(self, text):
        self.toks, self.i = dep_tokens(text), 0

    def peek(self):
        """Next token without consuming it ((None, None) at the end)."""
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, value=None):
        """Consume the next token (optionally requiring its value)."""
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise ValueError("expected %r" % value)
        self.i += 1
        return tok

    def parse(self):
        """The whole expression; leftover tokens are a syntax error."""
        node = self.parse_or()
        if self.i != len(self.toks):
            raise ValueError("trailing tokens")
        return node

    def parse_or(self):
        """expr || expr (lowest precedence)."""
        parts = [self.parse_and()]
        while self.peek()[1] == "||":
            self.take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else {"op": "or", "args": parts}

    def parse_and(self):
        """expr && expr."""
        parts = [self.parse_unary()]
        while self.peek()[1] == "&&":
            self.take()
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else {"op": "and", "args": parts}

    def parse_unary(self):
        """! expr, ( expr ), or a condition."""
        kind, value = self.peek()
        if value == "!":
            self.take()
            return {"op": "not", "args": [self.parse_unary()]}
        if value == "(":
            self.take()
            node = self.parse_or()
            self.take(")")
            return node
        return self.parse_cond()

    def parse_cond(self):
        """done(ref) ... or a bare job reference, which means done()."""
        kind, value = self.take()
        if kind == "word" and self.peek()[1] == "(":
            if value.lower() not in DEP_FUNCS:
                raise ValueError("unknown condition %s" % value)
            self.take("(")
            ref = self.parse_ref()
            extra = self.parse_extra(value.lower())
            self.take(")")
            return {"op": "cond", "fn": value.lower(), "ref": ref, "extra": extra}
        self.i -= 1
        return {"op": "cond", "fn": "done", "ref": self.parse_ref(), "extra": None}

    def parse_ref(self):
        """A job reference: 123, 123[4], 123[*], "name", name, name[*], "name*"."""
        kind, value = self.take()
        quoted = kind == "str"
        if quoted:
            value = value[1:-1]
        elif kind != "word":
            raise ValueError("job reference expected")
        m = re.fullmatch(r"(.+?)(?:\[(\*|\d+)\])?", value)
        base, sel = m.group(1), m.group(2)
        sel = None if sel is None else ("*" if sel == "*" else int(sel))
        return {"text": value, "base": base, "sel": sel, "quoted": quoted,
                "kind": "id" if base.isdigit() and not quoted else "name"}

    def parse_extra(self, fn):
        """exit(j, [op] code) and num*(j, op N | *) arguments."""
        if self.peek()[1] != ",":
            if fn.startswith("num"):
                raise ValueError("%s needs a condition" % fn)
            return None
        self.take(",")
        kind, value = self.take()
        if value == "*" and fn.startswith("num"):
            return ["*"]
        op = "=="
        if value in COMPARE:
            op, (kind, value) = value, self.take()
        if not re.fullmatch(r"\d+", value or ""):
            raise ValueError("number expected")
        if fn != "exit" and not fn.startswith("num"):
            raise ValueError("%s takes one argument" % fn)
        return [op, int(value)]


def dep_refs(node):
    """All job references in an expression tree."""
    if node["op"] == "cond":
        return [node["ref"]]
    return [r for arg in node["args"] for r in dep_refs(arg)]


def resolve_ref(ref, state, cfg, t, child_size):
    """Bind a reference to job ids at submission; LSF rejects jobs it cannot find."""
    jobs = state["jobs"]
    known = [j for j in jobs.values() if job_visible(j, cfg["clean_period"], t)]
    by_id = [j["id"] for j in known if str(j["id"]) == ref["base"].lstrip("0")]
    if ref["kind"] == "id":
        ids = by_id
    else:
        ids = [j["id"] for j in known if name_matches(ref["base"], j["name"])]
        if not ids and ref["quoted"] and ref["base"].isdigit() and isinstance(ref["sel"], int):
            ids = by_id                                     # "1234[7]": element 7 of job 1234
    if not ids:
        raise LsfError("%s: No matching job found. Job not submitted." % ref["text"])
    for jid in ids:
        check_selector(ref, jobs[str(jid)], child_size)
    ref["jobs"] = ids


def name_matches(pattern, name):
    """Job-name match in -w: exact, or prefix match with a trailing '*' wildcard."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def check_selector(ref, job, child_size):
    """[7] must name an existing element; [*] needs two arrays of identical size."""
    sel = ref["sel"]
    if isinstance(sel, int) and str(sel) not in job["elements"]:
        raise LsfError("%s: No matching job found. Job not submitted." % ref["text"])
    if sel == "*" and (not job["indices"] or child_size != len(job["indices"])):
        raise LsfError("%s: The job array size must be identical for one-to-one dependency. "
                       "Job not submitted." % ref["text"])


def ref_elements(ref, state, pos):
    """Elements a reference designates for the child element at position pos."""
    out = []
    for jid in ref["jobs"]:
        job = state["jobs"][str(jid)]
        sel = ref["sel"]
        if sel is None:
            out.extend(e for _, e in elements(job))
        elif sel == "*":
            out.append(job["elements"][str(job["indices"][pos])])
        else:
            out.append(job["elements"][str(sel)])
    return out


def element_truth(fn, extra, elem):
    """(current value, final) of a condition for one referenced element."""
    stat = elem["stat"]
    if fn in ("done", "post_done"):
        return stat == "DONE", stat in FINISHED
    if fn == "post_err":
        return False, stat in FINISHED
    if fn == "ended":
        return stat in FINISHED, stat in FINISHED
    if fn == "started":
        started = stat in ("RUN",) + FINISHED
        return started, started
    if fn == "exit":
        if stat != "EXIT":
            return False, stat == "DONE"
        if extra is None:
            return True, True
        code = elem["exit_code"]
        return code is not None and COMPARE[extra[0]](code, extra[1]), True
    raise ValueError(fn)


def all_of(values):
    """AND of (current, final) pairs: false as soon as one is finally false."""
    cur = all(c for c, _ in values)
    final = any(f and not c for c, f in values) or all(f for _, f in values)
    return cur, final


def any_of(values):
    """OR of (current, final) pairs: true as soon as one is finally true."""
    cur = any(c for c, _ in values)
    final = any(f and c for c, f in values) or all(f for _, f in values)
    return cur, final


NUM_STATES = {"numdone": ("DONE",), "numended": FINISHED, "numexit": ("EXIT",),
              "numrun": ("RUN",), "numpend": ("PEND",), "numhold": ("PSUSP",),
              "numstart": ("RUN",) + FINISHED}


def count_truth(fn, extra, elems):
    """(current, final) of numdone(...)-style conditions over an array's elements."""
    states = NUM_STATES[fn]
    count = sum(1 for e in elems if e["stat"] in states)
    unfinished = sum(1 for e in elems if e["stat"] in UNFINISHED)
    op, limit = (">=", len(elems)) if extra == ["*"] else extra
    cur = COMPARE[op](count, limit)
    if fn in ("numrun", "numpend", "numhold"):
        return cur, unfinished == 0
    possible = {COMPARE[op](n, limit) for n in range(count, count + unfinished + 1)}
    return cur, len(possible) == 1


def evaluate(node, state, pos):
    """(current truth, final) of a -w expression for the child element at position pos."""
    op = node["op"]
    if op == "not":
        cur, final = evaluate(node["args"][0], state, pos)
        return not cur, final
    if op in ("and", "or"):
        values = [evaluate(a, state, pos) for a in node["args"]]
        return all_of(values) if op == "and" else any_of(values)
    elems = ref_elements(node["ref"], state, pos)
    if node["fn"].startswith("num"):
        return count_truth(node["fn"], node["extra"], elems)
    return all_of([element_truth(node["fn"], node["extra"], e) for e in elems])


def dep_status(job, pos, state):
    """'ok' (satisfied or no -w), 'wait' (not yet) or 'orphan' (can never be satisfied)."""
    if not job.get("dep"):
        return "ok"
    cur, final = evaluate(job["dep"], state, pos)
    return "ok" if cur else ("orphan" if final else "wait")


# --------------------------------------------------------------------------- bsub

ARG_OPTS = {"-J", "-Jd", "-w", "-cwd", "-o", "-oo", "-e", "-eo", "-W", "-wa", "-wt", "-q", "-G", "-P",
            "-n", "-nnodes", "-U", "-Q", "-env", "-R", "-M", "-gpu", "-i",
            # accepted and ignored (resources, mail, grouping, limits the double does not enforce)
            "-u", "-m", "-g", "-We", "-app", "-sla", "-c", "-C", "-D", "-F", "-p", "-S",
            "-T", "-v", "-L", "-sp", "-E", "-Ep", "-k", "-csm", "-alloc_flags", "-jsm", "-smt",
            "-core_isolation", "-step_cgroup", "-ln_slots", "-ln_mem", "-datachk", "-data",
            "-rcacct", "-stage", "-hostfile", "-network", "-cn_cu", "-cn_mem", "-eptl", "-ptl"}
FLAG_OPTS = {"-H", "-ti", "-x", "-N", "-B", "-r", "-rn", "-ul"}
UNSUPPORTED = {"-I", "-Ip", "-Is", "-IS", "-ISp", "-ISs", "-IX", "-K", "-b", "-t", "-tty", "-XF"}


def parse_bsub_args(argv, where="bsub"):
    """Split bsub argv into an options dict and the command words (options come first)."""
    opts, i = {}, 0
    while i < len(argv) and argv[i].startswith("-") and len(argv[i]) > 1:
        flag = argv[i]
        if flag in ("-h", "-V"):
            raise LsfError("IBM Spectrum LSF 10.1 (test double)", status=0)
        if flag in UNSUPPORTED:
            raise LsfError("%s: option %s is not supported by the LSF test double. "
                           "Job not submitted." % (where, flag))
        if flag in FLAG_OPTS:
            opts[flag] = True
            i += 1
            continue
        if flag not in ARG_OPTS:
            raise LsfError("%s: illegal option -- %s\nJob not submitted." % (where, flag.lstrip("-")))
        if i + 1 >= len(argv):
            raise LsfError("%s: option requires an argument -- %s\nJob not submitted."
                           % (where, flag.lstrip("-")))
        store_option(opts, flag, argv[i + 1])
        i += 2
    return opts, argv[i:]


def store_option(opts, flag, value):
    """Record one option; -o/-oo and -e/-eo share a slot so the later one wins."""
    if flag in ("-o", "-oo"):
        opts["out"] = (value, flag == "-oo")
    elif flag in ("-e", "-eo"):
        opts["err"] = (value, flag == "-eo")
    elif flag == "-R":
        opts.setdefault("-R*", []).append(value)
    else:
        opts[flag] = value


def script_directives(script):
    """Options from '#BSUB' lines of a job script read from stdin."""
    words = []
    for line in script.splitlines():
        if line.startswith("#BSUB"):
            try:
                words.extend(shlex.split(line[5:]))
            except ValueError:
                raise LsfError("Bad #BSUB line: %s. Job not submitted." % line)
    opts, rest = parse_bsub_args(words, "#BSUB")
    if rest:
        raise LsfError("#BSUB: unexpected argument %s. Job not submitted." % rest[0])
    return opts


def parse_minutes(text, what):
    """LSF time '[hour:]minute[/host_spec]' -> minutes (no seconds, minutes may exceed 59)."""
    value = text.split("/", 1)[0].strip()
    m = re.fullmatch(r"(?:(\d+):)?(\d+)", value)
    if not m:
        raise LsfError("%s: Bad %s specification. Job not submitted." % (text, what))
    minutes = int(m.group(2)) + 60 * int(m.group(1) or 0)
    if minutes <= 0:
        raise LsfError("%s: Bad %s specification. Job not submitted." % (text, what))
    return minutes


def parse_job_name(spec, cfg):
    """-J 'name', 'name[1-10:2,20]', 'name[1-1000]%50' -> (name, indices or None, throttle)."""
    m = re.fullmatch(r"(.+?)\[([^\]]*)\](?:%(\d+))?", spec, re.S)
    if not m:
        if len(spec) > 4094:
            raise LsfError("Job name too long. Job not submitted.")
        return spec, None, None
    name, body, throttle = m.group(1), m.group(2), m.group(3)
    if len(spec) > 255 or not re.fullmatch(r"[A-Za-z0-9._\-]*", name):
        raise LsfError("%s: Bad job name. Job not submitted." % spec)
    try:
        indices = parse_index_list(body)
    except ValueError:
        raise LsfError("%s: Bad job array index list. Job not submitted." % spec)
    if len(set(indices)) != len(indices):
        raise LsfError("%s: Bad job array index list. Job not submitted." % spec)
    if len(indices) > cfg["max_array"] or max(indices) > cfg["max_array"]:
        raise LsfError("%s: Job array index too large (MAX_JOB_ARRAY_SIZE is %d). Job not submitted."
                       % (spec, cfg["max_array"]))
    if throttle is not None and int(throttle) < 1:
        raise LsfError("%s: Bad job array slot limit. Job not submitted." % spec)
    return name, sorted(indices), int(throttle) if throttle else None


def parse_requeue(text):
    """-Q "[all] [~]code ... [EXCLUDE(code ...)]" -> requeue spec."""
    spec = {"all": False, "codes": [], "not": [], "exclude": []}
    body = re.sub(r"EXCLUDE\(([^)]*)\)", lambda m: spec["exclude"].extend(
        int(c) for c in m.group(1).split()) or "", text)
    for word in body.split():
        if word == "all":
            spec["all"] = True
        elif re.fullmatch(r"~\d+", word):
            spec["not"].append(int(word[1:]))
        elif word.isdigit():
            spec["codes"].append(int(word))
        else:
            raise LsfError("%s: Bad requeue exit value specification. Job not submitted." % text)
    return spec


def requeue_wanted(spec, code):
    """Does an exit code trigger automatic requeue (bsub -Q)? Exit code 0 never does."""
    if not spec or not code:
        return False
    if code in spec["not"]:
        return False
    return spec["all"] or code in spec["codes"] or code in spec["exclude"]


def choose_queue(opts, cfg):
    """-q 'queue ...' -> first valid queue; LSF rejects unknown queues."""
    if "-q" not in opts:
        return cfg["queues"][0], False
    for name in opts["-q"].split():
        if name not in cfg["queues"]:
            raise LsfError("%s: No such queue. Job not submitted." % name)
    return opts["-q"].split()[0], True


def warning_action(opts, cfg):
    """-wa SIGNAL with -wt [hour:]minute -> (signal number, seconds before the limit)."""
    if ("-wa" in opts) != ("-wt" in opts):
        raise LsfError("-wa and -wt must be specified together. Job not submitted.")
    if "-wa" not in opts:
        return None, None
    try:
        sig = signal_number(opts["-wa"].strip("'\""))
    except ValueError:
        raise LsfError("%s: Bad warning action (signal). Job not submitted." % opts["-wa"])
    return sig, parse_minutes(opts["-wt"].strip("'\""), "warning time") * cfg["minute"]


def job_command(words, script):
    """(script text, command as LSF displays it) for a command line or a stdin script."""
    if words:
        command = " ".join(words)
        return command + "\n", command
    lines = [line for line in script.splitlines() if line.strip()]
    return script, ";".join(lines)


def build_job(opts, words, script, state, cfg, t):
    """Validate bsub options and return the new job record (without id-dependent parts)."""
    queue, queue_given = choose_queue(opts, cfg)
    spec = opts.get("-J")
    text, command = job_command(words, script)
    if not command.strip():
        raise LsfError("No command is specified. Job not submitted.")
    name, indices, throttle = parse_job_name(spec, cfg) if spec else (command[:4094], None, None)
    if "-ti" in opts and "-w" not in opts:
        raise LsfError("-ti: Use only with the -w option. Job not submitted.")
    runlimit = parse_minutes(opts["-W"], "RUNLIMIT") if "-W" in opts else None
    warn_sig, warn_time = warning_action(opts, cfg)
    job = {"name": name, "named": bool(spec), "indices": indices, "throttle": throttle,
           "user": user(), "from_host": hostname(), "queue": queue, "queue_given": queue_given,
           "project": opts.get("-P", "default"), "group": opts.get("-G"), "submit_time": t,
           "sub_cwd": os.getcwd(), "cwd_spec": opts.get("-cwd"), "command": command,
           "script_text": text, "env": dict(os.environ), "env_opt": opts.get("-env", "all"),
           "out": opts.get("out"), "err": opts.get("err"), "infile": opts.get("-i"),
           "runlimit_min": runlimit, "runlimit": runlimit * cfg["minute"] if runlimit else None,
           "warn_sig": warn_sig, "warn_time": warn_time, "grace": 10 * cfg["minute"],
           "dep_text": opts.get("-w"), "dep": None, "ti": "-ti" in opts, "hold": "-H" in opts,
           "requeue": parse_requeue(opts["-Q"]) if "-Q" in opts else None,
           "n": slots_requested(opts.get("-n")), "resreq": " ".join(opts.get("-R*", [])) or None,
           "rerunnable": "-r" in opts, "description": opts.get("-Jd", "").strip("'\""),
           "exit_if_cwd_missing": os.environ.get("LSB_EXIT_IF_CWD_NOTEXIST", "").upper() == "Y"}
    if "-w" in opts:
        job["dep"] = parse_dependency(opts["-w"], state, cfg, t, len(indices) if indices else 0)
    return job


def slots_requested(text):
    """-n min[,max] -> number of slots (the double allocates min)."""
    if not text:
        return 1
    m = re.fullmatch(r"(\d+)(?:,(\d+))?", text.strip())
    if not m or int(m.group(1)) < 1:
        raise LsfError("%s: Bad argument for option -n. Job not submitted." % text)
    return int(m.group(1))


def parse_dependency(text, state, cfg, t, child_size):
    """Parse -w and bind every job reference (submission fails for unknown jobs)."""
    try:
        tree = DepParser(text).parse()
    except (ValueError, AttributeError):
        raise LsfError("Dependency condition syntax error. Job not submitted.")
    for ref in dep_refs(tree):
        resolve_ref(ref, state, cfg, t, child_size)
    return tree


def cmd_bsub(argv):
    """bsub [options] [command [args]] | bsub [options] < script."""
    opts, words = parse_bsub_args(argv)
    script = "" if words else sys.stdin.read()
    if not words:
        merged = script_directives(script)
        merged.update(opts)
        opts = merged
    store = Store(state_dir())
    cfg = knobs()
    tries = 0
    while True:
        with store.locked():
            state = store.load()
            state["config"] = cfg
            t = now()
            job = build_job(opts, words, script, state, cfg, t)
            if not over_pending_threshold(state, job, cfg):
                jid = submit_job(store, state, job, t, cfg)
                break
        tries += 1
        wait_for_pending_room(cfg, tries)
    where = "queue" if job["queue_given"] else "default queue"
    print("Job <%d> is submitted to %s <%s>." % (jid, where, job["queue"]))
    return 0


def submit_job(store, state, job, t, cfg):
    """Give the job its id, spool its script, save it and wake mbatchd."""
    jid = allocate_id(state, cfg)
    job["id"] = jid
    job["spool"] = os.path.join(store.dir, "spool", "%d.sh" % jid)
    with open(job["spool"], "w") as handle:
        handle.write(job.pop("script_text"))
    job["elements"] = {str(i): submit_element(job, t) for i in (job["indices"] or [0])}
    state["jobs"][str(jid)] = job
    store.save(state)
    ensure_daemon(store)
    return jid


def pending_counts(state, who):
    """(pending jobs, pending tasks) of a user: every PEND or PSUSP element counts as one job."""
    jobs = tasks = 0
    for job in state["jobs"].values():
        if job["user"] != who:
            continue
        waiting = sum(1 for _, e in elements(job) if e["stat"] in ("PEND", "PSUSP"))
        jobs += waiting
        tasks += waiting * job["n"]
    return jobs, tasks


def over_pending_threshold(state, job, cfg):
    """Would this submission take the user past MAX_PEND_JOBS or MAX_PEND_SLOTS (lsb.users)?
    An array brings one pending job per element."""
    jobs, tasks = pending_counts(state, job["user"])
    count = len(job["indices"] or [0])
    over_jobs = cfg["max_pend_jobs"] is not None and jobs + count > cfg["max_pend_jobs"]
    over_slots = cfg["max_pend_slots"] is not None and tasks + count * job["n"] > cfg["max_pend_slots"]
    return over_jobs or over_slots


def wait_for_pending_room(cfg, tries):
    """bsub retries a submission refused at the pending threshold every SUB_TRY_INTERVAL
    seconds, LSB_NTRIES times (forever when LSB_NTRIES is not set)."""
    limit = os.environ.get("LSB_NTRIES", "").strip()
    if limit.isdigit() and tries >= int(limit):
        raise LsfError("Pending job threshold reached. Job not submitted.")
    interval = cfg["sub_try_interval"]
    print("Pending job threshold reached. Retrying in %g seconds..." % interval, file=sys.stderr)
    sys.stderr.flush()
    time.sleep(interval)


def allocate_id(state, cfg):
    """Next job id (ids only increase)."""
    jid = state.get("next_id") or cfg["first_id"]
    state["next_id"] = jid + 1
    return jid


def submit_element(job, t):
    """Initial element with its 'Submitted from host' bhist event."""
    elem = new_element(t, job["hold"])
    add_event(elem, t, submit_event_text(job))
    if job["hold"]:
        add_event(elem, t, "Suspended by the user or administrator <%s> while pending" % job["user"])
    return elem


def submit_event_text(job):
    """bhist -l 'Submitted from host <h>, to Queue <q>, CWD <...>, ...' line."""
    parts = ["Submitted from host <%s>, to Queue <%s>, CWD <%s>" %
             (job["from_host"], job["queue"], home_relative(job["sub_cwd"]))]
    if job["out"]:
        parts.append("Output File%s <%s>" % (" (overwrite)" if job["out"][1] else "", job["out"][0]))
    if job["err"]:
        parts.append("Error File%s <%s>" % (" (overwrite)" if job["err"][1] else "", job["err"][0]))
    if job["rerunnable"]:
        parts.append("Re-runnable")
    if job["n"] > 1:
        parts.append("%d Task(s)" % job["n"])
    if job["resreq"]:
        parts.append("Requested Resources <%s>" % job["resreq"])
    if job["dep_text"]:
        parts.append("Dependency Condition <%s>" % job["dep_text"])
    return ", ".join(parts)


# --------------------------------------------------------------------------- daemon control

def daemon_pid(store):
    """Pid of the running mbatchd of this state dir, or None."""
    try:
        with open(store.pidfile) as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return pid if pid_alive(pid) else None
    return pid if b"mbatchd" in argv and store.dir.encode() in argv and pid_alive(pid) else None


def ensure_daemon(store):
    """Start mbatchd detached (own session, cwd = state dir) unless it runs, else wake it up
    so it reacts to the change at once. Caller holds the lock."""
    pid = daemon_pid(store)
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, WAKE)
        return
    log = open(os.path.join(store.dir, "mbatchd.log"), "a")
    proc = subprocess.Popen([sys.executable, HERE, "mbatchd", store.dir], cwd=store.dir,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, close_fds=True)
    log.close()
    with open(store.pidfile, "w") as handle:
        handle.write(str(proc.pid))


class Daemon:
    """The mbatchd of the double: dispatches, watches and terminates jobs."""

    def __init__(self, store):
        self.store = store
        self.procs = {}            # (jobid, idx) -> Popen of children started by this daemon
        self.idle_since = None

    def run(self):
        """Poll loop; exits after LSF_DOUBLE_IDLE_EXIT seconds without active jobs."""
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)          # SIGCHLD (a job ended) or WAKE end the sleep
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(WAKE, lambda *_: None)
        while True:
            with self.store.locked():
                if daemon_pid(self.store) != os.getpid():
                    return
                state = self.store.load()
                try:
                    if self.tick(state, now()):
                        self.store.save(state)
                except Exception:               # keep running jobs supervised; log the bug
                    import traceback
                    traceback.print_exc()
                    sys.stderr.flush()
                if self.should_exit(state):
                    os.unlink(self.store.pidfile)
                    return
            if select.select([wake_r], [], [], POLL)[0]:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)

    def tick(self, state, t):
        """One scheduling pass; True when the state changed."""
        cfg = state.get("config") or knobs()
        changed = self.reap(state, t)
        changed |= self.signals(state, cfg, t)
        changed |= self.orphans(state, t)
        changed |= self.dispatch(state, cfg, t)
        return changed

    def should_exit(self, state):
        """Idle means nothing can change without a new command: no job runs and no pending
        job is eligible (pending jobs whose parents never run, orphans, held jobs wait for
        bsub/bresume/brequeue/bkill, which start mbatchd again)."""
        active = bool(self.procs) or any(
            e["stat"] == "RUN" or (e["stat"] == "PEND" and dep_status(j, pos, state) == "ok")
            for j in state["jobs"].values() for pos, (_, e) in enumerate(elements(j)))
        if active:
            self.idle_since = None
            return False
        self.idle_since = self.idle_since or now()
        idle = (state.get("config") or knobs())["idle_exit"]
        return now() - self.idle_since >= idle

    # ---- process exit

    def reap(self, state, t):
        """Collect exited job processes (wait4 gives status and CPU time)."""
        changed = False
        for (jid, idx), proc in list(self.procs.items()):
            try:
                wpid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            except ChildProcessError:
                del self.procs[(jid, idx)]          # reaped elsewhere: lost_jobs() reports it
                continue
            if wpid == 0:
                continue
            del self.procs[(jid, idx)]
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code                  # keeps subprocess from waiting for it again
            code = 128 - code if code < 0 else code  # killed by signal N -> 128+N
            self.job_ended(state, state["jobs"][str(jid)], idx, code, usage.ru_utime + usage.ru_stime, t)
            changed = True
        return changed | self.lost_jobs(state, t)

    def lost_jobs(self, state, t):
        """RUN elements not started by this daemon whose process is gone (daemon was restarted)."""
        changed = False
        for job in state["jobs"].values():
            for idx, elem in elements(job):
                if elem["stat"] == "RUN" and (job["id"], idx) not in self.procs and not pid_alive(elem["pid"]):
                    add_event(elem, t, "Exited. The CPU time used is unknown")
                    add_event(elem, t, completed_text("TERM_ZOMBIE"))
                    finish(elem, t, "EXIT", None, "TERM_ZOMBIE")
                    changed = True
        return changed

    def job_ended(self, state, job, idx, code, cpu, t):
        """Decide DONE / EXIT / requeue for an element whose process exited."""
        elem = job["elements"][str(idx)]
        elem["cpu"] += cpu
        kill = elem["kill"] or {}
        if kill.get("then") in ("PEND", "PSUSP"):
            return requeue_element(job, elem, t, kill["then"])
        reason = kill.get("reason") or ("TERM_RUNLIMIT" if elem["limit_t"] else None)
        cpu_text = "The CPU time used is %.1f seconds" % elem["cpu"]
        if code == 0 and not reason:
            add_event(elem, t, "Done successfully. " + cpu_text)
            add_event(elem, t, "Post job process done successfully")
            return finish(elem, t, "DONE")
        add_event(elem, t, "Exited with exit code %d. %s" % (code, cpu_text))
        if not reason and requeue_wanted(job["requeue"], code) and self.may_requeue(state, elem):
            return requeue_element(job, elem, t, "PEND", automatic=True)
        add_event(elem, t, completed_text(reason))
        finish(elem, t, "EXIT", code, reason)

    def may_requeue(self, state, elem):
        """MAX_JOB_REQUEUE (0 = unlimited) bounds automatic requeue."""
        limit = (state.get("config") or knobs())["max_requeue"]
        return not limit or elem["requeues"] < limit

    # ---- signals: bkill / brequeue sequences, run limits

    def signals(self, state, cfg, t):
        """Advance kill sequences and enforce -W run limits with the -wa warning."""
        changed = False
        for job in state["jobs"].values():
            for idx, elem in elements(job):
                if elem["stat"] != "RUN":
                    continue
                changed |= self.kill_step(elem, cfg, t)
                changed |= self.runlimit_step(job, elem, t)
        return changed

    def kill_step(self, elem, cfg, t):
        """bkill/brequeue: SIGINT, then SIGTERM, then SIGKILL, JOB_TERMINATE_INTERVAL apart."""
        kill = elem["kill"]
        if not kill:
            return False
        sequence = kill.get("signals") or [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
        stage = kill["stage"]
        if stage >= len(sequence) or t < kill["t0"] + stage * cfg["terminate_interval"]:
            return False
        killpg(elem["pgid"], sequence[stage])
        kill["stage"] = stage + 1
        return True

    def runlimit_step(self, job, elem, t):
        """-W: warning action at limit - wt, SIGUSR2 at the limit, SIGKILL ten minutes later."""
        if not job["runlimit"]:
            return False
        elapsed = t - elem["start_time"]
        if job["warn_sig"] and not elem["warned"] and elapsed >= job["runlimit"] - job["warn_time"]:
            killpg(elem["pgid"], job["warn_sig"])
            elem["warned"] = True
            return True
        if not elem["limit_t"] and elapsed >= job["runlimit"]:
            killpg(elem["pgid"], signal.SIGUSR2)
            elem["limit_t"] = t
            return True
        if elem["limit_t"] and t - elem["limit_t"] >= job["grace"] and not elem.get("limit_killed"):
            killpg(elem["pgid"], signal.SIGKILL)
            elem["limit_killed"] = True
            return True
        return False

    # ---- dependencies

    def orphans(self, state, t):
        """Terminate orphans submitted with -ti (repeated so termination cascades)."""
        changed, again = False, True
        while again:
            again = False
            for job in state["jobs"].values():
                if not job["ti"]:
                    continue
                for pos, (idx, elem) in enumerate(elements(job)):
                    if elem["stat"] in ("PEND", "PSUSP") and dep_status(job, pos, state) == "orphan":
                        add_event(elem, t, completed_text("TERM_ORPHAN_SYSTEM"))
                        finish(elem, t, "EXIT", None, "TERM_ORPHAN_SYSTEM")
                        changed = again = True
        return changed

    # ---- dispatch

    def dispatch(self, state, cfg, t):
        """Start eligible PEND elements, oldest queue time first, within slots and throttles."""
        running = [(j, e) for j in state["jobs"].values() for _, e in elements(j) if e["stat"] == "RUN"]
        free = cfg["slots"] - len(running)
        per_job = {j["id"]: running_count(j) for j in state["jobs"].values() if j["throttle"]}
        changed = False
        for job, pos, idx, elem in self.candidates(state):
            if free <= 0:
                break
            if job["throttle"] and per_job[job["id"]] >= job["throttle"]:
                continue
            if dep_status(job, pos, state) != "ok":
                continue
            if self.start(job, idx, elem, t):
                free -= 1
                per_job[job["id"]] = per_job.get(job["id"], 0) + 1
            changed = True
        return changed

    def candidates(self, state):
        """PEND elements ordered by queue time (requeued jobs go behind)."""
        out = [(e["queue_time"], j["id"], idx, j, pos, e) for j in state["jobs"].values()
               for pos, (idx, e) in enumerate(elements(j)) if e["stat"] == "PEND"]
        return [(j, pos, idx, e) for _, _, idx, j, pos, e in sorted(out, key=lambda x: x[:3])]

    def start(self, job, idx, elem, t):
        """Dispatch one element: run the spooled script with /bin/bash in its own process group."""
        cwd = exec_cwd(job, idx)
        if cwd is None:
            add_event(elem, t, "Exited with exit code 2. The CPU time used is unknown")
            add_event(elem, t, completed_text("TERM_CWD_NOTEXIST"))
            finish(elem, t, "EXIT", 2, "TERM_CWD_NOTEXIST")
            return False
        stdout, stderr, stdin = open_streams(job, idx, cwd, self.store.dir)
        try:
            proc = subprocess.Popen(["/bin/bash", job["spool"]], cwd=cwd, env=job_env(job, idx, cwd),
                                    stdin=stdin, stdout=stdout, stderr=stderr, preexec_fn=default_signals,
                                    start_new_session=True, close_fds=True)
        finally:
            for handle in {stdout, stderr, stdin}:
                if hasattr(handle, "close"):
                    handle.close()
        self.procs[(job["id"], idx)] = proc
        set_stat(elem, "RUN", t)
        elem.update(pid=proc.pid, pgid=proc.pid, start_time=t, exec_cwd=cwd, limit_t=None,
                    warned=False, limit_killed=False, exit_code=None, exit_reason=None)
        elem["runs"] += 1
        for text in dispatch_events(job, proc.pid, cwd):
            add_event(elem, t, text)
        return True


def completed_text(reason):
    """bhist 'Completed <exit>[; TERM_X: text.]' line."""
    if not reason:
        return "Completed <exit>"
    return "Completed <exit>; %s: %s." % (reason, TERM_TEXT.get(reason, ""))


def dispatch_events(job, pid, cwd):
    """bhist lines written at dispatch."""
    host = hostname()
    if job["n"] > 1:
        where = "Dispatched %d Task(s) on Host(s) <%d*%s>, Allocated %d Slot(s) on Host(s) <%d*%s>" % (
            job["n"], job["n"], host, job["n"], job["n"], host)
    else:
        where = "Dispatched to <%s>" % host
    return [where + ", Effective RES_REQ <%s>" % RES_REQ, "Starting (Pid %d)" % pid,
            "Running with execution home <%s>, Execution CWD <%s>, Execution Pid <%d>"
            % (os.path.expanduser("~"), cwd, pid)]


def requeue_element(job, elem, t, stat, automatic=False):
    """Put a RUN/DONE/EXIT element back to PEND (or PSUSP): same job id, same submit time."""
    add_event(elem, t, "Pending: Job has been requeued")
    elem["requeues"] += 1 if automatic else 0
    set_stat(elem, stat, t)
    elem.update(queue_time=t, pid=None, kill=None, finish_time=None, exit_code=None,
                exit_reason=None, limit_t=None, warned=False)
    if stat == "PSUSP":
        add_event(elem, t, "Suspended by the user or administrator <%s> while pending" % job["user"])


def substitute(pattern, job, idx, extra=None):
    """%J / %I (and for -cwd %U %P %G) dynamic patterns."""
    values = {"J": str(job["id"]), "I": str(idx)}
    values.update(extra or {})
    return re.sub(r"%([A-Z])", lambda m: values.get(m.group(1), m.group(0)), pattern)


def exec_cwd(job, idx):
    """Execution directory: -cwd (relative to the submission cwd) or the submission cwd.
    A missing directory runs the job in /tmp (LSB_EXIT_IF_CWD_NOTEXIST=Y: exit 2)."""
    cwd = job["sub_cwd"]
    if job["cwd_spec"]:
        extra = {"U": job["user"], "P": job["project"], "G": job["group"] or ""}
        cwd = os.path.join(job["sub_cwd"], substitute(job["cwd_spec"], job, idx, extra))
    cwd = os.path.normpath(cwd)
    if os.path.isdir(cwd):
        return cwd
    return None if job["exit_if_cwd_missing"] else tempfile.gettempdir()


def output_path(spec, job, idx, cwd):
    """Resolve -o/-e: %J/%I, relative to the job cwd, a directory means <dir>/<jobid>.out."""
    path = os.path.join(cwd, substitute(spec, job, idx))
    if os.path.isdir(path):
        leaf = "%d_%d" % (job["id"], idx) if job["indices"] else str(job["id"])
        path = os.path.join(path, leaf + ".out")
    return path


def open_streams(job, idx, cwd, statedir):
    """stdout/stderr/stdin of a job. -o without -e also takes stderr (LSF rule);
    without -o the output goes to <state dir>/output (LSF would mail it)."""
    leaf = "%d.%d" % (job["id"], idx) if job["indices"] else str(job["id"])
    fallback = os.path.join(statedir, "output", leaf)

    def opener(spec, suffix):
        """Open -o/-e (append, or truncate for -oo/-eo); fall back to the state dir."""
        if spec:
            try:
                return open(output_path(spec[0], job, idx, cwd), "w" if spec[1] else "a")
            except OSError:
                pass
        return open(fallback + suffix, "a")
    stdout = opener(job["out"], ".out")
    stderr = opener(job["err"], ".err") if job["err"] or not job["out"] else stdout
    stdin = subprocess.DEVNULL
    if job["infile"]:
        try:
            stdin = open(os.path.join(cwd, substitute(job["infile"], job, idx)))
        except OSError:
            stdin = subprocess.DEVNULL
    return stdout, stderr, stdin


def job_env(job, idx, cwd):
    """Environment of the job: bsub's environment (per -env) plus the LSB_* variables."""
    env = submit_env(job)
    host = hostname()
    hostfile = os.path.join(os.path.dirname(job["spool"]), "%d.%d.hosts" % (job["id"], idx))
    with open(hostfile, "w") as handle:
        handle.write((host + "\n") * job["n"])
    env.update({"LSB_JOBID": str(job["id"]), "LSB_JOBINDEX": str(idx),
                "LSB_JOBNAME": element_name(job, idx), "LS_SUBCWD": job["sub_cwd"],
                "LSB_QUEUE": job["queue"], "LSB_HOSTS": " ".join([host] * job["n"]),
                "LSB_MCPU_HOSTS": "%s %d" % (host, job["n"]), "LSB_DJOB_HOSTFILE": hostfile,
                "LSB_DJOB_NUMPROC": str(job["n"]), "LSB_SUB_HOST": job["from_host"],
                "LS_EXECCWD": cwd, "PWD": cwd})
    if job["indices"]:
        env["LSB_JOBINDEX_END"] = str(max(job["indices"]))
    return env


def submit_env(job):
    """Apply bsub -env: all (default), none, 'all, ~VAR', 'VAR1, VAR2=value'."""
    items = [s.strip() for s in job["env_opt"].split(",") if s.strip()]
    base = dict(job["env"]) if ("all" in items or not items) else {}
    for item in items:
        if item in ("all", "none"):
            continue
        if item.startswith("~"):
            base.pop(item[1:], None)
        elif "=" in item:
            key, value = item.split("=", 1)
            base[key] = value
        elif item in job["env"]:
            base[item] = job["env"][item]
    return base


def cmd_mbatchd(argv):
    """Daemon entry point: 'lsf_double.py mbatchd <statedir>'."""
    store = Store(os.path.abspath(argv[0]))
    os.chdir(store.dir)
    Daemon(store).run()
    return 0


# --------------------------------------------------------------------------- display values

def exit_reason_text(elem):
    """bjobs EXIT_REASON: 'TERM_OWNER: job killed by owner' (empty when none)."""
    reason = elem["exit_reason"]
    return "%s: %s" % (reason, TERM_TEXT.get(reason, "")) if reason else ""


def running_count(job):
    """Number of RUN elements of a job (array throttle %K)."""
    return sum(1 for e in job["elements"].values() if e["stat"] == "RUN")


def pend_reason(job, pos, elem, state, running=None):
    """bjobs PEND_REASON for PEND/PSUSP elements (running: RUN elements of the job, if known)."""
    if elem["stat"] == "PSUSP":
        return PEND_HELD
    if elem["stat"] != "PEND":
        return ""
    status = dep_status(job, pos, state)
    if status == "orphan":
        return PEND_ORPHAN
    if status == "wait":
        return PEND_DEP
    if job["throttle"] and (running_count(job) if running is None else running) >= job["throttle"]:
        return PEND_THROTTLE
    return PEND_REQUEUED if elem["runs"] else PEND_NEW


def duration(seconds, hms):
    """Run-time style values: 'N second(s)' or hh:mm:ss with -hms."""
    seconds = int(round(seconds))
    if hms:
        return "%02d:%02d:%02d" % (seconds // 3600, seconds % 3600 // 60, seconds % 60)
    return "%d second(s)" % seconds


def finish_time_text(job, elem):
    """FINISH_TIME: actual time of finished jobs, estimate for running jobs with -W; ' L'
    marks a run limit without a run-time estimate (bjobs -WF convention)."""
    suffix = " L" if job["runlimit"] else ""
    if elem["finish_time"]:
        return short_time(elem["finish_time"]) + suffix
    if elem["stat"] == "RUN" and job["runlimit"]:
        return short_time(elem["start_time"] + job["runlimit"]) + suffix
    return ""


def field_values(job, pos, idx, elem, state, t, hms, running=None):
    """All bjobs -o fields of one element (raw strings; empty = not applicable)."""
    running = elem["stat"] == "RUN"
    run_seconds = elem["acc"]["RUN"] + (t - elem["since"] if running else 0.0)
    host = hostname() if elem["start_time"] else ""
    limit = job["runlimit_min"]
    return {
        "jobid": str(job["id"]), "jobindex": str(idx), "stat": elem["stat"], "user": job["user"],
        "user_group": job["group"] or "", "queue": job["queue"], "job_name": element_name(job, idx),
        "proj_name": job["project"], "command": job["command"], "pend_reason": pend_reason(job, pos, elem, state, running),
        "exit_code": "" if elem["stat"] != "EXIT" or elem["exit_code"] is None else str(elem["exit_code"]),
        "exit_reason": exit_reason_text(elem), "kill_reason": "", "suspend_reason": "",
        "from_host": job["from_host"], "first_host": host,
        "exec_host": ":".join([host] * job["n"]) if host else "", "nexec_host": "1" if host else "",
        "submit_time": short_time(job["submit_time"]),
        "start_time": short_time(elem["start_time"]) if elem["start_time"] else "",
        "finish_time": finish_time_text(job, elem), "dependency": job["dep_text"] or "",
        "slots": str(job["n"]), "nreq_slot": str(job["n"]), "sub_cwd": home_relative(job["sub_cwd"]),
        "exec_cwd": elem["exec_cwd"] or "", "exec_home": os.path.expanduser("~") if host else "",
        "output_file": job["out"][0] if job["out"] else "", "error_file": job["err"][0] if job["err"] else "",
        "input_file": job["infile"] or "", "pids": str(elem["pid"]) if running else "",
        "run_time": duration(run_seconds, hms), "cpu_used": duration(elem["cpu"], hms),
        "runtimelimit": ("" if not limit else duration(limit * 60, True) if hms else "%.1f" % limit),
        "time_left": "", "effective_resreq": RES_REQ if host else "",
        "combined_resreq": job["resreq"] or "", "job_description": job.get("description") or "",
        "application": "",
        "job_group": "", "job_priority": "", "nthreads": "",
    }


FIELD_ALIASES = {"id": "jobid", "name": "job_name", "proj": "proj_name", "project": "proj_name",
                 "ugroup": "user_group", "cmd": "command", "eresreq": "effective_resreq",
                 "cresreq": "combined_resreq", "description": "job_description", "app": "application",
                 "group": "job_group", "priority": "job_priority", "runtime": "run_time"}
FIELD_WIDTH = {"jobid": 7, "jobindex": 8, "stat": 5, "user": 7, "user_group": 15, "queue": 10,
               "job_name": 10, "proj_name": 11, "command": 15, "pend_reason": 11, "exit_code": 9,
               "exit_reason": 50, "from_host": 11, "first_host": 11, "exec_host": 11,
               "submit_time": 15, "start_time": 15, "finish_time": 16, "dependency": 15}


# --------------------------------------------------------------------------- bjobs

def parse_format(text):
    """bjobs -o "field[:[-][width]][:unit] ... [delimiter='c']" -> (columns, delimiter)."""
    delim = " "
    m = re.search(r"delimiter=(['\"])(.*?)\1", text)
    if m:
        delim, text = m.group(2), text[:m.start()] + text[m.end():]
    columns = []
    for item in text.split():
        parts = item.split(":")
        name = FIELD_ALIASES.get(parts[0].lower(), parts[0].lower())
        if name not in FIELD_WIDTH and name not in field_values_names():
            raise LsfError("%s: Illegal field name in -o output format." % parts[0])
        width, right = None, False
        if len(parts) > 1:
            spec = parts[1]
            right = spec.startswith("-")
            spec = spec.lstrip("-")
            width = int(spec) if spec.isdigit() else FIELD_WIDTH.get(name, 15)
        columns.append((name, width, right))
    return columns, delim


def field_values_names():
    """Field names bjobs -o knows (from a dummy element)."""
    job = {"id": 0, "name": "", "indices": None, "user": "", "group": None, "queue": "",
           "project": "", "command": "", "from_host": "", "submit_time": 0, "dep_text": None,
           "n": 1, "sub_cwd": "/", "out": None, "err": None, "infile": None, "runlimit": None,
           "runlimit_min": None, "resreq": None, "throttle": None}
    elem = new_element(0, False)
    elem["stat"] = "DONE"
    return set(field_values(job, 0, 0, elem, {"jobs": {}}, 0, False))


def fit(value, width, right, name):
    """Apply an -o column width: JOB_NAME keeps its end behind '*', others lose their end."""
    if width is None:
        return value
    if len(value) > width:
        value = ("*" + value[-(width - 1):]) if name == "job_name" else value[:width]
    return value.rjust(width) if right else value.ljust(width)


def bjobs_selection(args, state, cfg, t):
    """Rows (job, pos, idx, elem) selected by ids/filters, plus the not-found messages."""
    rows, missing = [], []
    if args["ids"]:
        for text in args["ids"]:
            found = select_by_id(text, state, cfg, t)
            if found is None:
                missing.append(text)
            rows.extend(found or [])
        return rows, missing
    for job in sorted(state["jobs"].values(), key=lambda j: j["id"]):
        for pos, (idx, elem) in enumerate(elements(job)):
            if visible(elem, cfg["clean_period"], t) and state_filter(args, elem) and attr_filter(args, job):
                rows.append((job, pos, idx, elem))
    return rows, missing


def select_by_id(text, state, cfg, t):
    """Elements for one job id argument ('1234', '1234[7]'); None when LSF cannot find it."""
    try:
        jid, indices = parse_jobid_arg(text)
    except ValueError:
        return None
    job = state["jobs"].get(str(jid))
    if not job:
        return None
    positions = {idx: pos for pos, (idx, _) in enumerate(elements(job))}
    rows = [(job, positions[idx], idx, e) for idx, e in pick(job, indices)
            if visible(e, cfg["clean_period"], t)]
    return rows or None


def state_filter(args, elem):
    """-a (all), -d (finished), -r (running), -p (pending), -s (suspended); default unfinished."""
    stat = elem["stat"]
    wanted = set()
    if args["a"]:
        return True
    if args["d"]:
        wanted |= set(FINISHED)
    if args["r"]:
        wanted.add("RUN")
    if args["p"]:
        wanted |= {"PEND", "PSUSP"}
    if args["s"]:
        wanted.add("PSUSP")
    return stat in (wanted or set(UNFINISHED))


def attr_filter(args, job):
    """-q queue and -J name filters (name may end in '*')."""
    if args["q"] and job["queue"] != args["q"]:
        return False
    return not args["J"] or name_matches(args["J"], job["name"])


def parse_bjobs_args(argv):
    """bjobs option parser."""
    args = {k: False for k in ("a", "d", "r", "p", "s", "w", "l", "json", "noheader", "hms", "UF")}
    args.update(o=None, q=None, J=None, ids=[])
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-o", "-q", "-J", "-u", "-m", "-P", "-G", "-g", "-app", "-sla"):
            if i + 1 >= len(argv):
                raise LsfError("bjobs: option requires an argument -- %s" % word[1:])
            if word[1:] in args:
                args[word[1:]] = argv[i + 1]
            i += 2
            continue
        if word.startswith("-") and word[1:] in args and word[1:] not in ("ids",):
            args[word[1:]] = True
        elif word in ("-A", "-x", "-X", "-W", "-WF", "-WL", "-WP", "-aps", "-ss"):
            pass
        elif word.startswith("-") and not word.startswith("-p"):
            raise LsfError("bjobs: illegal option -- %s" % word.lstrip("-"))
        elif word.startswith("-p"):
            args["p"] = True
        else:
            args["ids"].append(word)
        i += 1
    if args["json"] and args["noheader"]:
        raise LsfError("bjobs: -json cannot be used with -noheader.")
    if args["json"] and not args["o"]:
        args["o"] = os.environ.get("LSB_BJOBS_FORMAT") or None
    return args


def cmd_bjobs(argv):
    """bjobs [-a|-d|-r|-p|-s] [-w] [-l] [-o fmt [-json|-noheader]] [-hms] [job_ID ...]."""
    args = parse_bjobs_args(argv)
    store = Store(state_dir())
    cfg = knobs()
    with store.locked():
        state = store.load()
    t = now()
    rows, missing = bjobs_selection(args, state, cfg, t)
    if args["o"]:
        print_custom(args, rows, missing, state, t)
    elif args["l"]:
        print_bjobs_long(rows, missing, state, t, args["UF"])
    else:
        print_default(args, rows, missing, state)
    return bjobs_status(args, rows, missing)


def bjobs_status(args, rows, missing):
    """255 when only unknown ids were given (or, with LSB_BJOBS_CONSISTENT_EXIT_CODE=Y,
    when no unfinished job / any unknown id); 0 otherwise."""
    if os.environ.get("LSB_BJOBS_CONSISTENT_EXIT_CODE", "").upper() == "Y":
        return 255 if missing or not rows else 0
    return 255 if missing and not rows else 0


def no_job_message(args):
    """Message when nothing matches and no ids were given."""
    return "No job found" if (args["a"] or args["d"]) else "No unfinished job found"


def print_default(args, rows, missing, state):
    """Default bjobs table."""
    for text in missing:
        print("Job <%s> is not found" % text.strip('"'), file=sys.stderr)
    if not rows:
        if not missing:
            print(no_job_message(args), file=sys.stderr)
        return
    print("JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME")
    for job, pos, idx, elem in rows:
        name = element_name(job, idx)
        if not args["w"] and len(name) > 10:
            name = "*" + name[-9:]
        host = ("%d*%s" % (job["n"], hostname()) if job["n"] > 1 else hostname()) if elem["start_time"] else ""
        line = "%-7s %-7s %-5s %-10s %-11s %-11s %-10s %s" % (
            job["id"], job["user"], elem["stat"], job["queue"], job["from_host"], host, name,
            short_time(job["submit_time"]))
        print(line.rstrip())


def print_custom(args, rows, missing, state, t):
    """bjobs -o (text or -json)."""
    columns, delim = parse_format(args["o"])
    counts = {j["id"]: running_count(j) for j, _, _, _ in rows}
    records = [field_values(j, pos, idx, e, state, t, args["hms"], counts[j["id"]]) for j, pos, idx, e in rows]
    if args["json"]:
        print(json_output(columns, records, missing))
        return
    for text in missing:
        print("Job <%s> is not found" % text.strip('"'), file=sys.stderr)
    if not rows and not missing:
        print(no_job_message(args), file=sys.stderr)
        return
    if rows and not args["noheader"]:
        print(delim.join(fit(n.upper(), w, r, n) for n, w, r in columns).rstrip())
    for rec in records:
        print(delim.join(fit(rec[n] or "-", w, r, n) for n, w, r in columns).rstrip())


def json_string(value):
    """JSON string the way LSF writes it (slashes escaped as '\\/')."""
    return json.dumps(value).replace("/", "\\/")


def json_output(columns, records, missing):
    """bjobs -o ... -json document: COMMAND, JOBS, RECORDS (unknown ids -> ERROR records)."""
    lines = ["{", '  "COMMAND":"bjobs",', '  "JOBS":%d,' % (len(records) + len(missing)), '  "RECORDS":[']
    blocks = []
    for rec in records:
        body = ",\n".join('      %s:%s' % (json_string(n.upper()), json_string(rec[n])) for n, _, _ in columns)
        blocks.append("    {\n%s\n    }" % body)
    for text in missing:
        blocks.append('    {\n      "ERROR":%s\n    }' % json_string("Job <%s> is not found" % text.strip('"')))
    if blocks:
        lines.append(",\n".join(blocks))
    lines += ["  ]", "}"]
    return "\n".join(lines)


def print_bjobs_long(rows, missing, state, t, unformatted):
    """bjobs -l: header line, event history, pending reasons."""
    for text in missing:
        print("Job <%s> is not found" % text.strip('"'), file=sys.stderr)
    blocks = []
    for job, pos, idx, elem in rows:
        head = header_line(job, idx).replace(", Command <", ", Status <%s>, Queue <%s>, Command <" % (
            elem["stat"], job["queue"]), 1)
        lines = [head] + ["%s: %s;" % (event_time(et), text) for et, text in elem["events"]]
        reason = pend_reason(job, pos, elem, state)
        body = "\n".join(l if unformatted else wrap79(l) for l in lines)
        if reason:
            body += "\n PENDING REASONS:\n %s" % reason
        blocks.append("\n" + body + "\n")
    if blocks:
        print(("\n" + DASHES + "\n").join(blocks))


# --------------------------------------------------------------------------- bhist

def header_line(job, idx):
    """bhist -l first line: Job <id>, [Job Name <n>,] User <u>, Project <p>, Command <c>."""
    parts = ["Job <%s>" % element_label(job, idx)]
    if job["named"]:
        parts.append("Job Name <%s>" % element_name(job, idx))
    parts += ["User <%s>" % job["user"], "Project <%s>" % job["project"]]
    if job["group"]:
        parts.append("User Group <%s>" % job["group"])
    parts.append("Command <%s>" % job["command"])
    return ", ".join(parts)


def summary_lines(elem, t):
    """'Summary of time in seconds spent in various states by  <ctime>' table."""
    acc = dict(elem["acc"])
    until = elem["finish_time"] or t
    if elem["stat"] in acc:
        acc[elem["stat"]] += max(0.0, until - elem["since"])
    values = [acc["PEND"], acc["PSUSP"], acc["RUN"], 0, 0, 0]
    values = [int(round(v)) for v in values]
    cells = "".join("%-9d" % v for v in values) + "%-12d" % sum(values)
    return ["Summary of time in seconds spent in various states by  %s" % time.ctime(until),
            "  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL",
            "  " + cells.rstrip()]


def bhist_block(job, idx, elem, t, unformatted):
    """One job's bhist -l section."""
    lines = [header_line(job, idx)]
    lines += ["%s: %s;" % (event_time(et), text) if not text.endswith(".") else
              "%s: %s" % (event_time(et), text) for et, text in elem["events"]]
    wrapped = [l if unformatted else wrap79(l) for l in lines]
    return "\n".join(wrapped) + "\n\n" + "\n".join(summary_lines(elem, t))


def bhist_short(rows, t):
    """bhist without -l: the per-job time summary table."""
    out = ["Summary of time in seconds spent in various states:",
           "JOBID   USER    JOB_NAME  PEND    PSUSP   RUN     USUSP   SSUSP   UNKWN   TOTAL"]
    for job, idx, elem in rows:
        acc = dict(elem["acc"])
        if elem["stat"] in acc:
            acc[elem["stat"]] += max(0.0, (elem["finish_time"] or t) - elem["since"])
        vals = [int(round(acc["PEND"])), int(round(acc["PSUSP"])), int(round(acc["RUN"])), 0, 0, 0]
        name = element_name(job, idx)
        name = name if len(name) <= 9 else "*" + name[-8:]
        out.append(("%-7s %-7s %-9s " % (element_label(job, idx), job["user"][:7], name)
                    + "".join("%-8d" % v for v in vals) + "%-10d" % sum(vals)).rstrip())
    return "\n".join(out)


def parse_bhist_args(argv):
    """bhist option parser (-l, -a, -d, -e, -p, -r, -s, -w, -b, -UF, -n N, -J name, -u user)."""
    args = {"l": False, "a": False, "d": False, "e": False, "p": False, "r": False, "s": False,
            "UF": False, "J": None, "ids": []}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-n", "-J", "-u", "-q", "-m", "-P", "-f", "-C", "-D", "-S", "-N", "-T", "-G", "-g"):
            if i + 1 >= len(argv):
                raise LsfError("bhist: option requires an argument -- %s" % word[1:])
            if word == "-J":
                args["J"] = argv[i + 1]
            i += 2
            continue
        if word.startswith("-") and word[1:] in args:
            args[word[1:]] = True
        elif word in ("-w", "-b", "-t", "-A"):
            pass
        elif word.startswith("-"):
            raise LsfError("bhist: illegal option -- %s" % word.lstrip("-"))
        else:
            args["ids"].append(word)
        i += 1
    return args


def bhist_rows(args, state):
    """Elements bhist reports: every job ever submitted when ids are given (no CLEAN_PERIOD)."""
    rows = []
    if args["ids"]:
        for text in args["ids"]:
            try:
                jid, indices = parse_jobid_arg(text)
            except ValueError:
                continue
            job = state["jobs"].get(str(jid))
            if job:
                rows.extend((job, idx, e) for idx, e in pick(job, indices))
        return rows
    for job in sorted(state["jobs"].values(), key=lambda j: j["id"]):
        if args["J"] and not name_matches(args["J"], job["name"]):
            continue
        for idx, elem in elements(job):
            if bhist_state_ok(args, elem):
                rows.append((job, idx, elem))
    return rows


def bhist_state_ok(args, elem):
    """Default: unfinished jobs; -a all; -d DONE/EXIT; -e EXIT; -p/-r/-s by state."""
    stat = elem["stat"]
    if args["a"]:
        return True
    wanted = set()
    wanted |= set(FINISHED) if args["d"] else set()
    wanted |= {"EXIT"} if args["e"] else set()
    wanted |= {"PEND"} if args["p"] else set()
    wanted |= {"RUN"} if args["r"] else set()
    wanted |= {"PSUSP"} if args["s"] else set()
    return stat in (wanted or set(UNFINISHED))


def cmd_bhist(argv):
    """bhist [-l] [-n N] [-a|-d|-e|-p|-r|-s] [job_ID | "job_ID[index]" ...]."""
    args = parse_bhist_args(argv)
    store = Store(state_dir())
    with store.locked():
        state = store.load()
    t = now()
    rows = bhist_rows(args, state)
    if not rows:
        print("No matching job found")
        return 255
    if args["l"]:
        blocks = [bhist_block(job, idx, elem, t, args["UF"]) for job, idx, elem in rows]
        print("\n" + ("\n\n" + DASHES + "\n\n").join(blocks) + "\n")
    else:
        print(bhist_short(rows, t))
    return 0


# --------------------------------------------------------------------------- bkill / bresume / brequeue

def control_targets(ids, state, cfg, t, allow_zero):
    """Resolve job arguments of bkill/bresume/brequeue -> [(label, job, [(idx, elem)]) | (label, None, None)]."""
    out = []
    for text in ids:
        if allow_zero and text == "0":
            for job in sorted(state["jobs"].values(), key=lambda j: j["id"]):
                elems = [(i, e) for i, e in elements(job) if e["stat"] in UNFINISHED]
                if elems:
                    out.append((str(job["id"]), job, elems))
            continue
        try:
            jid, indices = parse_jobid_arg(text)
        except ValueError:
            out.append((text, None, None))
            continue
        job = state["jobs"].get(str(jid))
        elems = [(i, e) for i, e in pick(job, indices) if visible(e, cfg["clean_period"], t)] if job else []
        out.append((text.strip('"'), job if elems else None, elems or None))
    return out


def control_command(argv, action, allow_zero=True):
    """Shared driver: lock, resolve targets, apply action per target, print, exit status."""
    store = Store(state_dir())
    cfg = knobs()
    ok = False
    with store.locked():
        state = store.load()
        state["config"] = cfg
        t = now()
        targets = control_targets(argv, state, cfg, t, allow_zero)
        if allow_zero and "0" in argv and not targets:
            print("No unfinished job found", file=sys.stderr)
        for label, job, elems in targets:
            if job is None:
                print("Job <%s>: No matching job found" % label, file=sys.stderr)
                continue
            ok |= action(label, job, elems, t)
        store.save(state)
        ensure_daemon(store)
    return 0 if ok else 255


def split_flags(argv, flags, with_arg=()):
    """Separate leading option flags from job id arguments."""
    found, ids, i = {}, [], 0
    while i < len(argv):
        word = argv[i]
        if word in with_arg and i + 1 < len(argv):
            found[word] = argv[i + 1]
            i += 2
            continue
        if word in flags:
            found[word] = True
        elif word.startswith("-") and word != "-":
            raise LsfError("illegal option -- %s" % word.lstrip("-"))
        else:
            ids.append(word)
        i += 1
    return found, ids


def cmd_bkill(argv):
    """bkill [-s signal] [-r] job_ID ... | 0 | "job_ID[index]": INT, TERM, then KILL."""
    flags, ids = split_flags(argv, {"-r", "-l"}, ("-s", "-C", "-J", "-q", "-u", "-m", "-g", "-app", "-sla", "-stat"))
    if "-l" in flags:
        print(" ".join(s.name[3:] for s in signal.Signals if not s.name.startswith("SIG_")))
        return 0
    if not ids:
        raise LsfError("bkill: a job ID (or 0) is required by the LSF test double")
    sig = None
    if "-s" in flags:
        try:
            sig = signal_number(flags["-s"])
        except ValueError:
            raise LsfError("%s: Illegal signal value" % flags["-s"])
    return control_command(ids, lambda *a: kill_target(*a, sig=sig, force="-r" in flags))


def kill_target(label, job, elems, t, sig=None, force=False):
    """Kill (or signal) the selected elements; messages as bkill prints them."""
    live = [(i, e) for i, e in elems if e["stat"] in UNFINISHED]
    if not live:
        print("Job <%s>: Job has already finished" % label, file=sys.stderr)
        return False
    for idx, elem in live:
        if sig is None:
            kill_element(job, elem, t, force)
        elif elem["stat"] == "RUN":
            add_event(elem, t, "Signal <%s> requested by user or administrator <%s>"
                      % (signal_name(sig), job["user"]))
            killpg(elem["pgid"], sig)
    print("Job <%s> is being %s" % (label, "signaled" if sig is not None else "terminated"))
    return True


def kill_element(job, elem, t, force):
    """Pending/held: removed at once. Running: signal sequence, EXIT/TERM_OWNER when it dies."""
    add_event(elem, t, "Signal <KILL> requested by user or administrator <%s>" % job["user"])
    if elem["stat"] != "RUN":
        add_event(elem, t, completed_text("TERM_OWNER"))
        return finish(elem, t, "EXIT", None, "TERM_OWNER")
    if force:
        killpg(elem["pgid"], signal.SIGKILL)
        elem["kill"] = {"reason": "TERM_FORCE_OWNER", "t0": t, "stage": 1, "signals": [signal.SIGKILL]}
        return None
    if not (elem["kill"] or {}).get("reason"):     # a pending brequeue becomes a kill
        elem["kill"] = {"reason": "TERM_OWNER", "t0": t, "stage": 0}


def cmd_bresume(argv):
    """bresume job_ID ... | 0: PSUSP -> PEND (no effect on other unfinished states)."""
    flags, ids = split_flags(argv, set(), ("-J", "-q", "-u", "-m", "-g", "-app", "-sla", "-C"))
    if not ids:
        raise LsfError("bresume: a job ID (or 0) is required by the LSF test double")
    return control_command(ids, resume_target)


def resume_target(label, job, elems, t):
    """Release held elements."""
    if not any(e["stat"] in UNFINISHED for _, e in elems):
        print("Job <%s>: Job has already finished" % label, file=sys.stderr)
        return False
    for idx, elem in elems:
        if elem["stat"] == "PSUSP":
            add_event(elem, t, "Job resumed by the user or administrator <%s>" % job["user"])
            set_stat(elem, "PEND", t)
    print("Job <%s> is being resumed" % label)
    return True


def cmd_brequeue(argv):
    """brequeue [-a] [-d] [-e] [-r] [-p] [-H] job_ID ...: kill and requeue, same job id."""
    flags, ids = split_flags(argv, {"-a", "-d", "-e", "-r", "-p", "-H"}, ("-J", "-u"))
    if not ids:
        raise LsfError("brequeue: a job ID is required by the LSF test double")
    wanted = set()
    wanted |= {"DONE", "EXIT", "RUN", "PEND"} if "-a" in flags else set()
    wanted |= {"DONE"} if "-d" in flags else set()
    wanted |= {"EXIT"} if "-e" in flags else set()
    wanted |= {"PEND"} if "-p" in flags else set()
    wanted |= {"RUN"} if ("-r" in flags or not wanted) else set()
    target = "PSUSP" if "-H" in flags else "PEND"
    return control_command(ids, lambda *a: requeue_target(*a, wanted=wanted, target=target),
                           allow_zero=False)


def requeue_target(label, job, elems, t, wanted, target):
    """Requeue the selected elements whose state the flags allow."""
    chosen = [(i, e) for i, e in elems if e["stat"] in wanted]
    if not chosen:
        stats = {e["stat"] for _, e in elems}
        message = "Job has already finished" if stats <= set(FINISHED) else "Job has not started yet"
        print("Job <%s>: %s" % (label, message), file=sys.stderr)
        return False
    for idx, elem in chosen:
        add_event(elem, t, "Signal <REQUEUE_%s> requested by user or administrator <%s>" % (target, job["user"]))
        if elem["stat"] == "RUN":
            elem["kill"] = {"then": target, "t0": t, "stage": 0}
        else:
            requeue_element(job, elem, t, target)
    print("Job <%s> is being requeued" % label)
    return True


# --------------------------------------------------------------------------- busers

# busers -w (IBM Spectrum LSF 10.1 command reference, "busers"; release notes of 10.1.0.3,
# "Command output formatting: New output fields for busers -w"): PEND is the tasks of the user's
# pending jobs, MPEND the pending job slot threshold (MAX_PEND_SLOTS in lsb.users), PJOBS the
# user's pending jobs, MPJOBS the pending job threshold (MAX_PEND_JOBS in lsb.users); "-" means
# no threshold. https://www.ibm.com/docs/en/SSWRJV_10.1.0/lsf_release_notes/lsf_relnotes_cmdout10.1.0.3.html
BUSERS_COLUMNS = ("JL/P", "MAX", "NJOBS", "PEND", "RUN", "SSUSP", "USUSP", "RSV")
BUSERS_WIDE = ("MPEND", "PJOBS", "MPJOBS")


def cmd_busers(argv):
    """busers [-w] [user_name ... | all]: the one user of this cluster, with its thresholds."""
    wide = False
    names = []
    for word in argv:
        if word == "-w":
            wide = True
        elif word.startswith("-"):
            raise LsfError("busers: illegal option -- %s" % word.lstrip("-"), status=1)
        else:
            names.append(word)
    me = user()
    unknown = [n for n in names if n not in (me, "all")]
    for name in unknown:
        print("%s: No such user or user group" % name, file=sys.stderr)
    if names and len(unknown) == len(names):
        return 255
    store = Store(state_dir())
    cfg = knobs()
    with store.locked():
        state = store.load()
    print(busers_row("USER/GROUP", BUSERS_COLUMNS + (BUSERS_WIDE if wide else ())))
    print(busers_row(me, busers_values(state, me, cfg, wide)))
    return 0


def busers_values(state, who, cfg, wide):
    """The row of one user: counts of tasks (slots) by state, then the pending thresholds."""
    pend_jobs, pend_tasks = pending_counts(state, who)
    running = sum(job["n"] for job in state["jobs"].values() if job["user"] == who
                  for _, e in elements(job) if e["stat"] == "RUN")
    row = ("-", "-", pend_tasks + running, pend_tasks, running, 0, 0, 0)
    if wide:
        row += (threshold(cfg.get("max_pend_slots")), pend_jobs, threshold(cfg.get("max_pend_jobs")))
    return row


def threshold(value):
    return "-" if value is None else value


def busers_row(name, values):
    """USER/GROUP left-aligned in 17 columns, every count right-aligned in 7 (as the
    documentation's examples: "USER/GROUP          JL/P    MAX  NJOBS   PEND")."""
    return "%-17s" % name + "".join("%7s" % value for value in values)


# --------------------------------------------------------------------------- entry point

COMMANDS = {"bsub": cmd_bsub, "bjobs": cmd_bjobs, "bhist": cmd_bhist, "bkill": cmd_bkill,
            "bresume": cmd_bresume, "brequeue": cmd_brequeue, "busers": cmd_busers, "mbatchd": cmd_mbatchd}


def main(argv):
    """Dispatch 'lsf_double.py <command> args...'."""
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print("usage: lsf_double.py {%s} [args...]" % ",".join(COMMANDS), file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[1]](argv[2:])
    except LsfError as err:
        print(str(err), file=sys.stderr)
        return err.status
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
