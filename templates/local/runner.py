"""maestro_compile's local runner: runs a compiled study on this machine, with no scheduler.

submit.sh starts it (see `./submit.sh --help`); it reads the plan from study.json beside it and
needs nothing but Python 3.8 or later and its standard library. Run by hand:

    python3 runner.py --foreground --jobs 2

Every node runs in dependency order, up to --jobs at a time; a failed node's descendants do not
run and are marked SKIPPED with the reason. Each start is a line of jobs.tsv (epoch, node, pid);
each step writes its own KEY=VALUE markers to <log>.status, and the runner adds SKIPPED/CANCELLED
ones for the steps it does not start. The files it keeps in .maestro/:

    submitted     "<epoch> <pid>", created once (a study runs once; `maestro resubmit` reruns nodes)
    runner.pid    the pid of the runner that runs now
    runner.nodes  the nodes a --nodes run runs (the others count as done)
    runner.done   "<epoch> finished <failed> <skipped>" or "<epoch> cancelled", at the end
    runner.log    what a runner in the background printed
    cancelled     "<epoch>", written when the study is cancelled

SIGTERM, SIGINT or SIGHUP cancel the study: the running steps get SIGTERM and nothing else starts.
A small second process, the launcher (this file with --launcher), starts the steps for the runner
with posix_spawn: see class Launcher.
"""
import collections
import json
import os
import signal
import subprocess
import sys
import time

USAGE = """\
usage: submit.sh [--foreground] [--jobs N] [--nodes FILE]

  (no option)     start the runner in the background (own session, survives logout) and return
  --foreground    run here and wait until the study ends
  --jobs N        run at most N steps at once (default: the number of cores)
  --nodes FILE    run again only the nodes named in FILE (one per line) of a study submitted
                  before; every other node counts as done (maestro resubmit)
"""
RUNNER = os.path.realpath(__file__)   # physical: `maestro cancel` finds a killed runner's steps by it
STUDY_DIR = os.path.dirname(RUNNER)
STATE_DIR = os.path.join(STUDY_DIR, ".maestro")
ME = "submit.sh"

# a node's state in the runner: waiting for its parents, running (or held by the launcher, which
# starts it when a step ends), done, failed, skipped
WAITING, RUNNING, DONE, FAILED, SKIPPED = "W", "R", "D", "F", "S"


class Usage(Exception):
    """A bad command line or study directory: the message, exit status 2 (or 1 with code=1)."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


class Cancelled(Exception):
    """Raised by the signal handler: the study is cancelled."""


def state_path(name):
    return os.path.join(STATE_DIR, name)


def now():
    return int(time.time())


def log(message):
    try:
        print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)
    except OSError:   # runner.log on a full disk, or a closed terminal: the study runs on
        pass


def parse_args(argv):
    options = {"foreground": False, "locked": False, "nodes": None, "jobs": os.cpu_count() or 1}
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, _, inline = arg.partition("=")
        if arg == "--foreground":
            options["foreground"] = True
        elif arg == "--locked":   # internal: the lock was taken by the process that detached us
            options["locked"] = True
        elif name in ("--jobs", "--nodes"):
            value = inline if "=" in arg else (args.pop(0) if args else "")
            options[name[2:]] = value
        elif arg in ("-h", "--help"):
            print(USAGE, end="")
            sys.exit(0)
        else:
            raise Usage(f"unknown option '{arg}' (try --help)")
    jobs = str(options["jobs"])
    if not (jobs.isdigit() and int(jobs) >= 1):
        raise Usage(f"--jobs needs a whole number >= 1, got '{jobs}'")
    options["jobs"] = int(jobs)
    if options["nodes"] is not None and not os.access(options["nodes"], os.R_OK):
        raise Usage(f"--nodes: cannot read '{options['nodes']}'")
    return options


class Plan:
    """The study's nodes from study.json, by index, parents before children."""

    def __init__(self):
        with open(os.path.join(STUDY_DIR, "study.json")) as manifest:
            nodes = json.load(manifest)["nodes"]
        self.names = list(nodes)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.logs = [nodes[name]["log"] for name in self.names]
        self.scripts = [nodes[name]["script"] for name in self.names]
        self.parents = [[self.index[parent] for parent in nodes[name]["depends"]] for name in self.names]
        self.children = [[] for _ in self.names]
        for child, parents in enumerate(self.parents):
            for parent in parents:
                self.children[parent].append(child)

    def selected(self, path):
        """The indices of the nodes named in the file at path (one name per line)."""
        chosen = set()
        with open(path) as listing:
            for name in listing.read().splitlines():
                if not name:
                    continue
                if name not in self.index:
                    raise Usage(f"--nodes {path}: there is no node '{name}' in this study")
                chosen.add(self.index[name])
        return chosen

    def mark(self, i, *markers):
        mark(self.logs[i], *markers)


