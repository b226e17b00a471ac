"""End-to-end tests of the Slurm backend against the real one-node cluster of tests/slurm/cluster.sh.

Everything goes through the real CLI (`python -m maestro_compile compile|submit|status|cancel|run`)
and the real Slurm commands; the tests only read what a user could read: the generated submit.sh,
jobs.tsv, the step outputs, `maestro status --json`, and sacct/squeue for the study's own job ids.

The cluster may be shared with other test sessions, so a test only ever looks at (and cancels) the
job ids its own studies wrote into jobs.tsv. Waits poll with a deadline instead of sleeping blindly;
the cluster keeps finished jobs in squeue for a few seconds only (MinJobAge=2), so states read after
the jobs have left squeue come from accounting (sacct).
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import re
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import pytest

import helpers
from helpers import describe, maestro, ok, states, status, workspace

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEADLINE = 120.0          # upper bound of any wait; a healthy run needs a small fraction of it
SQUEUE_DEADLINE = 180.0   # slurmctld purges finished jobs (MinJobAge) on its own schedule
ACTIVE = ("PENDING", "RUNNING", "FINISHED")   # states a node can have while its study is healthy


# --------------------------------------------------------------------------- helpers





def run(argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)








def wait_until(predicate: Callable[[], object], what: str, timeout: float = DEADLINE,
               interval: float = 0.25, detail: Callable[[], str] = lambda: ""):
    return helpers.wait_until(predicate, what, timeout, interval, detail)


def wait_for_states(study: Path, expected: Mapping[str, str], timeout: float = DEADLINE) -> Dict[str, dict]:
    """Wait until `maestro status` shows exactly ``expected`` (node -> state); return the status."""
    last: Dict[str, dict] = {}

    def reached():
        nonlocal last
        last = status(study)
        assert sorted(last) == sorted(expected), f"node names differ: {sorted(last)} != {sorted(expected)}"
        return last if {name: node["state"] for name, node in last.items()} == dict(expected) else None
    return wait_until(reached, f"{study.name} to reach {dict(expected)}", timeout,
                      detail=lambda: "last status:\n" + describe(last))


def wait_all_finished(study: Path, names: Iterable[str], timeout: float = DEADLINE) -> Dict[str, dict]:
    nodes = wait_for_states(study, {name: "FINISHED" for name in names}, timeout)
    assert all(node["exit_code"] == 0 for node in nodes.values()), describe(nodes)
    return nodes


def ledger(study: Path, path: Optional[Path] = None) -> List[Tuple[str, str]]:
    """(node, job id) rows of jobs.tsv, in file order."""
    rows = []
    for line in (path or study / "jobs.tsv").read_text().splitlines():
        parts = line.split("\t")
        assert len(parts) == 3, f"malformed jobs.tsv line {line!r}"
        rows.append((parts[1], parts[2]))
    return rows


def base_ids(ids: Iterable[str]) -> List[str]:
    return sorted({i.split("_")[0] for i in ids}, key=int)


def expand(job_id: str) -> List[str]:
    """sacct/squeue's ``12_[0-2%1]`` -> 12_0, 12_1, 12_2; other ids unchanged."""
    match = re.fullmatch(r"(\d+)_\[([^\]]*)\]", job_id)
    if not match:
        return [job_id]
    result = []
    for part in match.group(2).split("%")[0].split(","):
        low, _, high = part.partition("-")
        result += [f"{match.group(1)}_{i}" for i in range(int(low), int(high or low) + 1)]
    return result


def sacct_states(ids: Iterable[str]) -> Dict[str, str]:
    """job id (123 or 123_4) -> first word of sacct's State, for the given ids' jobs."""
    bases = base_ids(ids)
    result = run(["sacct", "-X", "-P", "-n", "-j", ",".join(bases), "--format=JobID,State"])
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        job_id, _, state = line.partition("|")
        for one in expand(job_id.strip()):
            found[one] = state.split()[0] if state.strip() else ""
    return found


