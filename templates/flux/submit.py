"""maestro_compile: the bulk submitter of a Flux study, run by submit.sh as

    flux python flux-submit.py flux-plan.jsonl jobs.tsv EPOCH

with Flux's own interpreter and Python bindings (a copy of this file is in every Flux study
directory; it needs nothing but Flux). flux-plan.jsonl has one JSON object per job, in
dependency order (parents first):

    {"job": 3, "node": "post_X.1", "flux": ["submit", "--job-name=post_X.1", ..., "SCRIPT"],
     "after": [0], "urgency": null, "release": null}

"flux" is the `flux batch|submit` command line of the node (run it by hand with `flux ARGS`);
a line with "gather" (the node it gathers for) is a gather job: `true`, waiting on up to
batch.max_dependencies parents of a node that has more, so that no job has thousands of
dependencies (flux-core accepts those slowly); its id goes to .maestro/gather.EPOCH.tsv;
the submitter adds `--dependency=afterok:ID` for each job of "after" (their ids are known by
then; "dependency": "afterany" on a bundle's line, which lists its nodes in "nodes"), `--urgency=hold` for a job without parents (a root) or `--urgency=N` from "urgency", and
builds each jobspec with Flux's own `flux batch`/`flux submit` argument parsing, so a node is
submitted exactly as that command line would submit it (a batch script's `# flux:` directives
included). Jobs are submitted with many requests in flight; each id is appended to jobs.tsv as
`EPOCH<TAB>node<TAB>decimal id` the moment it is known. When everything is queued, the roots are
released to their "release" urgency (`default`, a number, or null: stays held).

Exit status: 0 when everything is queued and released; 1 after any failure, with the reason
on stderr: submission stops, the ids of the requests in flight are still recorded, and submit.sh
cancels every job of the ledger (rollback). Nothing of this program runs after it exits.

    flux python flux-submit.py --cancel ID...

cancels the jobs (the rollback of submit.sh and of resubmission scripts, and `maestro cancel`).
"""
import copy
import io
import json
import os
import signal
import sys
import time
from collections import deque

import flux
import flux.job
from flux.cli.batch import BatchCmd
from flux.cli.submit import SubmitCmd

WINDOW = 1024            # requests in flight at once (a handle with ~10,000 outstanding aborts in libev)
PER_NODE = ("--job-name=", "--output=", "--error=", "--cwd=")   # options that differ from node to node
URGENCY_DEFAULT = 16
TOKEN = "@maestro-compile-{}@"


class Stop(Exception):
    """Submission must stop: the reason is the message."""


def interrupted(signum, frame):
    raise Stop(f"interrupted by signal {signal.Signals(signum).name}")


class Jobspecs:
    """Jobspecs (JSON text) from `flux submit|batch` command lines, parsed by Flux's own CLI code.

    A sweep submits thousands of `flux submit` lines that differ only in the job name, output
    and error files, working directory and script. Such a line is parsed once with those values
    replaced by tokens; the next nodes of the same shape get that jobspec with their values put
    in. The first node of each shape is also parsed in full and compared: when the shortcut
    would not give exactly what Flux gives, every node of that shape is parsed in full."""

    def __init__(self):
        self.commands = {"submit": SubmitCmd("flux submit"), "batch": BatchCmd("flux batch")}
        self.shapes = {}

    def parse(self, argv):
        """The jobspec (a dict) that `flux ARGV` would submit; ValueError with Flux's message."""
        mode, words = argv[0], list(argv[1:])
        command = self.commands.get(mode)
        if command is None:
            raise ValueError(f"not a flux batch or flux submit command line: flux {' '.join(argv)}")
        stderr, sys.stderr = sys.stderr, io.StringIO()
        try:
            args = command.parser.parse_args(words)
            if mode == "batch":
                command.argv = words
                command.script, args = command.process_script(args)
            return command.jobspec_create(args).jobspec
        except SystemExit:    # argparse: the message is on stderr
            raise ValueError(sys.stderr.getvalue().strip().splitlines()[-1] if sys.stderr.getvalue().strip()
                             else "invalid arguments") from None
        except (ValueError, TypeError, OSError, KeyError) as exc:
            raise ValueError(str(exc)) from None
        finally:
            sys.stderr = stderr

    @staticmethod
    def shape(argv):
        """The command line with its per-node values replaced by tokens, and those values."""
        values, shape = [], []
        for word in argv[:-1]:
            option = next((o for o in PER_NODE if word.startswith(o)), None)
            if option:
                values.append(word[len(option):])
                word = option + TOKEN.format(len(values) - 1)
            shape.append(word)
        values.append(argv[-1])
        shape.append(TOKEN.format(len(values) - 1))
        return tuple(shape), values

    def create(self, argv):
        if argv[0] != "submit":     # a batch job's jobspec holds its script: parsed in full
            return self.parse(argv)
        key, values = self.shape(argv)
        shape = list(key)
        known = self.shapes.get(key)
        if known is None:
            exact = self.parse(argv)
            try:
                text = json.dumps(self.parse(shape))
                known = (text, len(values))
                if self.fill(known, values) != exact:
                    known = False
            except ValueError:
                known = False
            self.shapes[key] = known
            return exact
        if known is False:
            return self.parse(argv)
        return self.fill(known, values)

    @staticmethod
    def fill(known, values):
        text, count = known
        for i in range(count):
            text = text.replace(TOKEN.format(i), json.dumps(values[i])[1:-1])
        return json.loads(text)