def mark(log_base, *markers):
    """Append (KEY, VALUE) markers on a node's behalf, in one write."""
    with open(os.path.join(STUDY_DIR, log_base + ".status"), "a") as status:
        status.write("".join(f"{key}={value}\n" for key, value in markers))


def take_lock():
    """A study runs once: the first submit creates .maestro/submitted, atomically (O_EXCL)."""
    try:
        os.makedirs(STATE_DIR, exist_ok=True)
    except OSError:
        raise Usage(f"error: cannot write {STATE_DIR} (a read-only or full file system?); nothing was submitted",
                    code=1)
    path = state_path("submitted")
    try:
        lock = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise Usage(f"study {STUDY_DIR} was already submitted (see {path}); a study is not run twice: "
                    f"`maestro resubmit {STUDY_DIR}` runs again what did not finish", code=1)
    except OSError:
        raise Usage(f"cannot write {path} (a read-only or full file system?); nothing was started", code=1)
    try:
        os.write(lock, f"{now()} {os.getpid()}\n".encode())
    finally:
        os.close(lock)


def check_submitted():
    if not os.path.exists(state_path("submitted")):
        raise Usage(f"--nodes runs nodes of a study again, but {STUDY_DIR} was never submitted", code=1)


def read_state(name):
    try:
        with open(state_path(name)) as state:
            return state.read().strip()
    except OSError:
        return ""


def detach(options, plan):
    """Start a runner in a session of its own, with its output in runner.log, and return."""
    old_pid, tries = "", 100
    if options["nodes"] is not None:
        check_submitted()
        chosen = plan.selected(options["nodes"])   # here, so that a bad list is reported to the caller
        old_pid, tries = read_state("runner.pid"), 600
    else:
        take_lock()
    argv = [sys.executable, RUNNER, "--foreground", "--locked", "--jobs", str(options["jobs"])]
    if options["nodes"] is not None:
        argv += ["--nodes", options["nodes"]]
    with open(state_path("runner.log"), "a") as runner_log:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=runner_log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    pid = ""
    for _ in range(tries):
        pid = read_state("runner.pid")
        if pid and pid != old_pid:
            break
        pid = ""
        time.sleep(0.05)
    if options["nodes"] is not None:
        if not pid:   # a runner that starts later must not run behind our caller's back
            os.kill(child.pid, signal.SIGTERM)
            raise Usage(f"the runner did not start (see {state_path('runner.log')})", code=1)
        print(f"started {len(chosen)} of the study's {len(plan.names)} step(s) again in the background "
              f"(runner pid {pid}, up to {options['jobs']} at a time)")
        return
    print(f"started {len(plan.names)} step(s) in the background (runner pid {pid or '?'}, "
          f"up to {options['jobs']} at a time)")