def squeue_ids(ids: Iterable[str], all_states: bool = True) -> List[str]:
    """The given jobs that slurmctld still lists (by default in any state, completed included)."""
    argv = ["squeue", "-h", "-j", ",".join(base_ids(ids)), "-o", "%i"] + (["-t", "all"] if all_states else [])
    result = run(argv)
    if result.returncode != 0:
        assert "Invalid job id" in result.stderr, result.stderr   # none of them is known any more
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def wait_gone_from_squeue(ids: Iterable[str], all_states: bool = True, timeout: float = SQUEUE_DEADLINE) -> None:
    ids = list(ids)
    wait_until(lambda: not squeue_ids(ids, all_states), f"jobs {base_ids(ids)} to leave squeue", timeout,
               interval=1.0, detail=lambda: f"still listed: {squeue_ids(ids, all_states)}")


def wait_sacct(ids: Iterable[str], expected: Mapping[str, str], timeout: float = DEADLINE) -> Dict[str, str]:
    """Wait until sacct shows ``expected`` (job id -> state word) for those ids."""
    ids = list(ids)
    last: Dict[str, str] = {}

    def reached():
        nonlocal last
        last = sacct_states(ids)
        return last if all(last.get(i) == state for i, state in expected.items()) else None
    return wait_until(reached, f"sacct to show {dict(expected)}", timeout, detail=lambda: f"sacct: {last}")


def submit_lines(study: Path) -> List[str]:
    """The `submit JVAR LABEL ARGS...` lines of submit.sh (one per sbatch call), in order."""
    return [line for line in (study / "submit.sh").read_text().splitlines() if re.match(r"submit J\d+ ", line)]


def array_range(line: str) -> Optional[str]:
    match = re.search(r"--array=(\S+)", line)
    return match.group(1) if match else None


def dependency(line: str) -> Optional[str]:
    match = re.search(r"--dependency=([^\"'\s]+)", line)
    return match.group(1) if match else None


class Studies:
    """Writes specs into tmp_path, compiles for Slurm, and cancels every job of the tests' studies
    at teardown (only the ids in their jobs.tsv files, never anyone else's)."""

    def __init__(self, root: Path):
        self.root = root
        self.dirs: List[Path] = []

    def spec(self, name: str, body: str) -> Path:
        return helpers.write_study_spec(self.root, name, body)

    def out(self, name: str = "study") -> Path:
        study = self.root / name
        self.dirs.append(study)
        return study

    def compile(self, spec: Path, *options, name: str = "study") -> Path:
        study = self.out(name)
        ok(maestro("compile", spec, "--backend", "slurm", "-o", study, *options, cwd=self.root))
        return study

    def submit(self, study: Path) -> subprocess.CompletedProcess:
        return ok(maestro("submit", study, cwd=self.root))

    def all_ids(self) -> List[str]:
        ids = []
        for study in self.dirs:
            files = [study / "jobs.tsv"] + sorted((study / ".maestro").glob("jobs.*.tsv"))
            for path in files:
                if path.exists():
                    ids += [job_id for _, job_id in ledger(study, path)]
        return ids

    def tagged_ids(self) -> List[str]:
        """Queued jobs carrying one of the studies' tags (also those whose id never reached a ledger)."""
        tags = []
        for study in self.dirs:
            try:
                tags.append("maestro_compile:" + json.loads((study / "study.json").read_text())["id"])
            except (OSError, ValueError, KeyError):
                pass
        listing = run(["squeue", "--me", "-h", "-o", "%F|%k"]).stdout
        return [line.split("|")[0] for line in listing.splitlines()
                if any(line.split("|", 1)[-1].startswith(tag) for tag in tags)]

    def stop_all(self) -> None:
        ids = self.all_ids() + self.tagged_ids()
        if ids:
            run(["scancel", *base_ids(ids)])


@pytest.fixture
def studies(tmp_path, slurm_cluster):
    registry = Studies(tmp_path)
    yield registry
    registry.stop_all()