def hint(message):
    """Which spec key a refusal is about, when the message says."""
    text = message.lower()
    if "queue" in text:
        return " (the queue comes from batch.queue or a '# flux: -q' line of the step's cmd)"
    if "bank" in text:
        return " (the bank comes from batch.bank or a '# flux: --bank' line of the step's cmd)"
    return ""


def check_queues(handle, plan, specs):
    """Refuse, before anything is submitted, a queue the instance does not have."""
    wanted = {}
    for job, spec in zip(plan, specs):
        queue = spec.get("attributes", {}).get("system", {}).get("queue")
        if queue is not None:
            wanted.setdefault(queue, job["node"])
    if not wanted:
        return
    try:
        config = handle.rpc("config.get").get() or {}
    except OSError:
        return     # the instance will judge at submission
    queues = config.get("queues") or {}
    for queue, node in wanted.items():
        if queue not in queues:
            have = ", ".join(sorted(queues)) or "none"
            raise Stop(f"node {node}: batch.queue (or '# flux: -q') asks for queue '{queue}', which this Flux "
                       f"instance does not have (its queues: {have}); nothing was submitted")


def main(plan_path, ledger_path, epoch):
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, interrupted)
    with open(plan_path, encoding="utf-8") as handle:
        plan = [json.loads(line) for line in handle if line.strip()]
    jobspecs = Jobspecs()

    def jobspec(job, submitted):
        argv = job["flux"]
        try:
            return jobspecs.create(argv)
        except ValueError as exc:
            raise Stop(f"node {job['node']}: flux {argv[0]} refuses its options: {exc}{hint(str(exc))}\n"
                       f"  command: flux {' '.join(argv)}" + ("" if submitted else "; nothing was submitted")) from None

    # Before anything is submitted, one node of each shape (the same command line but for the
    # node's own name, files, directory and script) is parsed: bad options and queues the
    # instance does not have are refused then. The other jobspecs are made while the first
    # requests are in flight.
    prepared, shapes = {}, set()
    for job in plan:
        key = Jobspecs.shape(job["flux"])[0]
        if key not in shapes:
            shapes.add(key)
            prepared[job["job"]] = jobspec(job, False)
    handle = flux.Flux()
    check_queues(handle, [job for job in plan if job["job"] in prepared], list(prepared.values()))

    ids = {}                 # job number -> id
    waiting = {job["job"]: len(job["after"]) for job in plan}
    children = {}
    for job in plan:
        for parent in job["after"]:
            children.setdefault(parent, []).append(job["job"])
    by_number = {job["job"]: job for job in plan}
    ready = deque(job["job"] for job in plan if not job["after"])
    in_flight = deque()
    error = None
    state_dir = os.path.join(os.path.dirname(os.path.abspath(ledger_path)), ".maestro")
    with open(ledger_path, "a", encoding="utf-8") as ledger, \
            open(os.path.join(state_dir, f"gather.{epoch}.tsv"), "a", encoding="utf-8") as gathers:
        def collect():
            nonlocal error
            number, future = in_flight.popleft()
            job = by_number[number]
            try:
                job_id = int(future.get_id())
            except OSError as exc:
                if error is None:
                    error = (f"flux {job['flux'][0]} failed for {job['node']}: {exc}{hint(str(exc))}\n"
                             f"  command: flux {' '.join(job['flux'])}")
                return
            ids[number] = job_id
            if job.get("gather"):      # jobs.tsv lists nodes only
                gathers.write(f"{epoch}\t{job['node']}\t{job_id}\n")
            else:                      # a bundle: each of its nodes
                ledger.write("".join(f"{epoch}\t{node}\t{job_id}\n" for node in job.get("nodes") or [job["node"]]))
            record = gathers if job.get("gather") else ledger
            record.flush()
            for child in children.get(number, ()):
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)

        try:
            while (ready or in_flight) and error is None:
                while ready and len(in_flight) < WINDOW:
                    number = ready.popleft()
                    job = by_number[number]
                    spec = prepared.pop(number, None) or jobspec(job, True)
                    if job["after"]:
                        spec = copy.copy(spec)
                        attributes = spec["attributes"] = dict(spec["attributes"])
                        system = attributes["system"] = dict(attributes["system"])
                        system["dependencies"] = list(system.get("dependencies", [])) + \
                            [{"scheme": job.get("dependency", "afterok"), "value": str(ids[p])} for p in job["after"]]
                        urgency = URGENCY_DEFAULT if job.get("urgency") is None else int(job["urgency"])
                    else:
                        urgency = 0     # held until the whole study is queued
                    in_flight.append((number, flux.job.submit_async(handle, json.dumps(spec), urgency=urgency)))
                if in_flight:
                    collect()
        except Stop as exc:
            error = str(exc)
        finally:
            # the requests in flight were sent: record their ids, so that the rollback cancels them
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(signum, signal.SIG_IGN)
            while in_flight:
                collect()
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(signum, interrupted)
    if error is not None:
        raise Stop(error)
    if len(ids) != len(plan):
        raise Stop(f"{len(plan) - len(ids)} job(s) could not be submitted: their parents have no job id")
    # every job is queued and recorded: say so before any root is released (`maestro submit`
    # adopts an interrupted submission that got this far instead of submitting it again)
    try:
        with open(os.path.join(state_dir, "queued"), "w") as mark:
            mark.write(f"{int(time.time())}\n")
    except OSError as exc:
        raise Stop(f"cannot write .maestro/queued: {exc.strerror}") from None

    # everything is queued: release the roots (`flux job urgency`'s request, many in flight, no
    # process per root)
    roots = [job for job in plan if not job["after"] and job.get("release") is not None]
    in_flight = deque()

    def released():
        job, future = in_flight.popleft()
        try:
            future.get()
        except OSError as exc:
            raise Stop(f"cannot release {job['node']} (flux job urgency {ids[job['job']]}): {exc}") from None

    for job in roots:
        urgency = URGENCY_DEFAULT if job["release"] == "default" else int(job["release"])
        in_flight.append((job, handle.rpc("job-manager.urgency", {"id": ids[job["job"]], "urgency": urgency})))
        if len(in_flight) >= WINDOW:
            released()
    while in_flight:
        released()
    gathered = sum(1 for job in plan if job.get("gather"))
    nodes = sum(len(job.get("nodes") or [job["node"]]) for job in plan if not job.get("gather"))
    print(f"submitted {len(ids)} Flux job(s) (0 array(s)) for {nodes} node(s)"
          + (f" and {gathered} gather job(s)" if gathered else "") + f"; released {len(roots)} held root job(s)")