def exit_code(status):
    """A step's exit code as a shell reports it: 128 + N when signal N ended it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


class Runner:
    """Runs the plan: starts the nodes whose parents are done, up to `jobs` at a time."""

    def __init__(self, plan, jobs, chosen=None):
        self.plan, self.jobs = plan, jobs
        self.state = {}            # node index -> WAITING/RUNNING/DONE/FAILED/SKIPPED
        self.waiting_on = {}       # node index -> parents not done yet
        self.ready = []            # nodes to start, in the order they became ready
        for i in range(len(plan.names)):
            if chosen is not None and i not in chosen:
                self.state[i] = DONE    # not run again: done, as far as its children are concerned
                continue
            self.state[i] = WAITING
            self.waiting_on[i] = sum(1 for p in plan.parents[i] if self.state[p] != DONE)
            if not self.waiting_on[i]:
                self.ready.append(i)
        self.remaining = len(self.waiting_on)
        self.launcher = None

    def run(self):
        log(f"runner {os.getpid()} starts {self.remaining} step(s), up to {self.jobs} at a time")
        self.launcher = Launcher.start(self.jobs)
        head, sent = 0, 0          # sent: requests the launcher has not reported the end of
        while self.remaining:
            # up to `jobs` more than run at once: the launcher starts one the moment a step ends
            while sent < 2 * self.jobs and head < len(self.ready):
                self.launcher.request(self.ready[head], self.plan)
                self.state[self.ready[head]] = RUNNING
                head += 1
                sent += 1
            if not sent:
                break
            ended = self.launcher.next_end()
            if ended is None:
                log(f"runner {os.getpid()}: its launcher stopped; the steps not started yet will not run")
                break
            sent -= 1
            self.finish(*ended)
        self.launcher.close()

    def finish(self, i, code):
        self.remaining -= 1
        if code == 0:
            self.state[i] = DONE
            for child in self.plan.children[i]:
                if self.state[child] == WAITING:
                    self.waiting_on[child] -= 1
                    if not self.waiting_on[child]:
                        self.ready.append(child)
        else:
            self.state[i] = FAILED
            self.skip_descendants(i)

    def skip_descendants(self, failed):
        """None of a failed node's descendants may run: each is marked with the reason."""
        queue, head = list(self.plan.children[failed]), 0
        while head < len(queue):
            node = queue[head]
            head += 1
            if self.state[node] != WAITING:
                continue
            self.state[node] = SKIPPED
            self.remaining -= 1
            self.plan.mark(node, ("SKIPPED", now()), ("REASON", f"ancestor {self.plan.names[failed]} failed"))
            queue.extend(self.plan.children[node])

    def counts(self):
        states = list(self.state.values())
        return states.count(FAILED), states.count(SKIPPED)

    def cancel(self):
        """Stop the running steps; the others never start."""
        for signum in CANCEL_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        when = now()
        with open(state_path("cancelled"), "w") as cancelled:
            cancelled.write(f"{when}\n")
        for i, state in self.state.items():
            if state == WAITING:
                self.plan.mark(i, ("CANCELLED", when))
        if os.getpgid(0) == os.getpid():
            os.killpg(0, signal.SIGTERM)   # our own group holds the launcher and every step
        elif self.launcher:
            stop_tree(self.launcher.pid)   # the launcher, each step and everything it runs
        while True:
            try:
                os.wait()
            except ChildProcessError:
                break
        for i, state in self.state.items():   # requests the launcher held and never started
            if state == RUNNING and not os.path.exists(os.path.join(STUDY_DIR, self.plan.logs[i] + ".status")):
                self.plan.mark(i, ("CANCELLED", when))
        with open(state_path("runner.done"), "w") as done:
            done.write(f"{now()} cancelled\n")


class Launcher:
    """The runner's side of the launcher: a small process of its own that starts the steps.

    A step starts with posix_spawn, whose cost grows with the memory of the process that calls it
    while other steps run (0.2 ms a step from a 20 MB runner, 0.9 ms from the 58 MB runner of a
    30,001-node plan); the launcher stays small (15 MB) whatever the plan. Requests and reports
    are JSON lines."""

    def __init__(self, process, requests, reports):
        self.process, self.pid = process, process.pid
        self.requests, self.reports = requests, reports
        self.outbox = []

    @classmethod
    def start(cls, jobs):
        requests_in, requests_out = os.pipe()
        reports_in, reports_out = os.pipe()
        process = subprocess.Popen([sys.executable, RUNNER, "--launcher", str(jobs),
                                    str(requests_in), str(reports_out)], pass_fds=(requests_in, reports_out))
        os.close(requests_in)
        os.close(reports_out)
        return cls(process, os.fdopen(requests_out, "wb"), os.fdopen(reports_in, "rb"))

    def request(self, i, plan):
        """Ask for node i to start (sent with the next wait: one write for both)."""
        self.outbox.append(json.dumps([i, plan.names[i], plan.scripts[i], plan.logs[i]]) + "\n")

    def next_end(self):
        """(index, exit code) of the next step to end, or None if the launcher is gone."""
        try:
            self.requests.write(("".join(self.outbox) + "wait\n").encode())
            self.requests.flush()
        except BrokenPipeError:
            return None
        self.outbox = []
        report = self.reports.readline().split()
        if len(report) != 2:
            return None
        return int(report[0]), int(report[1])

    def close(self):
        try:
            self.requests.close()   # the launcher's end of input: it exits
        except BrokenPipeError:
            pass
        self.reports.close()
        self.process.wait()