def unique(prefix: str) -> str:
    """A step (hence job) name no other test run uses, to find its jobs in sacct by name."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- 1. hello_bye_parameterized

HELLO_BYE = [("Hello", "Pam"), ("Ciao", "Jim"), ("Hey", "Michael"), ("Hi", "Dwight")]   # zipped, not crossed


def test_hello_bye_runs_as_two_arrays_chained_with_aftercorr(studies):
    study = studies.compile(EXAMPLES / "hello_world" / "hello_bye_parameterized.yaml")

    lines = submit_lines(study)
    assert len(lines) == 2, "one sbatch per step (a job array each):\n" + "\n".join(lines)
    hello, bye = lines
    assert " hello_world " in hello and "--hold" in hello and array_range(hello) == "0-3"
    assert dependency(hello) is None
    assert " bye_world " in bye and "--hold" not in bye and array_range(bye) == "0-3"
    assert dependency(bye) == "aftercorr:${J0}"
    assert "--kill-on-invalid-dep=yes" in bye
    submit_text = (study / "submit.sh").read_text()
    assert "sbatch --parsable" in submit_text and "scontrol release" in submit_text

    studies.submit(study)

    rows = ledger(study)
    assert len(rows) == 8
    assert all(re.fullmatch(r"\d+_\d+", job_id) for _, job_id in rows), rows
    by_step: Dict[str, List[str]] = {}
    for node, job_id in rows:
        by_step.setdefault(node.split("_GREETING")[0], []).append(job_id)
    assert sorted(by_step) == ["bye_world", "hello_world"]
    hello_base = {i.split("_")[0] for i in by_step["hello_world"]}
    bye_base = {i.split("_")[0] for i in by_step["bye_world"]}
    assert len(hello_base) == 1 and len(bye_base) == 1 and hello_base != bye_base
    assert [i.split("_")[1] for i in by_step["hello_world"]] == ["0", "1", "2", "3"]
    assert [i.split("_")[1] for i in by_step["bye_world"]] == ["0", "1", "2", "3"]

    names = [f"{step}_GREETING.{g}.NAME.{n}" for step in ("hello_world", "bye_world") for g, n in HELLO_BYE]
    nodes = wait_all_finished(study, names)
    recorded = dict(rows)
    for name, node in nodes.items():
        assert node["job_id"] == recorded[name]
    for greeting, name in HELLO_BYE:
        hello_node = nodes[f"hello_world_GREETING.{greeting}.NAME.{name}"]
        assert hello_node["params"] == {"NAME": name, "GREETING": greeting}
        assert (workspace(study, hello_node) / f"{greeting}_{name}.txt").read_text() == f"{greeting}, {name}!\n"
        bye_node = nodes[f"bye_world_GREETING.{greeting}.NAME.{name}"]
        assert (workspace(study, bye_node) / "bye.txt").read_text() == "Bye, World!\n"
        assert bye_node["start_time"] >= hello_node["end_time"], "task i of bye_world ran before task i of hello_world"


# --------------------------------------------------------------------------- 2. the examples, status from sacct

def test_build_archive_example_and_status_after_jobs_left_squeue(studies):
    study = studies.compile(EXAMPLES / "build_archive" / "build_archive.yaml")
    studies.submit(study)
    names = ["generate", "build", "compress_COPT.--fast", "compress_COPT.--best"]
    nodes = wait_all_finished(study, names)

    files = workspace(study, nodes["generate"]) / "files"
    assert sorted(p.name for p in files.iterdir()) == ["file_1.txt", "file_2.txt", "file_3.txt"]
    for i in (1, 2, 3):
        lines = (files / f"file_{i}.txt").read_text().splitlines()
        assert len(lines) == 200 and lines[0].startswith(f"file {i}, line 1:")
    assert (workspace(study, nodes["generate"]) / "manifest.txt").read_text().split() == \
        ["file_1.txt", "file_2.txt", "file_3.txt"]
    archive = workspace(study, nodes["build"]) / "archive.tar"
    with tarfile.open(archive) as tar:
        members = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert members == ["files/file_1.txt", "files/file_2.txt", "files/file_3.txt"]
    for option in ("--fast", "--best"):
        packed = workspace(study, nodes[f"compress_COPT.{option}"]) / "archive.tar.gz"
        assert gzip.decompress(packed.read_bytes()) == archive.read_bytes()

    # long after the jobs have left squeue, the state still comes from accounting
    ids = [job_id for _, job_id in ledger(study)]
    wait_gone_from_squeue(ids)
    assert states(study) == {name: "FINISHED" for name in names}


def test_build_archive_with_a_failing_compress_variant_shows_it_failed(studies, tmp_path):
    """One compress variant fails (gzip rejects the option); status names it, the others finish."""
    text = (EXAMPLES / "build_archive" / "build_archive.yaml").read_text()
    assert "values: [--fast, --best]" in text
    spec = tmp_path / "build_archive_bad.yaml"
    spec.write_text(text.replace("values: [--fast, --best]", "values: [--fast, --best, --no-such-level]"))
    study = studies.compile(spec)
    studies.submit(study)
    bad = "compress_COPT.--no-such-level"
    nodes = wait_for_states(study, {"generate": "FINISHED", "build": "FINISHED", "compress_COPT.--fast": "FINISHED",
                                    "compress_COPT.--best": "FINISHED", bad: "FAILED"})
    assert nodes[bad]["reason"] == "exit code 1", describe(nodes)
    table = ok(maestro("status", study)).stdout
    assert any(bad in line and "FAILED" in line for line in table.splitlines()), table
    # the shell created the redirect target before gzip refused the option
    assert (workspace(study, nodes[bad]) / "archive.tar.gz").read_bytes() == b""
    job_ids = dict(ledger(study))
    # the marker is written before the job ends; accounting learns of the end a moment later
    wait_sacct([job_ids[bad]], {job_ids[bad]: "FAILED"})


def test_size_sweep_funnel_and_status_after_jobs_left_squeue(studies):
    study = studies.compile(EXAMPLES / "size_sweep" / "size_sweep.yaml")
    studies.submit(study)
    sizes = [10, 100, 1000]
    names = [f"run_simulation_SIZE.{n}" for n in sizes] + ["aggregate_results"]
    nodes = wait_all_finished(study, names)

    for size in sizes:
        node = nodes[f"run_simulation_SIZE.{size}"]
        result = json.loads((workspace(study, node) / "result.json").read_text())
        assert result["size"] == size
        assert result["estimate"] == pytest.approx(1 / 3 - 1 / (12 * size * size), rel=1e-9)
    aggregate = nodes["aggregate_results"]
    with open(workspace(study, aggregate) / "summary.csv", newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["size", "estimate", "error"]
    assert [int(row[0]) for row in table[1:]] == sizes
    # the funnel waited for the whole sweep
    assert aggregate["start_time"] >= max(nodes[f"run_simulation_SIZE.{n}"]["end_time"] for n in sizes)

    ids = [job_id for _, job_id in ledger(study)]
    wait_gone_from_squeue(ids)
    assert states(study) == {name: "FINISHED" for name in names}


# --------------------------------------------------------------------------- 3. failure in the middle

CHAIN = """
study:
    - name: a
      description: first link
      run:
          cmd: echo a > a.txt
    - name: b
      description: fails
      run:
          cmd: |
            echo b > b.txt
            exit 1
          depends: [a]
    - name: c
      description: after b
      run:
          cmd: echo c > c.txt
          depends: [b]
    - name: d
      description: after c
      run:
          cmd: echo d > d.txt
          depends: [c]
    - name: side
      description: independent branch
      run:
          cmd: echo side > side.txt
    - name: side_end
      description: independent branch, second link
      run:
          cmd: cat $(side.workspace)/side.txt > side_end.txt
          depends: [side]
