"""End-to-end tests of the PBS backend against the real one-node OpenPBS server of tests/pbs/server.sh.

root cannot submit to PBS, so everything a user does runs as the harness's test user, through the
real CLI (`maestro compile|submit|status|cancel|resubmit`, run by the system Python from a
world-readable copy of the package: see the pbs_cli fixture) and the real PBS commands. The test
process (root) only reads what a user could read: submit.sh, jobs.tsv, the step outputs, and
`qstat` for the study's own job ids; the fault tests also stop and restart the server, as an
administrator would.

PBS has no job arrays here (one job per node, see docs/backends/pbs.md), and deletes the afterok
dependents of a failed job itself: the tests check both what PBS did (qstat -x) and what status says.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import pytest

import helpers
from helpers import describe

pytestmark = pytest.mark.pbs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEADLINE = 120.0


def run(argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def qstat_jobs(ids: Iterable[str]) -> Dict[str, dict]:
    """qstat -x -f -F json for these ids (as root, which may read every job): id -> attributes."""
    from maestro_compile.backends.pbs import load_qstat_json
    result = run(["qstat", "-x", "-f", "-F", "json", *ids])
    return load_qstat_json(result.stdout).get("Jobs", {})


class Studies:
    """Specs and study directories in a folder the test user owns, the CLI run as that user, and
    at teardown a qdel of every job the tests' studies wrote into their ledgers (never anyone else's)."""

    def __init__(self, cli: List[str], user: str):
        self.cli, self.user = cli, user
        self.root = Path(tempfile.mkdtemp(prefix="mc-pbs-", dir="/tmp"))
        self.dirs: List[Path] = []
        shutil.chown(self.root, user)

    def maestro(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.cli, *map(str, args)], cwd=self.root, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=120)
        if check:
            helpers.ok(result)
        return result

    def copy_example(self, folder: str) -> Path:
        """An example's folder copied where the user (and the jobs) can read it."""
        target = self.root / "examples" / folder
        shutil.copytree(EXAMPLES / folder, target)
        self._own(self.root / "examples")
        return target

    def spec(self, name: str, body: str) -> Path:
        path = helpers.write_study_spec(self.root, name, body)
        self._own(path.parent)
        return path

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        self._own(path)
        return path

    def _own(self, path: Path) -> None:
        run(["chown", "-R", self.user, str(path)])

    def compile(self, spec: Path, *options, name: str = "study") -> Path:
        study = self.root / name
        self.dirs.append(study)
        self.maestro("compile", spec, "--backend", "pbs", "-o", study, *options)
        return study

    def status(self, study: Path) -> Dict[str, dict]:
        data = json.loads(self.maestro("status", study, "--json").stdout)
        return {node["name"]: node for node in data["nodes"]}

    def wait_for_states(self, study: Path, expected: Mapping[str, str], timeout: float = DEADLINE) -> Dict[str, dict]:
        last: Dict[str, dict] = {}

        def reached():
            nonlocal last
            last = self.status(study)
            assert sorted(last) == sorted(expected), f"node names differ: {sorted(last)} != {sorted(expected)}"
            return last if {n: node["state"] for n, node in last.items()} == dict(expected) else None
        return helpers.wait_until(reached, f"{study.name} to reach {dict(expected)}", timeout, interval=1.0,
                                  detail=lambda: "last status:\n" + describe(last))

    def all_ids(self) -> List[str]:
        ids = []
        for study in self.dirs:
            for path in [study / "jobs.tsv"] + sorted((study / ".maestro").glob("jobs.*.tsv")):
                if path.exists():
                    ids += [job_id for _, job_id in ledger(path)]
        return ids

    def stop_all(self) -> None:
        ids = self.all_ids() + [i for study in self.dirs if (study / "study.json").exists() for i in tagged(study)]
        if ids:
            run(["qdel", *ids])
        shutil.rmtree(self.root, ignore_errors=True)