def launch(jobs, requests_fd, reports_fd):
    """The launcher (runner.py --launcher, started by the runner): starts each requested step, up
    to `jobs` at once, holding the others, and appends its ledger line; asked "wait", it waits for
    the next step to end, starts a held one at once, then reports "INDEX EXIT_CODE"."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)   # stopped as a step is, without a traceback
    for fd in (requests_fd, reports_fd):   # not the steps': a runner must see the end of a launcher
        os.set_inheritable(fd, False)
    # the steps run with default signal dispositions: Python ignores SIGPIPE
    defaults = [getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)]
    running, held, unstarted = {}, collections.deque(), collections.deque()
    runner = os.getppid()

    def start(request):
        i, name, script, log_base = request
        base, script = os.path.join(STUDY_DIR, log_base), os.path.join(STUDY_DIR, script)
        out = os.open(base + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(base + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            pid = os.posix_spawn(script, [script], os.environ, setsigdef=defaults,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)])
        except OSError as problem:   # as a shell would: the reason on the step's stderr, 127 or 126
            os.write(err, f"{ME}: {script}: {problem.strerror}\n".encode())
            code = 127 if isinstance(problem, FileNotFoundError) else 126
            mark(log_base, ("EXIT_CODE", code))
            unstarted.append((i, code))
            if held:
                start(held.popleft())
            return
        finally:
            os.close(out)
            os.close(err)
        running[pid] = i
        # a line per start, flushed at once: status and resubmit read it while the study runs.
        # After the spawn, as the pid is the job id: a launcher killed in between leaves a step
        # without its line (its own markers still tell its state).
        ledger.write(f"{now()}\t{name}\t{pid}\n")
        ledger.flush()

    with os.fdopen(requests_fd, "rb") as requests, os.fdopen(reports_fd, "wb", buffering=0) as reports, \
            open(os.path.join(STUDY_DIR, "jobs.tsv"), "a") as ledger:
        for line in requests:
            if line != b"wait\n":
                request = json.loads(line)
                if len(running) < jobs:
                    start(request)
                else:
                    held.append(request)
                continue
            if unstarted:
                i, code = unstarted.popleft()
            else:
                pid, status = os.wait()
                i, code = running.pop(pid), exit_code(status)
                if held and os.getppid() == runner:   # a killed runner would never hear of it
                    start(held.popleft())
            try:
                reports.write(f"{i} {code}\n".encode())
            except BrokenPipeError:    # the runner is gone (killed): nobody to start more steps for
                return


def children_of(pid):
    listing = subprocess.run(["pgrep", "-P", str(pid)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout
    return [int(child) for child in listing.split()]


def stop_tree(pid):
    """SIGTERM to the process and everything under it (its children are listed first: once it
    ends they are no longer its children)."""
    children = children_of(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for child in children:
        stop_tree(child)


CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def on_signal(signum, frame):
    raise Cancelled()


def run_study(options, plan):
    if options["nodes"] is not None:
        check_submitted()
        chosen = plan.selected(options["nodes"])
        # which nodes this runner runs: status does not take the others for pending
        with open(options["nodes"]) as listing, open(state_path("runner.nodes"), "w") as copy:
            copy.write(listing.read())
    else:
        chosen = None
        if not options["locked"]:
            take_lock()
    with open(state_path("runner.pid"), "w") as pid_file:
        pid_file.write(f"{os.getpid()}\n")
    runner = Runner(plan, options["jobs"], chosen)
    for signum in CANCEL_SIGNALS:
        signal.signal(signum, on_signal)
    try:
        runner.run()
    except Cancelled:
        runner.cancel()
        return 143
    failed, skipped = runner.counts()
    log(f"study finished: {failed} failed, {skipped} not run because an ancestor failed")
    with open(state_path("runner.done"), "w") as done:
        done.write(f"{now()} finished {failed} {skipped}\n")
    return 0 if failed == 0 and runner.remaining == 0 else 1


def main(argv):
    if not hasattr(os, "posix_spawn"):
        print(f"{ME}: the local runner needs Python 3.8 or later; this is {sys.version.split()[0]} "
              "(set MAESTRO_PYTHON to another Python)", file=sys.stderr)
        return 69
    if argv[:1] == ["--launcher"]:   # internal: started by the runner
        launch(*(int(arg) for arg in argv[1:4]))
        return 0
    try:
        options = parse_args(argv)
        try:
            plan = Plan()
        except (OSError, ValueError, KeyError, TypeError) as problem:
            raise Usage(f"cannot read the study's plan in {os.path.join(STUDY_DIR, 'study.json')}: {problem}",
                        code=1)
        if options["foreground"]:
            return run_study(options, plan)
        detach(options, plan)
        return 0
    except Usage as problem:
        print(f"{ME}: {problem}", file=sys.stderr)
        return problem.code
    except OSError as problem:   # a state file that cannot be written (full or read-only file system)
        where = f": {problem.filename}" if problem.filename else ""
        print(f"{ME}: error: {problem.strerror or problem}{where}; the steps not started yet will not run",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
