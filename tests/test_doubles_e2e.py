"""End-to-end tests of the LSF and Flux backends: LSF against the command double in
tests/doubles/lsf, Flux against a real Flux instance (flux-core 0.88.0, the session's
`flux_instance` of conftest.py, started by tests/flux/instance.sh).

LSF is proprietary, so `bsub bjobs bkill bresume brequeue bhist` are stand-ins that really run the
jobs and follow LSF's documented behaviour (see its README); each LSF test gets a fresh instance of
the double. Every test runs the real CLI (`python -m maestro_compile`) and reads only what a user
could read: submit.sh, jobs.tsv, step outputs, `maestro status --json`, and the schedulers' own
commands.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import pytest

import helpers
from helpers import describe, workspace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOUBLES = ROOT / "tests" / "doubles"
DEADLINE = 60.0
DAEMONS = ("lsf_double.py mbatchd", "flux-broker", "flux-shell")   # the scheduler's own processes


class Scheduler:
    """One fresh LSF instance (a state directory of the double), or the session's real Flux
    instance, and the CLI around it."""

    def __init__(self, kind: str, root: Path, flux=None, **knobs: str):
        self.kind = kind
        self.root = root
        self.state = root / f"{kind}-instance"
        self.state.mkdir()
        if kind == "lsf":
            path = f"{DOUBLES / kind / 'bin'}{os.pathsep}{os.environ['PATH']}"
            # one LSF "minute" lasts 2 s, so run limits and warnings fit in a test
            self.env = dict(os.environ, PATH=path, LSF_DOUBLE_DIR=str(self.state), LSF_DOUBLE_MINUTE="2",
                            LSF_DOUBLE_TERMINATE_INTERVAL="0.2", LSF_DOUBLE_IDLE_EXIT="5")
        else:
            self.flux = flux          # conftest.FluxInstance: FLUX_URI and flux on PATH
            self.env = dict(flux.env)
        self.env.update(knobs)
        self.studies: List[Path] = []

    # --- the CLI, as a user runs it ---
    def maestro(self, *args, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "maestro_compile", *map(str, args)], cwd=self.root,
                              env=env or self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)

    def ok(self, *args, env=None) -> subprocess.CompletedProcess:
        result = self.maestro(*args, env=env)
        assert result.returncode == 0, f"maestro {args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def command(self, *argv) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def spec(self, name: str, body: str) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(f"description:\n  name: {name}\n  description: test study {name}\n" + textwrap.dedent(body))
        return path

    def compile(self, spec: Path, *options, name: str = "study") -> Path:
        study = self.root / name
        self.ok("compile", spec, "--backend", self.kind, "-o", study, *options)
        self.studies.append(study)
        return study

    def submit(self, study: Path) -> subprocess.CompletedProcess:
        return self.ok("submit", study)

    def status(self, study: Path) -> Dict[str, dict]:
        data = json.loads(self.ok("status", study, "--json").stdout)
        return {node["name"]: node for node in data["nodes"]}

    def wait_for(self, study: Path, expected: Mapping[str, str], timeout: float = DEADLINE) -> Dict[str, dict]:
        """Wait until `maestro status` shows exactly ``expected`` (node -> state)."""
        last: Dict[str, dict] = {}

        def reached():
            nonlocal last
            last = self.status(study)
            assert sorted(last) == sorted(expected)
            return last if {n: v["state"] for n, v in last.items()} == dict(expected) else None
        return wait_until(reached, f"{dict(expected)}", timeout, lambda: describe(last))

    def stop(self) -> None:
        """Cancel whatever the tests' studies left, then stop the LSF double's daemon (the Flux
        instance is the session's)."""
        ids = [job_id for study in self.studies for _, job_id in ledger(study)]
        if ids:
            if self.kind == "lsf":
                self.command("bkill", *sorted({i.split("[")[0] for i in ids}))
            else:
                self.command("flux", "cancel", *ids)
        if self.kind != "lsf":
            return
        for pid in daemon_pids(str(self.state)):
            try:
                os.killpg(os.getpgid(pid), 9)
            except OSError:
                pass


def wait_until(predicate: Callable[[], object], what: str, timeout: float = DEADLINE,
               detail: Callable[[], str] = lambda: ""):
    return helpers.wait_until(predicate, what, timeout, detail=detail)




def ledger(study: Path, path: Optional[Path] = None) -> List[Tuple[str, str]]:
    path = path or study / "jobs.tsv"
    if not path.exists():
        return []
    return [tuple(line.split("\t")[1:3]) for line in path.read_text().splitlines() if line.strip()]




def processes() -> Dict[int, Tuple[int, str]]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            table[int(parts[0])] = (int(parts[1]), parts[2] if len(parts) > 2 else "")
    return table


def daemon_pids(state: str) -> List[int]:
    """The LSF double's own daemon processes of one instance (its mbatchd)."""
    table = processes()
    pids = []
    for pid, (_, args) in table.items():
        if DAEMONS[0] in args and state in args:
            pids.append(pid)
    return pids


def make_scheduler(request, kind: str, root: Path, **knobs: str) -> Scheduler:
    flux = request.getfixturevalue("flux_instance") if kind == "flux" else None
    return Scheduler(kind, root, flux, **knobs)


@pytest.fixture(params=["lsf", pytest.param("flux", marks=pytest.mark.flux)])
def sched(request, tmp_path):
    scheduler = make_scheduler(request, request.param, tmp_path)
    yield scheduler
    scheduler.stop()


# --------------------------------------------------------------------------- examples

def test_build_archive_with_a_failing_compress_variant(sched):
    text = (EXAMPLES / "build_archive" / "build_archive.yaml").read_text()
    spec = sched.root / "build_archive.yaml"
    spec.write_text(text.replace("values: [--fast, --best]", "values: [--fast, --best, --no-such-level]"))
    study = sched.compile(spec)
    sched.submit(study)
    bad = "compress_COPT.--no-such-level"
    nodes = sched.wait_for(study, {"generate": "FINISHED", "build": "FINISHED", "compress_COPT.--fast": "FINISHED",
                                   "compress_COPT.--best": "FINISHED", bad: "FAILED"})
    assert nodes[bad]["reason"] == "exit code 1", describe(nodes)
    archive = workspace(study, nodes["build"]) / "archive.tar"
    with tarfile.open(archive) as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == \
            ["files/file_1.txt", "files/file_2.txt", "files/file_3.txt"]
    for option in ("--fast", "--best"):
        packed = workspace(study, nodes[f"compress_COPT.{option}"]) / "archive.tar.gz"
        assert gzip.decompress(packed.read_bytes()) == archive.read_bytes()
    table = sched.ok("status", study).stdout
    assert any(bad in line and "FAILED" in line for line in table.splitlines()), table


def test_hello_bye_sweep_chained_element_by_element(sched):
    study = sched.compile(EXAMPLES / "hello_world" / "hello_bye_parameterized.yaml")
    if sched.kind == "lsf":
        # two arrays of 4; element i of bye_world waits for element i of hello_world
        submits = [line for line in (study / "submit.sh").read_text().splitlines() if line.startswith("submit ")]
        assert len(submits) == 2 and '-w "done(${J0}[*])" -ti' in submits[1]
    else:
        # no arrays in Flux: one job per node, each bye waiting for its own hello (flux-plan.jsonl)
        plan = [json.loads(line) for line in (study / "flux-plan.jsonl").read_text().splitlines()]
        assert len(plan) == 8 and [job["after"] for job in plan] == [[], [], [], [], [0], [1], [2], [3]]
    sched.submit(study)
    names = [f"{step}_GREETING.{g}.NAME.{n}" for step in ("hello_world", "bye_world")
             for g, n in (("Hello", "Pam"), ("Ciao", "Jim"), ("Hey", "Michael"), ("Hi", "Dwight"))]
    nodes = sched.wait_for(study, {name: "FINISHED" for name in names})
    for greeting, name in (("Hello", "Pam"), ("Ciao", "Jim"), ("Hey", "Michael"), ("Hi", "Dwight")):
        hello = nodes[f"hello_world_GREETING.{greeting}.NAME.{name}"]
        assert (workspace(study, hello) / f"{greeting}_{name}.txt").read_text() == f"{greeting}, {name}!\n"
        bye = nodes[f"bye_world_GREETING.{greeting}.NAME.{name}"]
        assert (workspace(study, bye) / "bye.txt").read_text() == "Bye, World!\n"
        assert bye["start_time"] >= hello["end_time"]


def test_size_sweep_funnel_waits_for_every_simulation(sched):
    study = sched.compile(EXAMPLES / "size_sweep" / "size_sweep.yaml")
    sched.submit(study)
    names = [f"run_simulation_SIZE.{s}" for s in (10, 100, 1000)] + ["aggregate_results"]
    nodes = sched.wait_for(study, {name: "FINISHED" for name in names})
    with open(workspace(study, nodes["aggregate_results"]) / "summary.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert sorted(row[0] for row in rows[1:]) == ["10", "100", "1000"]
    assert nodes["aggregate_results"]["start_time"] >= max(nodes[n]["end_time"] for n in names[:3])


# --------------------------------------------------------------------------- failures

CASCADE = """
    study:
        - name: a
          description: root
          run: {cmd: echo a > a.txt}
        - name: b
          description: fails
          run: {cmd: exit 3, depends: [a]}
        - name: c
          description: child of the failure
          run: {cmd: echo c > c.txt, depends: [b]}
        - name: d
          description: grandchild of the failure
          run: {cmd: echo d > d.txt, depends: [c]}
        - name: e
          description: sibling, unaffected
          run: {cmd: echo e > e.txt, depends: [a]}
"""


def test_failure_cascades_to_descendants_only(sched):
    study = sched.compile(sched.spec("cascade", CASCADE))
    sched.submit(study)
    nodes = sched.wait_for(study, {"a": "FINISHED", "b": "FAILED", "c": "CANCELLED", "d": "CANCELLED",
                                   "e": "FINISHED"})
    assert nodes["b"]["reason"] == "exit code 3"
    assert nodes["c"]["reason"] == "ancestor b failed" and nodes["d"]["reason"] == "ancestor b failed"
    assert not (workspace(study, nodes["c"]) / "c.txt").exists()
    assert not (workspace(study, nodes["d"]) / "d.txt").exists()
    # the scheduler itself ended the descendants: nothing of the study is left pending
    ids = dict(ledger(study))
    if sched.kind == "lsf":
        out = sched.command("bjobs", "-a", "-o", "jobid stat exit_reason", "-json", ids["c"], ids["d"]).stdout
        records = json.loads(out)["RECORDS"]
        assert [r["STAT"] for r in records] == ["EXIT", "EXIT"]
        assert all("TERM_ORPHAN_SYSTEM" in r["EXIT_REASON"] for r in records)
    else:
        out = sched.command("flux", "jobs", "-a", "--json", ids["c"], ids["d"]).stdout
        jobs = json.loads(out)["jobs"]
        assert [j["result"] for j in jobs] == ["FAILED", "FAILED"]
        assert all(j["exception"]["type"] == "dependency" for j in jobs)


def test_cancel_stops_a_running_step_and_its_dependent(sched):
    study = sched.compile(sched.spec("cancel", """
        study:
            - name: long
              description: runs until cancelled
              run: {cmd: echo started > started.txt; sleep 120}
            - name: after
              description: never runs
              run: {cmd: echo after > after.txt, depends: [long]}
    """))
    sched.submit(study)
    nodes = sched.wait_for(study, {"long": "RUNNING", "after": "PENDING"})
    wait_until(lambda: (workspace(study, nodes["long"]) / "started.txt").exists(), "the step to start")
    result = sched.ok("cancel", study)
    assert "cancel" in result.stdout.lower()
    nodes = sched.wait_for(study, {"long": "CANCELLED", "after": "CANCELLED"})
    assert not (workspace(study, nodes["after"]) / "after.txt").exists()
    wait_until(lambda: not _study_processes(study, include_jobs=True), "the cancelled step's processes to end",
               detail=lambda: "\n".join(_study_processes(study, include_jobs=True)))


def test_timeout_with_restart_keeps_the_job_id_and_runs_the_restart_command(sched):
    # LSF: -W 00:03 is 6 s with the double's 2-second minutes, the warning comes 2 s before it;
    # Flux: each attempt gets the walltime (3 s) inside the job
    walltime = "00:03:00" if sched.kind == "lsf" else "00:00:03"
    study = sched.compile(sched.spec("restart", f"""
        study:
            - name: slow
              description: times out once, then its restart command finishes it
              run:
                  cmd: |
                    echo first >> attempts.txt
                    sleep 60
                  restart: echo restart >> attempts.txt
                  walltime: "{walltime}"
            - name: after
              description: waits for slow
              run: {{cmd: echo after > after.txt, depends: [slow]}}
    """))
    sched.submit(study)
    first_ids = dict(ledger(study))
    nodes = sched.wait_for(study, {"slow": "FINISHED", "after": "FINISHED"}, timeout=90)
    assert (workspace(study, nodes["slow"]) / "attempts.txt").read_text() == "first\nrestart\n"
    assert nodes["slow"]["restarts"] == 1
    assert dict(ledger(study)) == first_ids                       # same job, same id
    assert nodes["after"]["start_time"] >= nodes["slow"]["end_time"]


def test_timeout_without_restart_is_timedout_and_cancels_the_dependent(sched):
    walltime = "00:01:00" if sched.kind == "lsf" else "00:00:02"
    study = sched.compile(sched.spec("timeout", f"""
        study:
            - name: slow
              description: runs past its time limit
              run: {{cmd: sleep 60, walltime: "{walltime}"}}
            - name: after
              description: never runs
              run: {{cmd: echo after > after.txt, depends: [slow]}}
    """))
    sched.submit(study)
    nodes = sched.wait_for(study, {"slow": "TIMEDOUT", "after": "CANCELLED"}, timeout=90)
    assert nodes["after"]["reason"] == "ancestor slow failed"


# --------------------------------------------------------------------------- submission

def test_failed_submission_is_rolled_back_and_can_be_resubmitted(sched):
    # refused by the scheduler when the job is submitted (Flux: by the instance's jobspec validator)
    directive = "#BSUB -q nosuchqueue" if sched.kind == "lsf" else "# flux: --setattr=system.duration=nosuchqueue"
    study = sched.compile(sched.spec("rollback", f"""
        study:
            - name: first
              description: submitted, then rolled back
              run: {{cmd: echo first > first.txt}}
            - name: second
              description: its submission fails
              run:
                  cmd: |
                    {directive}
                    cat $(first.workspace)/first.txt > second.txt
                  depends: [first]
    """))
    result = sched.maestro("submit", study)
    assert result.returncode != 0
    error = result.stdout + result.stderr
    assert "nosuchqueue" in error or "duration must be a number" in error, error   # the scheduler's own message
    assert "Traceback" not in error
    assert not (study / "jobs.tsv").exists()
    aside = sorted((study / ".maestro").glob("jobs.rolled-back.*.tsv"))
    assert len(aside) == 1
    rolled = ledger(study, aside[0])
    assert [node for node, _ in rolled] == ["first"]
    first_id = rolled[0][1]
    assert first_id in error
    assert {n: v["state"] for n, v in sched.status(study).items()} == {"first": "INITIALIZED",
                                                                       "second": "INITIALIZED"}
    if sched.kind == "lsf":
        record = json.loads(sched.command("bjobs", "-a", "-o", "stat exit_reason", "-json", first_id).stdout)
        assert record["RECORDS"][0]["STAT"] == "EXIT" and "TERM_OWNER" in record["RECORDS"][0]["EXIT_REASON"]
    else:
        job = json.loads(sched.command("flux", "jobs", "-a", "--json", first_id).stdout)
        assert job["result"] == "CANCELED" and "t_run" not in job   # cancelled before it ran
    assert not (study / "first" / "first.txt").exists()

    # fix the cause by hand and submit again
    suffix = ".lsf.sh" if sched.kind == "lsf" else ".flux.sh"
    for path in [study / "second" / f"second{suffix}", study / "submit.sh"]:
        text = path.read_text()
        path.write_text("".join(line for line in text.splitlines(keepends=True) if "nosuchqueue" not in line))
    if sched.kind == "flux":   # flux submit does not read the script: its options are in the plan
        plan = study / "flux-plan.jsonl"
        plan.write_text(plan.read_text().replace('"--setattr=system.duration=nosuchqueue", ', ""))
    sched.submit(study)
    nodes = sched.wait_for(study, {"first": "FINISHED", "second": "FINISHED"})
    assert (workspace(study, nodes["second"]) / "second.txt").read_text() == "first\n"
    assert dict(ledger(study))["first"] != first_id


def test_second_submit_is_refused(sched):
    study = sched.compile(sched.spec("once", """
        study:
            - name: only
              description: one step
              run: {cmd: echo once >> once.txt}
    """))
    sched.submit(study)
    again = sched.maestro("submit", study)
    assert again.returncode != 0 and "already submitted" in again.stderr + again.stdout
    nodes = sched.wait_for(study, {"only": "FINISHED"})
    assert (workspace(study, nodes["only"]) / "once.txt").read_text() == "once\n"
    assert len(ledger(study)) == 1


def _study_processes(study: Path, include_jobs: bool = False) -> List[str]:
    """Processes touching the study that are not the double's daemon or its jobs (or, with
    ``include_jobs``, any process touching the study)."""
    table = processes()
    inside = {pid for pid, (_, args) in table.items() if any(name in args for name in DAEMONS)}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in table.items():
            if pid not in inside and ppid in inside:
                inside.add(pid)
                changed = True
    hits = []
    for pid, (ppid, args) in table.items():
        if pid == os.getpid() or (pid in inside and not include_jobs):
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if str(study) in args or cwd == str(study) or cwd.startswith(str(study) + os.sep):
            parent = table.get(ppid, (0, "?"))[1]
            hits.append(f"{pid} (ppid {ppid}: {parent}; cwd {cwd}): {args}")
    return hits


def test_nothing_of_ours_is_alive_after_submit_returns(sched):
    study = sched.compile(sched.spec("detached", """
        study:
            - name: hold
              description: keeps running for a while
              run: {cmd: echo hold $(X); sleep 30}
            - name: after
              description: pending behind hold
              run: {cmd: echo after, depends: [hold]}
        global.parameters:
            X: {values: [1, 2], label: X.%%}
    """))
    sched.submit(study)
    assert _study_processes(study) == []
    sched.wait_for(study, {"hold_X.1": "RUNNING", "hold_X.2": "RUNNING",
                           "after_X.1": "PENDING", "after_X.2": "PENDING"})
    assert _study_processes(study) == []
    sched.ok("cancel", study)


# --------------------------------------------------------------------------- status sources

def test_lsf_status_comes_from_bhist_after_bjobs_forgot_the_jobs(tmp_path):
    sched = Scheduler("lsf", tmp_path, LSF_DOUBLE_CLEAN_PERIOD="2")
    try:
        study = sched.compile(sched.spec("old", CASCADE))
        sched.submit(study)
        expected = {"a": "FINISHED", "b": "FAILED", "c": "CANCELLED", "d": "CANCELLED", "e": "FINISHED"}
        sched.wait_for(study, expected)
        ids = [job_id for _, job_id in ledger(study)]
        wait_until(lambda: "is not found" in sched.command("bjobs", "-a", *ids).stderr and
                   not sched.command("bjobs", "-a", *ids).stdout.strip(), "bjobs to forget the jobs")
        # markers moved aside: the states must come from bhist alone
        for marker in study.rglob("*.status"):
            marker.rename(marker.with_suffix(".status.hidden"))
        nodes = sched.status(study)
        assert {n: v["state"] for n, v in nodes.items()} == expected, describe(nodes)
        assert nodes["c"]["reason"] == "ancestor b failed"
    finally:
        sched.stop()


@pytest.mark.flux
def test_flux_instance_chosen_by_batch_uri(request, tmp_path):
    sched = make_scheduler(request, "flux", tmp_path)
    try:
        env = {k: v for k, v in sched.env.items() if k != "FLUX_URI"}
        spec = sched.spec("uri", f"""
            batch: {{type: flux, uri: "{sched.flux.uri}"}}
            study:
                - name: one
                  description: runs on the instance named in the spec
                  run: {{cmd: echo here > here.txt}}
        """)
        study = sched.root / "study"
        sched.ok("compile", spec, "-o", study, env=env)
        sched.studies.append(study)
        assert f"export FLUX_URI={sched.flux.uri}" in (study / "submit.sh").read_text()
        sched.ok("submit", study, env=env)
        wait_until(lambda: json.loads(sched.ok("status", study, "--json", env=env).stdout)["nodes"][0]["state"]
                   == "FINISHED", "the job to finish")
        assert (study / "one" / "here.txt").read_text() == "here\n"
    finally:
        sched.stop()


# --------------------------------------------------------------------------- LSF arrays

SWEEP = """
    study:
        - name: work
          description: one task per value
          run: {cmd: echo $(X) > work.txt; sleep 1}
        - name: post
          description: reads its own work task's output
          run: {cmd: cat $(work.workspace)/work.txt > post.txt, depends: [work]}
    global.parameters:
        X: {values: [1, 2, 3], label: X.%%}
"""


def test_lsf_throttle_runs_one_array_element_at_a_time(tmp_path):
    sched = Scheduler("lsf", tmp_path)
    try:
        study = sched.compile(sched.spec("throttled", SWEEP), "--throttle", "1")
        assert '#BSUB -J "work[1-3]%1"' in (study / "work" / "work.array.lsf.sh").read_text()
        sched.submit(study)
        names = [f"{step}_X.{x}" for step in ("work", "post") for x in (1, 2, 3)]
        nodes = sched.wait_for(study, {name: "FINISHED" for name in names})
        spans = sorted((nodes[f"work_X.{x}"]["start_time"], nodes[f"work_X.{x}"]["end_time"]) for x in (1, 2, 3))
        for (_, previous_end), (next_start, _) in zip(spans, spans[1:]):
            assert next_start >= previous_end, f"throttled elements overlapped: {spans}"
    finally:
        sched.stop()


def test_lsf_arrays_split_in_chunks_chain_chunk_by_chunk(tmp_path):
    sched = Scheduler("lsf", tmp_path)
    try:
        study = sched.compile(sched.spec("chunked", SWEEP), "--max-array-size", "2")
        submits = [line for line in (study / "submit.sh").read_text().splitlines() if line.startswith("submit ")]
        assert len(submits) == 4
        assert '-w "done(${J0}[*])"' in submits[2] and '-w "done(${J1}[*])"' in submits[3]
        sched.submit(study)
        names = [f"{step}_X.{x}" for step in ("work", "post") for x in (1, 2, 3)]
        nodes = sched.wait_for(study, {name: "FINISHED" for name in names})
        for x in (1, 2, 3):
            assert (workspace(study, nodes[f"post_X.{x}"]) / "post.txt").read_text() == f"{x}\n"
        assert [job_id for _, job_id in ledger(study)][:3] == ["1[1]", "1[2]", "2[1]"]
    finally:
        sched.stop()


# --------------------------------------------------------------------------- faults (LSF)

@pytest.fixture
def lsf(tmp_path):
    scheduler = Scheduler("lsf", tmp_path)
    yield scheduler
    scheduler.stop()


def lsf_tagged(sched: Scheduler, study: Path) -> List[str]:
    """Unfinished jobs of the study found by its tag (the job description), not by jobs.tsv."""
    tag = "maestro_compile:" + json.loads((study / "study.json").read_text())["id"]
    listing = json.loads(sched.command("bjobs", "-o", "jobid job_description", "-json").stdout or "{}")
    return sorted({r["JOBID"] for r in listing.get("RECORDS", []) if r.get("JOB_DESCRIPTION") == tag})


def test_lsf_kill_9_of_the_submitter_then_submit_recovers(lsf):
    values = ", ".join(f'"00:{10 + i:02d}:00"' for i in range(12))
    study = lsf.compile(lsf.spec("killed", f"""
        study:
            - name: a
              description: roots, one job each (distinct walltimes)
              run: {{cmd: echo a $(WT), walltime: $(WT)}}
            - name: b
              description: one per a
              run: {{cmd: echo b $(WT), walltime: $(WT), depends: [a]}}
        global.parameters:
            WT: {{values: [{values}], label: "WT.%%"}}
    """))
    child = subprocess.Popen([sys.executable, "-m", "maestro_compile", "submit", str(study)], cwd=lsf.root,
                             env=lsf.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: (study / "jobs.tsv").exists() and len(ledger(study)) >= 5, "5 jobs recorded", DEADLINE)
    os.killpg(child.pid, 9)
    child.wait()
    killed = {job_id for _, job_id in ledger(study)}
    assert killed <= set(lsf_tagged(lsf, study)), "the held jobs of the killed submission carry the tag"
    assert any("interrupted" in node["reason"] for node in lsf.status(study).values())

    again = lsf.ok("submit", study)
    assert "recovered the interrupted submission" in again.stdout
    new = {job_id for _, job_id in ledger(study)}
    assert killed.isdisjoint(new) and set(lsf_tagged(lsf, study)) <= new
    nodes = lsf.wait_for(study, {name: "FINISHED" for name in lsf.status(study)}, timeout=DEADLINE * 2)
    assert len(nodes) == 24


def test_lsf_cancel_finds_a_job_by_its_tag_when_the_ledger_lost_it(lsf):
    study = lsf.compile(lsf.spec("lost_line", """
        study:
            - name: wait
              description: runs until cancelled
              run: {cmd: sleep 300}
    """))
    lsf.submit(study)
    (study / "jobs.tsv").write_text("")                 # the id never reached the ledger
    found = lsf_tagged(lsf, study)
    assert len(found) == 1
    result = lsf.ok("cancel", study)
    assert "cancelled 1 queued or running job(s)" in result.stdout
    assert not lsf_tagged(lsf, study) and (study / ".maestro" / "cancelled").exists()