def each_in_flight(ids, request, label):
    """``request(handle, id)`` for every id, with many requests in flight (the commands themselves
    abort in flux-core 0.88 when given thousands of ids). Refusals (e.g. jobs already inactive)
    are reported on stderr; exit status 1 when any id was refused."""
    handle = flux.Flux()
    in_flight, refused = deque(), 0

    def answered():
        nonlocal refused
        job_id, future = in_flight.popleft()
        try:
            future.get()
        except OSError as exc:
            refused += 1
            print(f"{label}: {job_id}: {exc.strerror or exc}", file=sys.stderr)

    for job_id in ids:
        in_flight.append((job_id, request(handle, int(job_id))))
        if len(in_flight) >= WINDOW // 2:
            answered()
    while in_flight:
        answered()
    return 1 if refused else 0


def cancel(ids):
    """`flux cancel ID...` (the rollback, `maestro cancel`)."""
    return each_in_flight(ids, flux.job.cancel_async, "flux-cancel")


def release(ids):
    """`flux job urgency ID default` for many held jobs (`maestro submit` adopting a submission
    that was interrupted after every job was queued)."""
    return each_in_flight(ids, lambda handle, job_id: handle.rpc(
        "job-manager.urgency", {"id": job_id, "urgency": URGENCY_DEFAULT}), "flux-release")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--release":
        try:
            sys.exit(release(sys.argv[2:]))
        except (OSError, ValueError) as exc:
            sys.exit(f"flux-release: {exc}")
    if len(sys.argv) >= 2 and sys.argv[1] == "--cancel":
        try:
            sys.exit(cancel(sys.argv[2:]))
        except (OSError, ValueError) as exc:
            sys.exit(f"flux-cancel: {exc}")
    if len(sys.argv) != 4:
        sys.exit("usage: flux python flux-submit.py flux-plan.jsonl jobs.tsv EPOCH | --cancel ID... | --release ID...")
    try:
        main(sys.argv[1], sys.argv[2], sys.argv[3])
    except Stop as exc:
        print(f"submit.sh: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        print(f"submit.sh: error: {exc}", file=sys.stderr)
        sys.exit(1)
