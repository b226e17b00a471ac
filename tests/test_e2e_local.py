"""End-to-end tests of the local backend through the real CLI (`python -m maestro_compile`).

Every study under examples/ is run to completion and its outputs are checked; small studies
written by the tests check the run-time contract of the detached runner: submit returns at once,
failures cascade, cancel stops everything, a study runs only once, --jobs limits concurrency and
the runner lives in its own session.

Steps that must stay "running" for a while wait on a gate file (see ``gated``) instead of sleeping
for a fixed time, so the tests release them as soon as they have looked, and never sleep blindly.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import pytest

import helpers
from maestro_compile.backends import local as local_backend
from helpers import describe, maestro, ok, states, status

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEADLINE = 30.0          # upper bound of any wait; a healthy run needs a small fraction of it
GATE_SECONDS = 15        # how long a gated step waits for its release before failing on its own
HAVE_PROC = Path("/proc/self/stat").exists()


# --------------------------------------------------------------------------- helpers









def wait_until(predicate: Callable[[], object], what: str, timeout: float = DEADLINE, interval: float = 0.05):
    return helpers.wait_until(predicate, what, timeout, interval)


def wait_for_state(study: Path, node: str, state: str) -> Dict[str, dict]:
    def reached():
        nodes = status(study)
        return nodes if nodes[node]["state"] == state else None
    return wait_until(reached, f"{node} to be {state} in {study}")


def wait_for_end(study: Path) -> Dict[str, dict]:
    """Wait until the runner has ended the study; return the final status."""
    wait_until(lambda: (study / ".maestro" / "runner.done").exists(), f"the runner of {study} to finish")
    return status(study)


def assert_all_finished(study: Path, expected: Sequence[str]) -> None:
    nodes = status(study)
    assert sorted(nodes) == sorted(expected), "node names differ from the expected ones"
    assert len(nodes) == len(expected)
    not_finished = {name: (node["state"], node["reason"]) for name, node in nodes.items()
                    if node["state"] != "FINISHED"}
    assert not not_finished
    assert all(node["exit_code"] == 0 for node in nodes.values())


def markers(study: Path, node: dict) -> List[tuple]:
    """The KEY=VALUE lines of ``<workspace>/<name>.status`` (empty if the step never wrote any)."""
    path = study / node["workspace"] / f"{node['name']}.status"
    if not path.exists():
        return []
    return [tuple(line.split("=", 1)) for line in path.read_text().splitlines() if "=" in line]


def runner_pid(study: Path) -> int:
    return int((study / ".maestro" / "runner.pid").read_text())


def alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = proc_stat(pid)
    return fields[0] != "Z" if fields else not HAVE_PROC


def proc_stat(pid: int) -> List[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session, ...
    ([] once the process is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def live_processes() -> Iterator[Tuple[int, List[str]]]:
    """(pid, proc_stat fields) of every live process (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields and fields[0] != "Z":
                yield int(entry.name), fields


def session_members(sid: int) -> List[int]:
    """Live processes whose session id is ``sid``."""
    return [pid for pid, fields in live_processes() if int(fields[3]) == sid]


def gated(name: str) -> str:
    """One line of shell that blocks until $(SPECROOT)/<name> exists (the step fails after GATE_SECONDS)."""
    gate = f'"$(SPECROOT)/{name}"'
    return (f"for _ in $(seq {GATE_SECONDS * 20}); do [ -e {gate} ] && break; sleep 0.05; done; "
            f"[ -e {gate} ] || exit 1")


class Studies:
    """Writes specs into tmp_path and remembers every study so that teardown can stop it."""

    def __init__(self, root: Path):
        self.root = root
        self.dirs: List[Path] = []

    def spec(self, name: str, body: str) -> Path:
        return helpers.write_study_spec(self.root, name, body)

    def release(self, gate: str) -> None:
        (self.root / "spec" / gate).touch()

    def out(self, name: str = "study") -> Path:
        study = self.root / name
        self.dirs.append(study)
        return study

    def compile(self, spec: Path, name: str = "study") -> Path:
        study = self.out(name)
        ok(maestro("compile", spec, "-o", study))
        return study

    def stop_all(self) -> None:
        if (self.root / "spec").is_dir():  # open the gate so that no step lingers
            self.release("release")
        for study in self.dirs:
            pid_file = study / ".maestro" / "runner.pid"
            if pid_file.exists() and alive(runner_pid(study)):
                maestro("cancel", study)


@pytest.fixture
def studies(tmp_path):
    registry = Studies(tmp_path)
    yield registry
    registry.stop_all()


# --------------------------------------------------------------------------- the examples

def check_hello_world(study: Path) -> None:
    assert (study / "hello_world" / "hello_world.txt").read_text() == "Hello, World!\n"


SINGLE_NAMES = ["Pam", "Jim", "Michael", "Dwight"]


def check_hello_world_single(study: Path) -> None:
    for name in SINGLE_NAMES:
        assert (study / "say_hi" / f"NAME.{name}" / f"hello_{name}.txt").read_text() == f"Hello, {name}!\n"


HELLO_BYE = [("Hello", "Pam"), ("Ciao", "Jim"), ("Hey", "Michael"), ("Hi", "Dwight")]  # zipped, not crossed


def check_hello_bye(study: Path) -> None:
    for greeting, name in HELLO_BYE:
        combo = f"GREETING.{greeting}.NAME.{name}"
        assert (study / "hello_world" / combo / f"{greeting}_{name}.txt").read_text() == f"{greeting}, {name}!\n"
        assert (study / "bye_world" / combo / "bye.txt").read_text() == "Bye, World!\n"


def check_build_archive(study: Path) -> None:
    generated = sorted((study / "generate" / "files").iterdir())
    assert [p.name for p in generated] == ["file_1.txt", "file_2.txt", "file_3.txt"]
    tar_path = study / "build" / "archive.tar"
    with tarfile.open(tar_path) as archive:
        members = {m.name.rstrip("/"): m for m in archive.getmembers()}
        assert set(members) == {"files", "files/file_1.txt", "files/file_2.txt", "files/file_3.txt"}
        for path in generated:
            assert archive.extractfile(members[f"files/{path.name}"]).read() == path.read_bytes()
    sizes = {}
    # gzip's header byte 8 (XFL) records the compression: 4 = fastest, 2 = best
    for option, xfl in (("--fast", 4), ("--best", 2)):
        packed = (study / "compress" / f"COPT.{option}" / "archive.tar.gz").read_bytes()
        assert packed[8] == xfl, f"compress_COPT.{option} was not compressed with gzip {option}"
        assert gzip.decompress(packed) == tar_path.read_bytes()
        sizes[option] = len(packed)
    assert sizes["--best"] <= sizes["--fast"]


SIZES = [10, 100, 1000]


def check_size_sweep(study: Path) -> None:
    estimates = {}
    for size in SIZES:
        result = json.loads((study / "run_simulation" / f"SIZE.{size}" / "result.json").read_text())
        assert result["size"] == size
        # midpoint rule for x^2 on [0, 1]: exactly 1/3 - 1/(12 N^2)
        assert result["estimate"] == pytest.approx(1 / 3 - 1 / (12 * size ** 2), rel=1e-9)
        estimates[size] = result["estimate"]
    with open(study / "aggregate_results" / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["size"]) for row in rows] == SIZES
    assert [float(row["estimate"]) for row in rows] == [estimates[size] for size in SIZES]
    errors = [float(row["error"]) for row in rows]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-6