def ledger(path: Path) -> List[Tuple[str, str]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        assert len(parts) == 3, f"malformed jobs.tsv line {line!r}"
        rows.append((parts[1], parts[2]))
    return rows


@pytest.fixture
def studies(pbs_server, pbs_cli):
    registry = Studies(pbs_cli, pbs_server)
    yield registry
    registry.stop_all()


def our_processes(user: str) -> List[str]:
    """The test user's processes that are ours: a CLI, a submit.sh. (The jobs themselves are PBS's:
    its mom runs them.)"""
    import pwd
    uid = pwd.getpwnam(user).pw_uid
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or proc.stat().st_uid != uid:
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "maestro_compile" in cmdline or "submit.sh" in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


# --------------------------------------------------------------------------- examples

def test_hello_bye_sweep_nothing_alive_after_submit_and_status_after_qstat_forgot(studies):
    spec = studies.copy_example("hello_world") / "hello_bye_parameterized.yaml"
    study = studies.compile(spec)
    started = time.monotonic()
    out = studies.maestro("submit", study).stdout
    submit_seconds = time.monotonic() - started
    assert "submitted 8 PBS job(s)" in out and "released 4 held root job(s)" in out, out
    assert our_processes(studies.user) == []          # submit returned: PBS holds the whole workflow
    rows = ledger(study / "jobs.tsv")
    assert len(rows) == 8 and all(re.fullmatch(r"\d+\.\S+", job_id) for _, job_id in rows)
    jobs = qstat_jobs(job_id for _, job_id in rows)
    assert all(job["Job_Name"].startswith("mc_") and job["Job_Owner"].startswith(studies.user + "@")
               for job in jobs.values())
    names = [name for name, _ in rows]
    nodes = studies.wait_for_states(study, {name: "FINISHED" for name in names})
    for (greeting, name) in [("Hello", "Pam"), ("Ciao", "Jim"), ("Hey", "Michael"), ("Hi", "Dwight")]:
        hello = study / nodes[f"hello_world_GREETING.{greeting}.NAME.{name}"]["workspace"]
        assert (hello / f"{greeting}_{name}.txt").read_text() == f"{greeting}, {name}!\n"
        bye = study / nodes[f"bye_world_GREETING.{greeting}.NAME.{name}"]["workspace"] / "bye.txt"
        assert bye.read_text() == "Bye, World!\n"
    # each bye started after its hello ended (afterok)
    for name in names:
        if name.startswith("bye_world"):
            hello = nodes[name.replace("bye_world", "hello_world")]
            assert nodes[name]["start_time"] >= hello["end_time"]
    # without -x, qstat has forgotten finished jobs; status reads the job history (-x)
    plain = run(["qstat", rows[0][1]])
    assert plain.returncode == 35 and "Job has finished" in plain.stderr, plain
    assert {n: node["state"] for n, node in studies.status(study).items()} == {n: "FINISHED" for n in names}
    print(f"hello_bye: submit took {submit_seconds:.2f}s for 8 jobs")


def test_build_archive_with_a_failing_compress_variant(studies):
    folder = studies.copy_example("build_archive")
    spec = folder / "build_archive.yaml"
    text = spec.read_text()
    assert "values: [--fast, --best]" in text
    spec.write_text(text.replace("values: [--fast, --best]", "values: [--fast, --best, --no-such-level]"))
    study = studies.compile(spec)
    studies.maestro("submit", study)
    bad = "compress_COPT.--no-such-level"
    nodes = studies.wait_for_states(study, {"generate": "FINISHED", "build": "FINISHED",
                                            "compress_COPT.--fast": "FINISHED", "compress_COPT.--best": "FINISHED",
                                            bad: "FAILED"})
    assert nodes[bad]["reason"] == "exit code 1", describe(nodes)
    bad_id = nodes[bad]["job_id"]
    # the markers tell status first; PBS records the end a moment later
    job = helpers.wait_until(lambda: (lambda j: j if j.get("job_state") == "F" else None)(qstat_jobs([bad_id])[bad_id]),
                             f"PBS to finish {bad_id}", DEADLINE)
    assert job["Exit_status"] == 1
    import gzip
    archive = study / nodes["build"]["workspace"] / "archive.tar"
    for option in ("--fast", "--best"):
        packed = study / nodes[f"compress_COPT.{option}"]["workspace"] / "archive.tar.gz"
        assert gzip.decompress(packed.read_bytes()) == archive.read_bytes()
    csv_file = studies.root / "status.csv"
    studies.maestro("status", study, "--csv", csv_file)
    assert any(bad in line and "FAILED" in line for line in csv_file.read_text().splitlines())


def test_size_sweep_funnel(studies):
    spec = studies.copy_example("size_sweep") / "size_sweep.yaml"
    study = studies.compile(spec)
    studies.maestro("submit", study)
    sizes = [10, 100, 1000]
    names = [f"run_simulation_SIZE.{n}" for n in sizes] + ["aggregate_results"]
    nodes = studies.wait_for_states(study, {name: "FINISHED" for name in names})
    summary = (study / nodes["aggregate_results"]["workspace"] / "summary.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in summary[1:]] == sizes
    assert nodes["aggregate_results"]["start_time"] >= max(nodes[f"run_simulation_SIZE.{n}"]["end_time"]
                                                           for n in sizes)


# --------------------------------------------------------------------------- failures

SWEEP = """\
    study:
      - name: sim
        description: one point of the sweep; point 1 (not the last to finish) fails
        run:
          cmd: |
            if [ "$(P)" = 1 ]; then exit 5; fi
            sleep $(NAP); echo $(P) > point.txt
      - name: post
        description: per point
        run:
          cmd: cat $(sim.workspace)/point.txt > post.txt
          depends: [sim]
      - name: funnel
        description: all points
        run:
          cmd: touch funnel.txt
          depends: [post_*]
    global.parameters:
      P: {values: [0, 1, 2, 3], label: P.%%}
      NAP: {values: [1, 0, 3, 3], label: NAP.%%}
    """


def test_a_failed_point_that_is_not_the_last_stops_its_descendants_and_the_funnel(studies):
    """What an array could not guarantee on PBS (its exit status is the last sub-job's): sim P=1
    fails first, the later points finish; its post and the funnel must never run."""
    study = studies.compile(studies.spec("sweep", SWEEP))
    studies.maestro("submit", study)
    expected = {f"sim_NAP.{n}.P.{p}": "FINISHED" for p, n in [(0, 1), (2, 3), (3, 3)]}
    expected.update({f"post_NAP.{n}.P.{p}": "FINISHED" for p, n in [(0, 1), (2, 3), (3, 3)]})
    expected.update({"sim_NAP.0.P.1": "FAILED", "post_NAP.0.P.1": "CANCELLED", "funnel": "CANCELLED"})
    nodes = studies.wait_for_states(study, expected)
    assert nodes["sim_NAP.0.P.1"]["end_time"] < max(nodes[f"sim_NAP.3.P.{p}"]["end_time"] for p in (2, 3))
    assert nodes["post_NAP.0.P.1"]["reason"] == "ancestor sim_NAP.0.P.1 failed", describe(nodes)
    assert nodes["funnel"]["reason"] == "ancestor sim_NAP.0.P.1 failed", describe(nodes)
    assert not (study / nodes["funnel"]["workspace"] / "funnel.txt").exists()
    assert not (study / nodes["post_NAP.0.P.1"]["workspace"] / "post.txt").exists()
    from maestro_compile.graph import color
    dot = studies.maestro("graph", study, "--nodes", "--format", "dot").stdout
    for state in ("FAILED", "CANCELLED", "FINISHED"):
        assert f'fillcolor="{color(state)}"' in dot, dot
    # PBS deleted them itself: finished (F, substate 92) without ever running (no Exit_status)
    jobs = qstat_jobs([nodes["post_NAP.0.P.1"]["job_id"], nodes["funnel"]["job_id"]])
    for job in jobs.values():
        assert (job["job_state"], job["substate"], "Exit_status" in job) == ("F", 92, False), job


def test_cancel_deletes_every_job_of_the_study(studies):
    study = studies.compile(studies.spec("cancel", """\
        study:
          - {name: slow, description: d, run: {cmd: sleep 300}}
          - {name: after, description: d, run: {cmd: touch after.txt, depends: [slow]}}
          - {name: last, description: d, run: {cmd: touch last.txt, depends: [after]}}
        """))
    studies.maestro("submit", study)
    studies.wait_for_states(study, {"slow": "RUNNING", "after": "PENDING", "last": "PENDING"})
    out = studies.maestro("cancel", study).stdout
    assert "qdel" in out, out
    nodes = studies.wait_for_states(study, {"slow": "CANCELLED", "after": "CANCELLED", "last": "CANCELLED"})
    assert nodes["slow"]["reason"] == "deleted while running (qdel)", describe(nodes)
    ids = [node["job_id"] for node in nodes.values()]
    assert {job["job_state"] for job in qstat_jobs(ids).values()} == {"F"}   # nothing left held


def test_timeout_and_restart_inside_the_job(studies):
    study = studies.compile(studies.spec("timeout", """\
        study:
          - name: hang
            description: exceeds its walltime
            run: {cmd: sleep 120, walltime: "00:00:05"}
          - name: retry
            description: times out once, then its restart command finishes
            run: {cmd: sleep 120, restart: "touch restarted.txt", walltime: "00:00:03"}
        """), "--rlimit", "1")
    assert "#PBS -l walltime=00:01:06" in (study / "retry" / "retry.pbs.sh").read_text()
    studies.maestro("submit", study)
    nodes = studies.wait_for_states(study, {"hang": "TIMEDOUT", "retry": "FINISHED"}, timeout=200)
    assert nodes["retry"]["restarts"] == 1, describe(nodes)
    assert (study / "retry" / "restarted.txt").exists()
    job = qstat_jobs([nodes["hang"]["job_id"]])[nodes["hang"]["job_id"]]
    assert job["Exit_status"] == -29


def test_failed_submission_is_rolled_back_then_resubmit_reruns_the_failure(studies):
    gate = studies.root / "gate"
    study = studies.compile(studies.spec("rollback", f"""\
        study:
          - name: first
            description: fails until the gate file exists
            run: {{cmd: "test -e {gate}"}}
          - name: second
            description: its queue does not exist, so qsub refuses it
            run:
              cmd: |
                #PBS -q no_such_queue
                touch second.txt
              depends: [first]
        """))
    result = studies.maestro("submit", study, check=False)
    assert result.returncode != 0 and "qsub failed for second" in result.stderr, result.stderr
    rolled = list((study / ".maestro").glob("jobs.rolled-back.*.tsv"))
    assert len(rolled) == 1 and not (study / "jobs.tsv").exists()
    first_id = ledger(rolled[0])[0][1]
    job = qstat_jobs([first_id])[first_id]
    assert (job["job_state"], job["substate"]) == ("F", 91)          # the held root was deleted
    assert {n: node["state"] for n, node in studies.status(study).items()} == \
        {"first": "INITIALIZED", "second": "INITIALIZED"}

    script = study / "second" / "second.pbs.sh"       # fix the cause, as a user would, and submit again
    script.write_text(script.read_text().replace("#PBS -q no_such_queue\n", ""))
    studies.maestro("submit", study)
    again = studies.maestro("submit", study, check=False)
    assert again.returncode != 0 and "already submitted" in again.stderr
    nodes = studies.wait_for_states(study, {"first": "FAILED", "second": "CANCELLED"})
    assert nodes["second"]["reason"] == "ancestor first failed"

    studies.write("gate", "")
    out = studies.maestro("resubmit", study).stdout
    assert "resubmitted 2 node(s)" in out, out
    nodes = studies.wait_for_states(study, {"first": "FINISHED", "second": "FINISHED"})
    assert (study / "second" / "second.txt").exists()
    assert len(ledger(study / "jobs.tsv")) == 4 and nodes["first"]["restarts"] == 1


def tagged(study: Path) -> List[str]:
    """Unfinished jobs of the study found by its tag (the job's project), not by jobs.tsv."""
    tag = "maestro_compile_" + json.loads((study / "study.json").read_text())["id"]
    return run(["qselect", "-P", tag, "-s", "HQRSTWBEU"]).stdout.split()


def chain_of_jobs(studies, name: str, width: int) -> Path:
    """a -> b over `width` walltimes: 2 * width nodes, each a job of its own (PBS makes arrays of
    bundles only), so a submission makes 2 * width qsub calls."""
    values = ", ".join(f'"{1 + i // 60:02d}:{i % 60:02d}:00"' for i in range(width))
    return studies.compile(studies.spec(name, f"""\
        study:
          - {{name: a, description: roots, run: {{cmd: echo a, walltime: $(WT)}}}}
          - {{name: b, description: one per a, run: {{cmd: echo b, walltime: $(WT), depends: [a]}}}}
        global.parameters:
          WT: {{values: [{values}], label: "WT.%%"}}
        """))


def test_kill_9_of_the_submitter_then_submit_recovers(studies):
    study = chain_of_jobs(studies, "killed", 60)
    child = subprocess.Popen([*studies.cli, "submit", str(study)], cwd=studies.root, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    helpers.wait_until(lambda: (study / "jobs.tsv").exists() and len(ledger(study / "jobs.tsv")) >= 4,
                       "4 jobs recorded", DEADLINE, interval=0.01)
    os.killpg(child.pid, 9)
    child.wait()
    killed = {job_id for _, job_id in ledger(study / "jobs.tsv")}
    assert killed <= set(tagged(study)) and len(killed) < 120
    assert any("interrupted" in node["reason"] for node in studies.status(study).values())

    again = studies.maestro("submit", study)
    assert "recovered the interrupted submission" in again.stdout
    new = {job_id for _, job_id in ledger(study / "jobs.tsv")}
    assert killed.isdisjoint(new) and set(tagged(study)) <= new
    assert {job["job_state"] for job in qstat_jobs(killed).values()} == {"F"}   # none left held
    studies.wait_for_states(study, {name: "FINISHED" for name in studies.status(study)}, timeout=DEADLINE * 2)


def server(action: str) -> None:
    """Stop the PBS server alone (`qterm -t quick`: jobs stay, as when a server host goes away) or
    start it again and wait until it answers and its node takes jobs."""
    if action == "stop":
        run(["qterm", "-t", "quick"])
        helpers.wait_until(lambda: run(["qstat", "-B"]).returncode != 0, "the server to stop", 60, interval=0.2)
        return
    if run(["qstat", "-B"]).returncode != 0:
        assert run([str(PBS_EXEC / "sbin" / "pbs_server")]).returncode == 0
    helpers.wait_until(lambda: "state = free" in run(["pbsnodes", "-a"]).stdout or
                       "job-busy" in run(["pbsnodes", "-a"]).stdout, "the server and its node to answer", 120,
                       interval=0.5)


@pytest.fixture
def server_restored(studies):
    yield studies
    server("start")     # a test that failed half-way must not leave the server down


PBS_EXEC = Path("/opt/pbs")     # where tests/pbs/server.sh installs OpenPBS


def qsub_paused_at(studies, call: int) -> List[str]:
    """The CLI's argv with a qsub that, at its `call`-th run, writes `paused` and waits for
    `resume` (both in the studies' folder) before it runs the real qsub."""
    wrappers = studies.root / "bin"
    wrappers.mkdir()
    (wrappers / "qsub").write_text(f"""#!/bin/bash
n=$(( $(cat {wrappers}/calls 2>/dev/null || echo 0) + 1 )); echo $n > {wrappers}/calls
if (( n == {call} )); then
    touch {studies.root}/paused
    for _ in $(seq 1200); do [ -e {studies.root}/resume ] && break; sleep 0.1; done
fi
exec {PBS_EXEC}/bin/qsub "$@"
""")
    (wrappers / "qsub").chmod(0o755)
    studies._own(wrappers)
    return [f"PATH={wrappers}:{entry[5:]}" if entry.startswith("PATH=") else entry for entry in studies.cli]


def test_server_lost_between_two_qsub_calls_then_submit_recovers(server_restored):
    studies = server_restored
    study = chain_of_jobs(studies, "lost", 5)
    child = subprocess.Popen([*qsub_paused_at(studies, 4), "submit", str(study)], cwd=studies.root,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        helpers.wait_until(lambda: (studies.root / "paused").exists() or child.poll() is not None,
                           "the fourth qsub", DEADLINE, interval=0.05)
        server("stop")
        (studies.root / "resume").touch()
        out, err = child.communicate(timeout=DEADLINE)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 1, out + err
    assert "could not confirm that these job(s) are cancelled" in err, err
    assert "nothing of this study is queued" not in err and "Traceback" not in err   # no false claim
    unconfirmed = (study / ".maestro" / "rollback.incomplete").read_text().split()
    assert len(unconfirmed) == 3 and len(ledger(study / "jobs.tsv")) == 3              # kept on record

    server("start")
    assert set(unconfirmed) <= set(tagged(study))      # the held jobs came back with the server
    again = studies.maestro("submit", study)
    assert "recovered the interrupted submission" in again.stdout, again.stdout
    new = {job_id for _, job_id in ledger(study / "jobs.tsv")}
    assert set(unconfirmed).isdisjoint(new) and set(tagged(study)) <= new
    assert {job["job_state"] for job in qstat_jobs(unconfirmed).values()} == {"F"}   # none left held
    studies.wait_for_states(study, {name: "FINISHED" for name in studies.status(study)}, timeout=DEADLINE * 2)


def test_cancel_with_the_server_down_says_so_and_works_once_it_is_back(server_restored):
    studies = server_restored
    study = studies.compile(studies.spec("cancel_down", """\
        study:
          - {name: wait, description: sleeps until cancelled, run: {cmd: sleep 600}}
        """))
    studies.maestro("submit", study)
    (job_id,) = [job_id for _, job_id in ledger(study / "jobs.tsv")]
    server("stop")
    refused = studies.maestro("cancel", study, check=False)
    assert refused.returncode == 69, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr and "pbshost" in refused.stderr, refused.stderr
    assert not (study / ".maestro" / "cancelled").exists()
    server("start")
    done = studies.maestro("cancel", study)
    assert "cancelled 1 queued or running job(s)" in done.stdout, done.stdout
    assert (study / ".maestro" / "cancelled").exists() and not tagged(study)
    assert qstat_jobs([job_id])[job_id]["job_state"] == "F"