"""
CHAIN_FINAL = {"a": "FINISHED", "b": "FAILED", "c": "CANCELLED", "d": "CANCELLED",
               "side": "FINISHED", "side_end": "FINISHED"}


def check_chain_outcome(study: Path, nodes: Mapping[str, dict]) -> None:
    assert nodes["b"]["exit_code"] == 1
    for name in ("c", "d"):
        assert re.search(r"\bb\b", nodes[name]["reason"]), \
            f"{name} should say it was cancelled because b failed, reason: {nodes[name]['reason']!r}"
        assert not (workspace(study, nodes[name]) / f"{name}.txt").exists(), f"{name} ran"
    assert (workspace(study, nodes["side_end"]) / "side_end.txt").read_text() == "side\n"


def test_failure_cancels_descendants_only(studies):
    study = studies.compile(studies.spec("chain", CHAIN))
    for line in submit_lines(study):
        if " a " not in line and " side " not in line:
            assert "--kill-on-invalid-dep=yes" in line and dependency(line).startswith("afterok:")
    studies.submit(study)
    nodes = wait_for_states(study, CHAIN_FINAL)
    check_chain_outcome(study, nodes)

    # Slurm itself cancelled c and d (kill-on-invalid-dep), and status still says so from sacct alone
    job = dict(ledger(study))
    wait_sacct(job.values(), {job["b"]: "FAILED", job["c"]: "CANCELLED", job["d"]: "CANCELLED",
                              job["side_end"]: "COMPLETED"})
    wait_gone_from_squeue(job.values())
    nodes = status(study)
    assert {name: node["state"] for name, node in nodes.items()} == CHAIN_FINAL
    check_chain_outcome(study, nodes)


# --------------------------------------------------------------------------- 4. failure inside an array

def test_failed_array_task_cancels_only_its_aftercorr_task(studies):
    spec = studies.spec("arrayfail", """
        study:
            - name: work
              description: one combination fails
              run:
                  cmd: |
                    if [ "$(X)" = 2 ]; then exit 3; fi
                    echo $(X) > work.txt
            - name: post
              description: one post per work
              run:
                  cmd: cat $(work.workspace)/work.txt > post.txt
                  depends: [work]
        global.parameters:
            X:
                values: [1, 2, 3]
                label: X.%%
    """)
    study = studies.compile(spec)
    work_line, post_line = submit_lines(study)
    assert array_range(work_line) == "0-2" and array_range(post_line) == "0-2"
    assert dependency(post_line) == "aftercorr:${J0}"
    studies.submit(study)

    expected = {"work_X.1": "FINISHED", "work_X.2": "FAILED", "work_X.3": "FINISHED",
                "post_X.1": "FINISHED", "post_X.2": "CANCELLED", "post_X.3": "FINISHED"}
    nodes = wait_for_states(study, expected)
    assert nodes["work_X.2"]["exit_code"] == 3
    assert "work_X.2" in nodes["post_X.2"]["reason"]
    for x in ("1", "3"):
        assert (workspace(study, nodes[f"post_X.{x}"]) / "post.txt").read_text() == f"{x}\n"
    assert not (workspace(study, nodes["post_X.2"]) / "post.txt").exists()
    job = dict(ledger(study))
    wait_sacct(job.values(), {job["work_X.2"]: "FAILED", job["post_X.2"]: "CANCELLED",
                              job["post_X.1"]: "COMPLETED", job["post_X.3"]: "COMPLETED"})


# --------------------------------------------------------------------------- 5. cancel

def test_cancel_stops_running_step_and_its_dependent(studies):
    spec = studies.spec("cancelme", """
        study:
            - name: long
              description: runs until cancelled
              run:
                  cmd: sleep 300
            - name: after
              description: never runs
              run:
                  cmd: echo after > after.txt
                  depends: [long]
    """)
    study = studies.compile(spec)
    studies.submit(study)
    wait_for_states(study, {"long": "RUNNING", "after": "PENDING"})

    result = ok(maestro("cancel", study))
    assert "scancel" in result.stdout
    nodes = wait_for_states(study, {"long": "CANCELLED", "after": "CANCELLED"})
    assert not (workspace(study, nodes["after"]) / "after.txt").exists()
    ids = [job_id for _, job_id in ledger(study)]
    wait_gone_from_squeue(ids, all_states=False)
    wait_sacct(ids, {job_id: "CANCELLED" for job_id in ids})
    assert states(study) == {"long": "CANCELLED", "after": "CANCELLED"}


# --------------------------------------------------------------------------- 6. rolled-back submission

def test_failed_submission_is_rolled_back_and_can_be_resubmitted(studies):
    spec = studies.spec("rollback", """
        study:
            - name: first
              description: submitted, then rolled back
              run:
                  cmd: echo first > first.txt
            - name: second
              description: its sbatch fails
              run:
                  cmd: |
                    #SBATCH --partition=nosuchpartition
                    cat $(first.workspace)/first.txt > second.txt
                  depends: [first]
    """)
    study = studies.compile(spec)
    script = study / "second" / "second.slurm.sh"
    assert "#SBATCH --partition=nosuchpartition" in script.read_text().split("\n# maestro_compile")[0]

    result = maestro("submit", study)
    assert result.returncode != 0
    error = result.stderr + result.stdout
    assert "invalid partition" in error.lower(), error    # sbatch's own message is shown
    assert not (study / "jobs.tsv").exists(), "jobs.tsv must be moved aside after a rollback"
    aside = sorted((study / ".maestro").glob("jobs.rolled-back.*.tsv"))
    assert len(aside) == 1
    rolled = ledger(study, aside[0])
    assert [node for node, _ in rolled] == ["first"]
    first_id = rolled[0][1]
    assert first_id in error
    # the first job was cancelled before it could run
    wait_sacct([first_id], {first_id: "CANCELLED"})
    assert squeue_ids([first_id], all_states=False) == []
    assert states(study) == {"first": "INITIALIZED", "second": "INITIALIZED"}

    # fix the cause by hand and submit again
    script.write_text("".join(line for line in script.read_text().splitlines(keepends=True)
                              if "nosuchpartition" not in line))
    studies.submit(study)
    nodes = wait_all_finished(study, ["first", "second"])
    assert (workspace(study, nodes["second"]) / "second.txt").read_text() == "first\n"
    assert dict(ledger(study))["first"] != first_id
    assert sacct_states([first_id])[first_id] == "CANCELLED"


# --------------------------------------------------------------------------- 7. submitted once

def test_second_submit_is_refused(studies):
    name = unique("once")
    spec = studies.spec("once", f"""
        study:
            - name: {name}
              description: runs once
              run:
                  cmd: |
                    sleep 1
                    echo once >> once.txt
    """)
    study = studies.compile(spec)
    studies.submit(study)
    before = (study / "jobs.tsv").read_text()

    again = maestro("submit", study)
    assert again.returncode != 0
    assert "already submitted" in again.stderr + again.stdout
    assert (study / "jobs.tsv").read_text() == before
    nodes = wait_all_finished(study, [name])

    again = maestro("submit", study)      # also once the study is over
    assert again.returncode != 0 and "already submitted" in again.stderr + again.stdout
    assert (study / "jobs.tsv").read_text() == before
    assert (workspace(study, nodes[name]) / "once.txt").read_text() == "once\n"
    assert squeue_ids_by_name(name) == []
    jobs = wait_until(lambda: sacct_ids_by_name(name), f"sacct to list the job named {name}")
    assert jobs == [dict(ledger(study))[name]], "exactly one job of the study was ever submitted"


def squeue_ids_by_name(name: str) -> List[str]:
    result = run(["squeue", "-h", "--name", name, "-o", "%i"])
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def sacct_ids_by_name(name: str) -> List[str]:
    result = run(["sacct", "-X", "-P", "-n", "--name", name, "-S", "now-1days", "--format=JobID"])
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


# --------------------------------------------------------------------------- 8. nothing of ours stays alive

def processes() -> Dict[int, Tuple[int, str]]:
    """pid -> (ppid, args) of every process, from ps."""
    result = run(["ps", "-ww", "-eo", "pid=,ppid=,args="])
    assert result.returncode == 0, result.stderr
    table = {}
    for line in result.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            table[int(parts[0])] = (int(parts[1]), parts[2] if len(parts) > 2 else "")
    return table


def under_slurmstepd(table: Mapping[int, Tuple[int, str]]) -> set:
    """slurmstepd processes and all their descendants."""
    inside = {pid for pid, (_, args) in table.items() if args.startswith("slurmstepd")}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in table.items():
            if pid not in inside and ppid in inside:
                inside.add(pid)
                changed = True
    return inside


def cwd_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def study_processes(study: Path) -> Tuple[List[str], List[str]]:
    """(processes outside Slurm's job steps that touch the study, those inside)."""
    table = processes()
    inside = under_slurmstepd(table)
    path = str(study)
    outside_hits, inside_hits = [], []
    for pid, (ppid, args) in table.items():
        if pid == os.getpid():
            continue
        cwd = cwd_of(pid)
        touches = path in args or cwd == path or cwd.startswith(path + os.sep) or \
            ("submit.sh" in args and path in args)
        if touches:
            (inside_hits if pid in inside else outside_hits).append(f"{pid} (ppid {ppid}, cwd {cwd}): {args}")
    return outside_hits, inside_hits


def test_nothing_of_ours_is_alive_after_submit_returns(studies):
    spec = studies.spec("detached", """
        study:
            - name: hold
              description: keeps the jobs running for a while
              run:
                  cmd: |
                    echo hold $(X)
                    sleep 60
            - name: after
              description: pending behind hold
              run:
                  cmd: echo after $(X) > after.txt
                  depends: [hold]
        global.parameters:
            X:
                values: [1, 2]
                label: X.%%
    """)
    study = studies.compile(spec)
    studies.submit(study)

    outside, _ = study_processes(study)
    assert outside == [], "processes left behind by `maestro submit`:\n" + "\n".join(outside)

    # while the jobs run, their processes live under slurmstepd only (and the check does see them)
    wait_for_states(study, {"hold_X.1": "RUNNING", "hold_X.2": "RUNNING",
                            "after_X.1": "PENDING", "after_X.2": "PENDING"})
    outside, inside = wait_until(lambda: (lambda r: r if r[1] else None)(study_processes(study)),
                                 "the running jobs' processes to show up under slurmstepd")
    assert outside == [], "processes outside Slurm touch the study:\n" + "\n".join(outside)
    assert any(str(study) in hit for hit in inside)

    ok(maestro("cancel", study))
    ids = [job_id for _, job_id in ledger(study)]
    wait_gone_from_squeue(ids, all_states=False)


# --------------------------------------------------------------------------- 9. throttle

SWEEP = """
study:
    - name: work
      description: one task per X
      run:
          cmd: |
            sleep 1
            echo $(X) > work.txt
    - name: post
      description: one post per work
      run:
          cmd: cat $(work.workspace)/work.txt > post.txt
          depends: [work]
global.parameters:
    X:
        values: [1, 2, 3]
        label: X.%%
"""


def test_throttle_runs_one_array_task_at_a_time(studies):
    study = studies.compile(studies.spec("throttled", SWEEP), "--throttle", "1")
    work_line, post_line = submit_lines(study)
    assert array_range(work_line) == "0-2%1"
    assert array_range(post_line) == "0-2%1"
    studies.submit(study)
    names = [f"{step}_X.{x}" for step in ("work", "post") for x in (1, 2, 3)]
    nodes = wait_all_finished(study, names)

    spans = sorted((nodes[f"work_X.{x}"]["start_time"], nodes[f"work_X.{x}"]["end_time"]) for x in (1, 2, 3))
    assert all(start is not None and end is not None for start, end in spans), spans
    for (_, previous_end), (next_start, _) in zip(spans, spans[1:]):
        assert next_start >= previous_end, f"throttled tasks overlapped: {spans}"
    for x in (1, 2, 3):
        assert (workspace(study, nodes[f"post_X.{x}"]) / "post.txt").read_text() == f"{x}\n"


# --------------------------------------------------------------------------- 10. arrays split in chunks

def test_max_array_size_splits_arrays_into_chunks(studies):
    study = studies.compile(studies.spec("chunked", SWEEP), "--max-array-size", "2")
    lines = submit_lines(study)
    assert [line.split()[2] for line in lines] == ["work", "work", "post", "post"]
    assert [array_range(line) for line in lines] == ["0-1", "0-0", "0-1", "0-0"]
    variables = [line.split()[1] for line in lines]
    assert dependency(lines[2]) == f"aftercorr:${{{variables[0]}}}"
    assert dependency(lines[3]) == f"aftercorr:${{{variables[1]}}}"
    studies.submit(study)

    rows = dict(ledger(study))
    assert len(base_ids(rows.values())) == 4
    for step in ("work", "post"):
        first, second, third = (rows[f"{step}_X.{x}"] for x in (1, 2, 3))
        assert first.split("_")[0] == second.split("_")[0] != third.split("_")[0]
        assert [first.split("_")[1], second.split("_")[1], third.split("_")[1]] == ["0", "1", "0"]

    names = [f"{step}_X.{x}" for step in ("work", "post") for x in (1, 2, 3)]
    nodes = wait_all_finished(study, names)
    for x in (1, 2, 3):
        assert (workspace(study, nodes[f"post_X.{x}"]) / "post.txt").read_text() == f"{x}\n"


# --------------------------------------------------------------------------- 11. run --wait and status right after submit

def test_run_wait_blocks_until_the_end_and_exits_2_on_a_failure(studies, tmp_path):
    spec = studies.spec("chain", CHAIN)
    study = studies.out()
    result = maestro("run", spec, "--backend", "slurm", "-o", study, "--wait", "--poll", "0.5",
                     cwd=tmp_path, timeout=DEADLINE + 60)
    assert result.returncode == 2, f"{result.stdout}\n{result.stderr}"
    # --wait returned, so the study is over: status at this moment is the final one
    nodes = status(study)
    assert {name: node["state"] for name, node in nodes.items()} == CHAIN_FINAL, \
        f"run --wait returned before the study ended:\n{result.stdout}\n" + describe(nodes)
    check_chain_outcome(study, nodes)
    assert "UNKNOWN" not in result.stdout


def test_status_right_after_submit_knows_every_job(studies):
    """Just after submit, accounting may not have the jobs yet: status must still not call them
    UNKNOWN (a terminal state), it must ask squeue."""
    spec = studies.spec("fresh", """
        study:
            - name: slow
              description: takes a moment
              run:
                  cmd: sleep 3
            - name: after
              description: waits for slow
              run:
                  cmd: echo after > after.txt
                  depends: [slow]
    """)
    study = studies.compile(spec)
    studies.submit(study)
    nodes = status(study)
    assert all(node["state"] in ACTIVE for node in nodes.values()), \
        "right after submit every node must be PENDING/RUNNING/FINISHED:\n" + describe(nodes)
    wait_all_finished(study, ["slow", "after"])


# --------------------------------------------------------------------------- 12. the examples' sweeps are job arrays

@pytest.mark.parametrize("example, step, tasks, child, kind", [
    ("size_sweep/size_sweep.yaml", "run_simulation", 3, "aggregate_results", "afterok"),
    ("build_archive/build_archive.yaml", "compress", 2, None, None),
])
def test_example_sweeps_compile_to_job_arrays(studies, example, step, tasks, child, kind):
    """A step over K combinations is one array --array=0-(K-1), even when its description names a
    parameter; a funnel over it waits on the whole array with afterok."""
    study = studies.compile(EXAMPLES / example)
    lines = submit_lines(study)
    labels = [line.split()[2] for line in lines]
    step_lines = [line for line in lines if line.split()[2] == step]
    assert len(step_lines) == 1, f"step {step} should be one job array, got sbatch calls for {labels}"
    assert array_range(step_lines[0]) == f"0-{tasks - 1}"
    if child:
        var = step_lines[0].split()[1]
        child_line = next(line for line in lines if line.split()[2] == child)
        assert array_range(child_line) is None
        assert dependency(child_line) == f"{kind}:${{{var}}}"