EXAMPLE_CASES = [
    pytest.param("hello_world/hello_world.yaml", ["hello_world"], check_hello_world, id="hello_world"),
    pytest.param("hello_world/hello_world_single.yaml", [f"say_hi_NAME.{n}" for n in SINGLE_NAMES],
                 check_hello_world_single, id="hello_world_single"),
    pytest.param("hello_world/hello_bye_parameterized.yaml",
                 [f"{step}_GREETING.{g}.NAME.{n}" for step in ("hello_world", "bye_world") for g, n in HELLO_BYE],
                 check_hello_bye, id="hello_bye_parameterized"),
    pytest.param("build_archive/build_archive.yaml",
                 ["generate", "build", "compress_COPT.--fast", "compress_COPT.--best"],
                 check_build_archive, id="build_archive"),
    pytest.param("size_sweep/size_sweep.yaml",
                 [f"run_simulation_SIZE.{s}" for s in SIZES] + ["aggregate_results"],
                 check_size_sweep, id="size_sweep"),
]


def test_every_example_is_covered():
    covered = {param.values[0] for param in EXAMPLE_CASES}
    assert {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.yaml")} == covered


@pytest.mark.parametrize("spec, nodes, check", EXAMPLE_CASES)
def test_example_runs_locally(spec, nodes, check, tmp_path, studies):
    example_dir = (EXAMPLES / spec).parent
    before = sorted(p.name for p in example_dir.iterdir())
    study = studies.out()
    result = maestro("run", EXAMPLES / spec, "-o", study, "--wait", "--poll", "0.1", cwd=tmp_path)
    ok(result)
    assert f"{len(nodes)} node(s): {len(nodes)} FINISHED" in result.stdout
    assert_all_finished(study, nodes)
    check(study)
    # -o overrides OUTPUT_PATH: nothing is written next to the spec or in the working directory
    assert sorted(p.name for p in example_dir.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study"]


# --------------------------------------------------------------------------- run-time behaviour

def test_submit_returns_before_the_steps_finish(studies):
    spec = studies.spec("submit_async", f"""
        study:
          - name: slow
            description: runs until the test releases it
            run:
              cmd: |
                {gated('release')}
                echo slow done > slow.txt
          - name: after
            description: needs slow
            run:
              cmd: echo after done > after.txt
              depends: [slow]
        """)
    study = studies.compile(spec)
    started = time.monotonic()
    result = ok(maestro("submit", study))
    took = time.monotonic() - started
    assert took < 3.0, f"submit took {took:.1f}s: it must not wait for the steps"
    first = states(study)
    assert first["slow"] in ("PENDING", "RUNNING") and first["after"] == "PENDING"
    nodes = wait_for_state(study, "slow", "RUNNING")
    assert nodes["after"]["state"] == "PENDING"
    assert not (study / "after" / "after.txt").exists()
    assert "runner pid" in result.stdout

    studies.release("release")
    final = wait_for_end(study)
    assert {name: node["state"] for name, node in final.items()} == {"slow": "FINISHED", "after": "FINISHED"}
    assert (study / "after" / "after.txt").read_text() == "after done\n"


CASCADE = """
    study:
      - name: work
        description: fails for P=2 only
        run:
          cmd: |
            if [ $(P) -eq 2 ]; then echo "failing on purpose" >&2; exit 3; fi
            echo $(P) > out.txt
      - name: child
        description: one per work node
        run:
          cmd: |
            touch ran
            cat $(work.workspace)/out.txt > in.txt
          depends: [work]
      - name: collect
        description: funnel over every work node
        run:
          cmd: touch ran
          depends: [work_*]
      - name: after_collect
        description: below the funnel
        run:
          cmd: touch ran
          depends: [collect]
      - name: independent
        description: an unrelated branch
        run:
          cmd: echo ok > ok.txt
      - name: independent_child
        description: below the unrelated branch
        run:
          cmd: cp $(independent.workspace)/ok.txt copy.txt
          depends: [independent]
    global.parameters:
      P:
        values: [1, 2]
        label: P.%%
    """


def test_failure_cascades_to_descendants_only(studies):
    spec = studies.spec("cascade", CASCADE)
    study = studies.out()
    result = maestro("run", spec, "-o", study, "--wait", "--poll", "0.1")
    assert result.returncode == 2, result.stdout + result.stderr

    nodes = status(study)
    assert {name: node["state"] for name, node in nodes.items()} == {
        "work_P.1": "FINISHED", "work_P.2": "FAILED",
        "child_P.1": "FINISHED", "child_P.2": "CANCELLED",
        "collect": "CANCELLED", "after_collect": "CANCELLED",
        "independent": "FINISHED", "independent_child": "FINISHED",
    }
    assert nodes["work_P.2"]["exit_code"] == 3
    assert "3" in nodes["work_P.2"]["reason"]
    assert (study / "work" / "P.2" / "work_P.2.err").read_text() == "failing on purpose\n"
    for name in ("child_P.2", "collect", "after_collect"):
        assert "work_P.2" in nodes[name]["reason"], f"{name}: {nodes[name]['reason']!r}"
        assert not any(key == "START" for key, _ in markers(study, nodes[name])), f"{name} started"
        assert not (study / nodes[name]["workspace"] / "ran").exists(), f"{name} ran"
    assert (study / "child" / "P.1" / "in.txt").read_text() == "1\n"
    assert (study / "independent_child" / "copy.txt").read_text() == "ok\n"


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc to find the step processes")
def test_cancel_stops_the_running_step_and_starts_nothing_else(studies):
    spec = studies.spec("cancel", """
        study:
          - name: long
            description: runs until cancelled
            run:
              cmd: |
                echo $$ > script.pid
                sleep 60 &
                echo $! > sleep.pid
                wait
          - name: after
            description: depends on long
            run:
              cmd: touch ran
              depends: [long]
          - name: other
            description: independent, but --jobs 1 keeps it waiting
            run:
              cmd: touch ran
        """)
    study = studies.out()
    run = subprocess.Popen([sys.executable, "-m", "maestro_compile", "run", str(spec), "-o", str(study),
                            "--wait", "--poll", "0.1", "--jobs", "1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        long_ws = study / "long"
        wait_until(lambda: (long_ws / "sleep.pid").exists() and (long_ws / "sleep.pid").read_text().strip(),
                   "the long step to start its sleep")
        nodes = wait_for_state(study, "long", "RUNNING")
        assert nodes["after"]["state"] == "PENDING" and nodes["other"]["state"] == "PENDING"
        runner = runner_pid(study)
        step_pids = [int((long_ws / name).read_text()) for name in ("script.pid", "sleep.pid")]
        assert all(alive(pid) for pid in step_pids)

        ok(maestro("cancel", study))
        out, err = run.communicate(timeout=DEADLINE)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 3, out + err  # run --wait reports a cancelled study

    nodes = status(study)
    assert {name: node["state"] for name, node in nodes.items()} == {
        "long": "CANCELLED", "after": "CANCELLED", "other": "CANCELLED"}
    assert nodes["long"]["exit_code"] != 0
    for name in ("after", "other"):
        assert not any(key == "START" for key, _ in markers(study, nodes[name])), f"{name} started"
        assert not (study / name / "ran").exists(), f"{name} ran after the cancel"
    wait_until(lambda: not any(alive(pid) for pid in step_pids + [runner]),
               "the runner and the step processes to exit", timeout=5)
    assert session_members(runner) == [], "processes of the study's session outlived the cancel"
    assert "cancelled" in (study / ".maestro" / "runner.done").read_text()


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc to find the step processes")
def test_a_runner_without_its_own_process_group_stops_every_process_of_its_steps_on_term(studies):
    """submit.sh --foreground started by another program shares that program's process group, so
    the runner cannot signal a group of its own: it stops each step and everything under it."""
    spec = studies.spec("cancel_foreground", """
        study:
          - name: long
            description: runs until cancelled
            run:
              cmd: |
                echo $$ > script.pid
                sleep 60 &
                echo $! > sleep.pid
                wait
          - name: after
            description: depends on long
            run:
              cmd: touch ran
              depends: [long]
        """)
    study = studies.out()
    ok(maestro("compile", spec, "-o", study))
    runner = subprocess.Popen(["bash", str(study / "submit.sh"), "--foreground", "--jobs", "1"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        long_ws = study / "long"
        wait_until(lambda: (long_ws / "sleep.pid").exists() and (long_ws / "sleep.pid").read_text().strip(),
                   "the long step to start its sleep")
        assert os.getpgid(runner.pid) != runner.pid   # the case under test: no group of its own
        step_pids = [int((long_ws / name).read_text()) for name in ("script.pid", "sleep.pid")]
        runner.send_signal(signal.SIGTERM)
        out, _ = runner.communicate(timeout=DEADLINE)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 143, out
    wait_until(lambda: not any(alive(pid) for pid in step_pids), "the step's processes to exit", timeout=5)
    nodes = status(study)
    assert ("SIGNAL", "TERM") in markers(study, nodes["long"])
    assert [key for key, _ in markers(study, nodes["after"])] == ["CANCELLED"]
    assert not (study / "after" / "ran").exists()
    assert "cancelled" in (study / ".maestro" / "runner.done").read_text()


def test_a_study_is_submitted_only_once(studies):
    spec = studies.spec("twice", f"""
        study:
          - name: only
            description: must run exactly once
            run:
              cmd: |
                {gated('release')}
                echo run >> runs.txt
        """)
    study = studies.compile(spec)
    ok(maestro("submit", study))

    again = maestro("submit", study)  # while the first submission runs
    assert again.returncode != 0
    assert "already submitted" in again.stderr and "Traceback" not in again.stderr

    studies.release("release")
    assert wait_for_end(study)["only"]["state"] == "FINISHED"
    late = maestro("submit", study)   # and after it ended
    assert late.returncode != 0 and "already submitted" in late.stderr and "maestro resubmit" in late.stderr
    assert (study / "only" / "runs.txt").read_text() == "run\n"
    assert [key for key, _ in markers(study, status(study)["only"])].count("START") == 1
    assert states(study) == {"only": "FINISHED"}


def test_a_submission_that_died_after_taking_its_lock_is_run_by_resubmit(studies):
    """submit.sh killed between taking the lock and starting the runner: nothing ran, submit
    refuses (the study was submitted) and says what to run, and resubmit runs the whole study."""
    study = studies.compile(studies.spec("lock_only", """
        study:
          - {name: first, description: a root, run: {cmd: echo first > out.txt}}
          - {name: second, description: needs first, run: {cmd: cat ../first/out.txt > out.txt, depends: [first]}}
        """))
    (study / ".maestro").mkdir()
    (study / ".maestro" / "submitted").write_text(f"{int(time.time())} 999999999\n")   # as runner.py writes it
    nodes = status(study)
    assert {(node["state"], node["reason"]) for node in nodes.values()} == {
        ("UNKNOWN", "never started: the runner is not running")}
    refused = maestro("submit", study)
    assert refused.returncode == 1 and f"maestro resubmit {study}" in refused.stderr, refused.stderr
    ok(maestro("resubmit", study))
    assert {node["state"] for node in wait_for_end(study).values()} == {"FINISHED"}
    assert (study / "second" / "out.txt").read_text() == "first\n"


PARALLEL = """
    study:
""" + "".join(f"""
      - name: s{i}
        description: independent step {i}
        run:
          cmd: |
            date +%s%N > begin.ns
            sleep 1
            date +%s%N > end.ns
""" for i in range(3))


@pytest.mark.parametrize("jobs", [1, 3])
def test_jobs_limits_how_many_steps_run_at_once(jobs, studies):
    spec = studies.spec("parallel", PARALLEL)
    study = studies.out()
    ok(maestro("run", spec, "-o", study, "--wait", "--poll", "0.1", "--jobs", jobs))
    assert_all_finished(study, ["s0", "s1", "s2"])
    nodes = status(study)
    precise = sorted((int((study / n / "begin.ns").read_text()), int((study / n / "end.ns").read_text()))
                     for n in nodes)
    if jobs == 1:
        spans = []
        for node in nodes.values():
            keys = dict(markers(study, node))
            spans.append((int(keys["START"]), int(keys["END"])))
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"steps overlap according to their markers: {spans}"
        for (_, end), (start, _) in zip(precise, precise[1:]):
            assert start >= end, "steps overlap according to their own clocks"
    else:  # the control: with room for all three they do overlap, so the check above can fail
        assert max(begin for begin, _ in precise) < min(end for _, end in precise)


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc to inspect sessions")
def test_runner_is_detached_and_survives_its_parent(studies):
    spec = studies.spec("detached", f"""
        study:
          - name: wait
            description: runs until the test releases it
            run:
              cmd: |
                {gated('release')}
                echo released > released.txt
        """)
    study = studies.compile(spec)
    # the parent: a shell that submits and then lingers; we kill its whole process group
    parent = subprocess.Popen(["bash", "-c", '"$1" -m maestro_compile submit "$2" && exec sleep 60',
                               "parent", sys.executable, str(study)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for_state(study, "wait", "RUNNING")
        runner = runner_pid(study)
        assert os.getsid(runner) == runner, "the runner does not lead its own session"
        assert os.getsid(runner) not in (os.getsid(0), os.getsid(parent.pid))
        os.killpg(parent.pid, signal.SIGHUP)
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=DEADLINE)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert alive(runner), "the runner died with its parent"
    assert status(study)["wait"]["state"] == "RUNNING"

    studies.release("release")
    final = wait_for_end(study)
    assert final["wait"]["state"] == "FINISHED"
    assert (study / "wait" / "released.txt").read_text() == "released\n"
    wait_until(lambda: not alive(runner), "the runner to exit once the study ended", timeout=5)


def test_a_read_only_study_directory_is_refused_clearly_and_nothing_starts(studies):
    study = studies.out()
    ok(maestro("compile", EXAMPLES / "hello_world" / "hello_world.yaml", "-o", study))
    # a read-only bind mount: refused even to root, as on a read-only file system
    if subprocess.run(["mount", "--bind", str(study), str(study)], capture_output=True).returncode != 0:
        pytest.skip("needs root to make a read-only mount")
    try:
        assert subprocess.run(["mount", "-o", "remount,ro,bind", str(study)], capture_output=True).returncode == 0
        result = maestro("submit", study)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "cannot write" in result.stderr and "read-only" in result.stderr.lower() and "Traceback" not in result.stderr
        assert states(study) == {"hello_world": "INITIALIZED"}
    finally:
        subprocess.run(["umount", str(study)], capture_output=True)


def test_steps_get_the_default_sigpipe_and_a_missing_script_fails_its_node(studies):
    """The runner is Python, which ignores SIGPIPE: its steps must not inherit that (`yes | head`
    would then complain of a broken pipe and exit 1). A script that cannot start fails its node
    as a shell would (127, the reason in .err) and its descendants do not run."""
    spec = studies.spec("spawn", """
        study:
          - name: pipe
            description: ends a pipe early
            run:
              cmd: yes | head -n 1 > first.txt
          - name: gone
            description: its script is deleted before the run
            run:
              cmd: touch ran
          - name: below
            description: under the deleted one
            run:
              cmd: touch ran
              depends: [gone]
        """)
    study = studies.compile(spec)
    nodes = status(study)
    (study / nodes["gone"]["workspace"] / "gone.sh").unlink()
    runner = subprocess.run(["bash", str(study / "submit.sh"), "--foreground", "--jobs", "2"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE)
    assert runner.returncode == 1, runner.stdout + runner.stderr
    assert "1 failed, 1 not run because an ancestor failed" in runner.stdout
    pipe = study / nodes["pipe"]["workspace"]
    assert (pipe / "first.txt").read_text() == "y\n" and (pipe / "pipe.err").read_text() == ""
    final = status(study)
    assert final["pipe"]["state"] == "FINISHED"
    assert final["gone"]["state"] == "FAILED" and final["gone"]["exit_code"] == 127
    assert "No such file" in (study / nodes["gone"]["workspace"] / "gone.err").read_text()
    assert final["below"]["state"] == "CANCELLED" and "gone" in final["below"]["reason"]
    assert not (study / nodes["below"]["workspace"] / "ran").exists()


def test_submit_without_python_says_so(studies):
    study = studies.compile(studies.spec("nopython", """
        study:
          - name: only
            description: never starts
            run:
              cmd: touch ran
        """))
    env = dict(os.environ, MAESTRO_PYTHON="no-such-python3")
    result = subprocess.run(["bash", str(study / "submit.sh")], env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=30)
    assert result.returncode == 69 and "needs Python 3.8 or later" in result.stderr, result.stderr
    assert not (study / ".maestro").exists() and states(study) == {"only": "INITIALIZED"}


def gated_first_then_second(studies, name: str, before_gate: str = "", other: bool = False) -> Path:
    """A compiled study: `first` runs `before_gate`, then waits for the test's release and writes
    done.txt; `second` needs first; `other` (if asked) is independent. Each of the two writes `ran`."""
    other_step = """
          - name: other
            description: independent
            run:
              cmd: touch ran""" if other else ""
    return studies.compile(studies.spec(name, f"""
        study:
          - name: first
            description: runs until the test releases it
            run:
              cmd: |
                {before_gate or ':'}
                {gated('release')}
                echo done > done.txt
          - name: second
            description: needs first
            run:
              cmd: touch ran
              depends: [first]{other_step}
        """))


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc to find the launcher")
def test_a_launcher_killed_with_sigkill_ends_the_run_and_status_says_what_never_started(studies):
    """The runner's launcher (the process that starts the steps) dies: the runner says so, starts
    nothing more, ends with runner.done; the step that was running finishes on its own, and the
    nodes that never started show UNKNOWN, not PENDING forever."""
    study = gated_first_then_second(studies, "launcher_lost")
    ok(maestro("submit", study))
    wait_for_state(study, "first", "RUNNING")
    runner = runner_pid(study)
    (launcher,) = [pid for pid, fields in live_processes() if int(fields[1]) == runner
                   and b"--launcher" in _cmdline(pid)]
    os.kill(launcher, signal.SIGKILL)
    wait_until(lambda: not alive(runner), "the runner to end without its launcher", timeout=10)
    log = (study / ".maestro" / "runner.log").read_text()
    assert "its launcher stopped; the steps not started yet will not run" in log, log
    assert (study / ".maestro" / "runner.done").read_text().split()[1:] == ["finished", "0", "0"]
    studies.release("release")
    wait_until(lambda: (study / "first" / "done.txt").exists(), "the orphaned step to finish")
    wait_until(lambda: states(study)["first"] == "FINISHED", "the step's markers")
    final = status(study)
    assert final["second"]["state"] == "UNKNOWN" and "never started" in final["second"]["reason"]
    assert not (study / "second" / "ran").exists()


def submit_and_kill_the_runner(studies) -> Tuple[Path, int]:
    """A study of three nodes run with --jobs 1: `first` (gated) runs, `other` waits in the launcher,
    `second` waits for `first`; then the runner dies by SIGKILL. The study and the runner's pid."""
    study = gated_first_then_second(studies, "runner_lost", before_gate="sleep 60 & echo $! > sleep.pid", other=True)
    ok(maestro("submit", study, "--jobs", "1"))
    sleep_pid = study / "first" / "sleep.pid"
    wait_until(lambda: sleep_pid.exists() and sleep_pid.read_text().strip(), "the first step to start")
    runner = runner_pid(study)
    os.kill(runner, signal.SIGKILL)
    wait_until(lambda: not alive(runner), "the runner to die")
    return study, runner


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc to find the step processes")
def test_a_runner_killed_with_sigkill_leaves_running_steps_that_cancel_stops(studies):
    """kill -9 of the runner: its steps go on in its process group. Status says so, resubmit refuses
    to race them, and `maestro cancel` stops them; a resubmission then runs the study to the end."""
    study, runner = submit_and_kill_the_runner(studies)
    nodes = status(study)
    assert nodes["first"]["state"] == "RUNNING" and "runner was killed" in nodes["first"]["reason"]
    assert {nodes[name]["state"] for name in ("second", "other")} == {"UNKNOWN"}
    refused = maestro("resubmit", study)
    assert refused.returncode == 1 and "maestro cancel" in refused.stderr, refused.stderr
    assert session_members(runner), "the steps should outlive their runner"

    cancelled = ok(maestro("cancel", study))
    assert f"runner (pid {runner}) was gone" in cancelled.stdout, cancelled.stdout
    assert session_members(runner) == [], "processes of the killed runner's steps outlived the cancel"
    assert states(study) == {"first": "CANCELLED", "second": "CANCELLED", "other": "CANCELLED"}
    assert ok(maestro("cancel", study)).stdout.startswith("nothing to cancel")

    studies.release("release")
    ok(maestro("resubmit", study))
    wait_until(lambda: set(states(study).values()) == {"FINISHED"}, "the resubmitted study to finish")
    assert (study / "second" / "ran").exists() and (study / "other" / "ran").exists()


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc to find the step processes")
def test_a_killed_runners_launcher_starts_nothing_more_and_exits_quietly(studies):
    study, runner = submit_and_kill_the_runner(studies)
    sleeper = int((study / "first" / "sleep.pid").read_text())
    os.kill(sleeper, signal.SIGTERM)        # the step's own background child; the step waits for the gate
    studies.release("release")
    wait_until(lambda: states(study)["first"] == "FINISHED", "the orphaned step to finish")
    wait_until(lambda: session_members(runner) == [], "the launcher to exit")
    final = status(study)
    assert {final[name]["state"] for name in ("second", "other")} == {"UNKNOWN"}, describe(final)
    assert not (study / "other" / "ran").exists(), "the launcher started a held step after its runner died"
    assert "Traceback" not in (study / ".maestro" / "runner.log").read_text()
    assert ok(maestro("cancel", study)).stdout.startswith("nothing to cancel")
    ok(maestro("resubmit", study))
    wait_until(lambda: set(states(study).values()) == {"FINISHED"}, "the resubmitted study to finish")


@pytest.mark.skipif(not HAVE_PROC or shutil.which("ps") is None, reason="compares /proc with ps")
def test_the_process_list_without_proc_comes_from_ps(monkeypatch):
    """Where there is no /proc (macOS, BSD) a killed runner's steps are found with ps instead."""
    def ours(processes):
        return {pid: (group, command.split()[:3]) for pid, group, _, command in processes if pid == os.getpid()}
    from_proc = ours(local_backend._processes())
    real_isdir = os.path.isdir
    monkeypatch.setattr(local_backend.os.path, "isdir", lambda path: path != "/proc/self" and real_isdir(path))
    assert from_proc[os.getpid()][0] == os.getpgid(0)
    assert ours(local_backend._processes()) == from_proc


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_state_file_that_cannot_be_written_is_reported_without_a_traceback(studies):
    study = studies.compile(studies.spec("unwritable", """
        study:
          - name: only
            description: runs twice
            run:
              cmd: echo run >> runs.txt
        """))
    first = subprocess.run(["bash", str(study / "submit.sh"), "--foreground"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=DEADLINE)
    assert first.returncode == 0, first.stdout + first.stderr
    (study / ".maestro" / "runner.nodes").mkdir()       # where the rerun records its nodes
    nodes = study.parent / "again.nodes"
    nodes.write_text("only\n")
    again = subprocess.run(["bash", str(study / "submit.sh"), "--foreground", "--nodes", str(nodes)],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=DEADLINE)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "runner.nodes" in again.stderr and "Traceback" not in again.stderr, again.stderr
    assert (study / "only" / "runs.txt").read_text() == "run\n"      # nothing ran again
