"""Bundles (docs/big-sweeps.md) without a scheduler: the sizes chosen to fit a queue limit, the
plan of bundle jobs, the rendered scripts, the bundle script's own logic run by hand, the queue
limit read from sacctmgr's output, status of bundled nodes, and the backends that refuse bundles."""
from __future__ import annotations

import getpass
import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from helpers import maestro, write_study_spec
from maestro_compile.backends.lsf import LsfBackend
from maestro_compile.backends.flux import FluxBackend
from maestro_compile.backends.slurm import SlurmBackend
from maestro_compile.bundles import choose, jobs_needed
from maestro_compile.pipeline import Options, build_study, compile_study
from maestro_compile.errors import CompileError, SpecError
from maestro_compile.states import NativeStatus, Runtime, State
from maestro_compile.studydir import parse_markers


def sweep(points: int, backend: str = "slurm", extra_batch: str = "", simulate_run: str = "") -> str:
    """Three steps over X and a funnel: 3 * points + 1 nodes."""
    values = ", ".join(str(i) for i in range(points))
    return f"""\
        batch:
          type: {backend}{extra_batch}
        study:
          - name: prepare
            description: per point
            run:
              cmd: echo prep $(X) > out.txt
              walltime: "00:01:00"
          - name: simulate
            description: per point
            run:
              cmd: |
                if [ -e $(SPECROOT)/fail.$(X) ]; then exit 7; fi
                cat ../../prepare/X.$(X)/out.txt > sim.txt
              depends: [prepare]
              walltime: "00:01:00"{simulate_run}
          - name: analyze
            description: per point
            run:
              cmd: cat ../../simulate/X.$(X)/sim.txt > ana.txt
              depends: [simulate]
          - name: collect
            description: the funnel
            run:
              cmd: cat ../analyze/X.*/ana.txt | wc -l > count.txt
              depends: [analyze_*]
        global.parameters:
          X:
            values: [{values}]
            label: X.%%
        """


def compiled(tmp_path: Path, body: str, name: str = "bundled", **options):
    spec = write_study_spec(tmp_path, name, body)
    return compile_study(Options(spec_path=spec, out_dir=tmp_path / name, **options))


# --- choosing the sizes ---

def test_a_study_that_fits_is_not_bundled():
    choice = choose({"a": 10, "b": 10, "c": 1}, {"a": True, "b": True, "c": False}, {}, 0, 21)
    assert dict(choice.sizes) == {"a": 1, "b": 1, "c": 1} and choice.queued == 21 and not choice.bundled
    assert choice.note == ""


def test_the_smallest_common_size_that_fits():
    choice = choose({"a": 1000, "b": 1000, "c": 1000, "d": 1}, dict.fromkeys("abcd", True), {}, 0, 50)
    # 3 * ceil(1000 / K) + 1 <= 50 -> K = 63 (3 * 16 + 1 = 49); K = 62 gives 3 * 17 + 1 = 52
    assert choice.sizes["a"] == choice.sizes["b"] == choice.sizes["c"] == 63
    assert choice.queued == 49
    assert "63 node(s) per job" in choice.note and "at most 50 queued" in choice.note


@pytest.mark.parametrize("seed", range(40))
def test_the_limit_holds_and_the_size_is_minimal_over_many_shapes(seed):
    rng = random.Random(seed)
    steps = {f"s{i}": rng.choice([1, 1, 2, 7, 50, 333, 1000, 4096]) for i in range(rng.randint(1, 6))}
    can = {step: rng.random() < 0.8 for step in steps}
    fixed = {step: rng.randint(2, 9) for step in steps if can[step] and rng.random() < 0.2}
    limit = rng.randint(1, 3000)
    try:
        choice = choose(steps, can, fixed, 0, limit)
    except CompileError as exc:
        # refused only when even one bundle per free step cannot fit
        best = sum(1 if can[s] and s not in fixed else jobs_needed(n, fixed.get(s, 1) if can[s] else 1)
                   for s, n in steps.items())
        assert best > limit, f"refused although {best} <= {limit}: {exc}"
        return
    queued = sum(jobs_needed(n, choice.sizes[s]) for s, n in steps.items())
    assert queued == choice.queued <= limit
    assert all(choice.sizes[s] == 1 for s in steps if not can[s])
    assert all(choice.sizes[s] == fixed[s] for s in fixed)
    free = [s for s in steps if can[s] and s not in fixed]
    sizes = {choice.sizes[s] for s in free}
    assert len(sizes) <= 1, "one size for every free step"
    if sizes and sizes != {1}:
        smaller = next(iter(sizes)) - 1
        assert sum(jobs_needed(n, smaller if s in free else choice.sizes[s]) for s, n in steps.items()) > limit


def test_steps_that_cannot_be_bundled_are_named_when_nothing_fits():
    with pytest.raises(CompileError) as caught:
        choose({"a": 100, "b": 60}, {"a": True, "b": False}, {}, 0, 50)
    assert "61 queued job(s)" in str(caught.value) and "steps b cannot be bundled" in str(caught.value)


def test_bundle_by_hand_and_a_step_s_own_key(tmp_path):
    body = sweep(10).replace("cat ../../simulate/X.$(X)/sim.txt > ana.txt",
                             "cat ../../simulate/X.$(X)/sim.txt > ana.txt\n              bundle: 5")
    result = compiled(tmp_path, body, bundle=3, max_queued=1000)
    manifest = json.loads((result.directory / "study.json").read_text())
    assert manifest["bundles"] == {"prepare": 3, "simulate": 3, "analyze": 5, "collect": 1}
    assert result.notes == ["bundles: at most 1000 queued job(s) (--max-queued): 3 node(s) per job for step(s) "
                            "prepare, simulate; 5 node(s) per job for step(s) analyze "
                            "(11 job(s) queued for 31 node(s))"]


# --- the plan ---

def test_a_sweep_under_a_limit_chains_bundles_task_to_task_and_the_funnel_waits_for_all(tmp_path):
    result = compiled(tmp_path, sweep(1000), max_queued=50)
    manifest = json.loads((result.directory / "study.json").read_text())
    jobs = manifest["jobs"]
    assert [(j["step"], j["array"], j["tasks"]) for j in jobs] == [
        ("prepare", True, 16), ("simulate", True, 16), ("analyze", True, 16), ("collect", False, 1)]
    assert sum(j["tasks"] for j in jobs) <= 50
    assert [j["depends"] for j in jobs] == [[], [{"job": 0, "kind": "aftercorr"}], [{"job": 1, "kind": "aftercorr"}],
                                            [{"job": 2, "kind": "afterok"}]]
    assert jobs[0]["bundles"] == [63] * 15 + [55]
    submit = (result.directory / "submit.sh").read_text()
    assert "--array=0-15" in submit and "simulate/simulate.bundle.slurm.sh" in submit
    # every node is in the ledger's plan: record_bundles gets the sizes and all 1,000 nodes
    line = next(line for line in submit.splitlines() if line.startswith('record_bundles "${J1}"'))
    assert line.split()[2] == '"' + ",".join(["63"] * 15 + ["55"]) + '"' and len(line.split()) == 3 + 1000


def test_unaligned_bundles_wait_for_the_parent_tasks_that_hold_their_parents(tmp_path):
    body = sweep(6).replace("echo prep $(X) > out.txt", "echo prep $(X) > out.txt\n              bundle: 3") \
        .replace("walltime: \"00:01:00\"\n          - name: analyze",
                 "walltime: \"00:01:00\"\n              bundle: 2\n          - name: analyze")
    result = compiled(tmp_path, body, max_queued=1000)
    jobs = json.loads((result.directory / "study.json").read_text())["jobs"]
    simulate = [j for j in jobs if j["step"] == "simulate"]
    # bundles of 2 under bundles of 3: [0,1] <- task 0; [2,3] <- tasks 0 and 1 (the whole array);
    # [4,5] <- task 1
    assert [j["depends"] for j in simulate] == [
        [{"job": 0, "kind": "afterok", "task": 0}],
        [{"job": 0, "kind": "afterok"}],
        [{"job": 0, "kind": "afterok", "task": 1}]]
    assert len({j["script"] for j in simulate}) == 3


def restart_below_bundles(points: int, backend: str = "slurm", rlimit_walltime: str = "00:01:00") -> str:
    """sweep() with prepare bundled by 2 and simulate given a `restart` (never bundled itself)."""
    body = sweep(points, backend, simulate_run="\n              restart: echo again > again.txt")
    body = body.replace('cmd: echo prep $(X) > out.txt\n              walltime: "00:01:00"',
                        'cmd: echo prep $(X) > out.txt\n              walltime: "00:01:00"\n              bundle: 2')
    return body.replace('walltime: "00:01:00"\n              restart', f'walltime: "{rlimit_walltime}"\n              restart')


def bundle_holding(study: Path, step: str, node: str) -> Path:
    """The bundle script of ``step`` that lists ``node``."""
    return next(script for script in sorted((study / step).glob(f"{step}.bundle*"))
                if f"    {node}\n" in script.read_text())


def header(script: Path, prefix: str):
    return [line[len(prefix) + 1:] for line in script.read_text().splitlines() if line.startswith(prefix + " ")]


def test_a_restart_step_below_bundles_runs_in_bundles_of_one_with_its_restart_directives(tmp_path):
    result = compiled(tmp_path, restart_below_bundles(4), max_queued=1000)
    manifest = json.loads((result.directory / "study.json").read_text())
    simulate = [job for job in manifest["jobs"] if job["step"] == "simulate"]
    assert sum(job["tasks"] for job in simulate) == 4       # one node per bundle, as when unbundled
    script = bundle_holding(result.directory, "simulate", "simulate_X.2")
    lines = header(script, "#SBATCH")
    # Slurm requeues the bundle (the node's self-requeue); each attempt is a run of the bundle:
    # the walltime plus the bundle's margin, the signal as for the node's own job
    assert {"--requeue", "--open-mode=append", "--signal=B:USR1@12", "--time=00:02:00"} <= set(lines), lines
    assert "trap forward_restart USR1" in script.read_text()
    # a bundle without a restart node neither forwards USR1 nor appends its nodes' output
    prepare = (result.directory / "prepare" / "prepare.bundle.slurm.sh").read_text()
    assert "USR1" not in prepare and '>>"$STUDY_DIR' not in prepare


def test_a_restart_step_is_never_bundled_with_others_even_when_the_limit_asks(tmp_path):
    result = compiled(tmp_path, sweep(40, simulate_run="\n              restart: echo again"), max_queued=50)
    assert "step(s) prepare, analyze" in result.notes[0]
    jobs = json.loads((result.directory / "study.json").read_text())["jobs"]
    simulate = [job for job in jobs if job["step"] == "simulate"]
    assert all(size == 1 for job in simulate for size in job["bundles"]) and \
        sum(job["tasks"] for job in simulate) == 40


def fake_scontrol(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$*\" >> '{tmp_path / 'scontrol.log'}'\n")
    (bin_dir / "scontrol").chmod(0o755)
    return bin_dir


def test_a_slurm_bundle_passes_usr1_to_its_restart_node_whose_next_run_takes_the_restart_command(tmp_path):
    body = restart_below_bundles(2).replace("cat ../../prepare/X.$(X)/out.txt > sim.txt",
                                            "echo first; sleep 30")
    study = compiled(tmp_path, body, max_queued=1000).directory
    for task in (0,):
        assert run_task(study / "prepare" / "prepare.bundle.slurm.sh", task).returncode == 0
    script = bundle_holding(study, "simulate", "simulate_X.1")
    task = 1 if "SLURM_ARRAY_TASK_ID:?" in script.read_text() else 0
    env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(task), SLURM_JOB_ID="501", SLURM_CPUS_ON_NODE="1",
               SLURM_JOB_NUM_NODES="1", PATH=f"{fake_scontrol(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    process = subprocess.Popen([str(script)], cwd=script.parent, env=env, stdout=subprocess.PIPE, text=True)
    from helpers import wait_until
    wait_until(lambda: markers(study, "simulate/X.1", "simulate_X.1"), "the node to start", 20)
    process.send_signal(__import__("signal").SIGUSR1)     # Slurm's --signal=B:USR1, to the bundle alone
    wait_until(lambda: (tmp_path / "scontrol.log").exists(), "the node to requeue itself", 20)
    assert (tmp_path / "scontrol.log").read_text() == "requeue 501\n"
    assert process.poll() is None          # the bundle waits for its node until Slurm stops the job
    process.terminate()                    # what the requeue does to the running job
    assert process.wait(timeout=30) == 143
    first = markers(study, "simulate/X.1", "simulate_X.1")
    assert "REQUEUE" in first and first["SIGNAL"] == "TERM"
    assert judge((study / "simulate/X.1/simulate_X.1.status").read_text(), NativeStatus("PENDING", "BeginTime")) \
        == __import__("maestro_compile.states", fromlist=["Verdict"]).Verdict(State.PENDING,
                                                                           "requeued to run its restart command")
    # the requeued job runs the bundle again: its parent still finished, the node takes its restart command
    again = subprocess.run([str(script)], cwd=script.parent, env=dict(env, SLURM_RESTART_COUNT="1"),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    node = markers(study, "simulate/X.1", "simulate_X.1")
    assert node["EXIT_CODE"] == "0" and node.starts == 2
    assert (study / "simulate/X.1/again.txt").read_text() == "again\n"
    assert (study / "simulate/X.1/simulate_X.1.out").read_text() == "first\n"   # the first attempt's output kept
    assert (tmp_path / "scontrol.log").read_text() == "requeue 501\n"


@pytest.mark.parametrize("backend, prefix, limit", [
    # the walltime for the attempt and one restart, the in-job margin, then the bundle's margin
    ("pbs", "#PBS", "-l walltime=00:04:00"),
    ("flux", "# flux:", "-t 240s"),
])
def test_a_bundle_whose_node_restarts_inside_its_job_has_room_for_every_attempt(tmp_path, backend, prefix, limit):
    study = compiled(tmp_path, restart_below_bundles(4, backend), max_queued=1000, max_array_size=1000).directory
    script = bundle_holding(study, "simulate", "simulate_X.2")
    assert limit in header(script, prefix)
    assert "USR1" not in script.read_text()
    if backend == "flux":     # the node's own job inside the bundle's instance gets the same room
        assert "-n 1 -t 180s" in script.read_text()
    study = compiled(tmp_path, restart_below_bundles(4, backend), name="unlimited", max_queued=1000,
                     max_array_size=1000, rlimit=0).directory
    lines = header(bundle_holding(study, "simulate", "simulate_X.2"), prefix)
    assert not any("walltime" in line or line.startswith("-t ") for line in lines), lines


def test_an_lsf_bundle_of_a_restart_node_outlives_the_warning_signal(tmp_path):
    study = compiled(tmp_path, restart_below_bundles(4, "lsf"), max_queued=1000).directory
    script = bundle_holding(study, "simulate", "simulate_X.2")
    lines = header(script, "#BSUB")
    assert {"-wa USR1", "-wt 1", "-W 00:02"} <= set(lines), lines
    assert "trap : USR1" in script.read_text()


def test_a_bundle_key_on_a_step_that_cannot_be_bundled_is_refused(tmp_path):
    body = sweep(4, simulate_run="\n              restart: echo again\n              bundle: 2")
    with pytest.raises(CompileError, match="step 'simulate' has `bundle: 2` but its nodes cannot share one job"):
        compiled(tmp_path, body, max_queued=1000)


def test_the_bundle_key_is_validated(tmp_path):
    for bad in ("0", "two", "1.5"):
        body = sweep(2).replace("cmd: echo prep $(X) > out.txt",
                                f"cmd: echo prep $(X) > out.txt\n              bundle: {bad}")
        spec = write_study_spec(tmp_path, "bad", body)
        with pytest.raises(SpecError, match=r"study\[0\]\.run\.bundle.*expected an integer >= 1"):
            build_study(Options(spec_path=spec, out_dir=tmp_path / "out"))


def test_the_local_backend_runs_nodes_one_by_one_whatever_is_asked(tmp_path):
    result = compiled(tmp_path, sweep(10, "local"), bundle=4, max_queued=2)
    assert result.notes == [] and not list(result.directory.rglob("*.bundle*"))


def test_the_cli_says_what_it_chose(tmp_path):
    result = maestro("compile", write_study_spec(tmp_path, "cli", sweep(100)), "-o", tmp_path / "out",
                     "--max-queued", "40")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == ("bundles: at most 40 queued job(s) (--max-queued): 8 node(s) per job "
                                             "for step(s) prepare, simulate, analyze "
                                             "(40 job(s) queued for 301 node(s))")


# --- the bundle script, run by hand as Slurm would run task i ---

def run_task(script: Path, task: int, cpus: int = 1) -> subprocess.CompletedProcess:
    env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_JOB_ID="77", SLURM_CPUS_ON_NODE=str(cpus),
               SLURM_JOB_NUM_NODES="1")
    return subprocess.run([str(script)], cwd=script.parent, env=env, capture_output=True, text=True, timeout=60)


def markers(directory: Path, workspace: str, name: str):
    path = directory / workspace / f"{name}.status"
    return parse_markers(path.read_text()) if path.exists() else None


def test_a_bundle_runs_its_nodes_and_skips_only_the_descendants_of_a_failed_one(tmp_path):
    result = compiled(tmp_path, sweep(4), bundle=2, max_queued=1000)
    study = result.directory
    (tmp_path / "spec" / "fail.1").write_text("")
    for step in ("prepare", "simulate", "analyze"):
        for task in (0, 1):
            done = run_task(study / step / f"{step}.bundle.slurm.sh", task, cpus=2)
            assert done.returncode == 0, done.stderr   # whatever its nodes returned
    done = run_task(study / "collect" / "collect.bundle.slurm.sh", 0)
    assert done.returncode == 0 and "skipped collect: ancestor simulate_X.1 failed" in done.stdout
    assert markers(study, "simulate/X.1", "simulate_X.1")["EXIT_CODE"] == "7"
    skipped = markers(study, "analyze/X.1", "analyze_X.1")
    assert skipped["REASON"] == "ancestor simulate_X.1 failed" and "SKIPPED" in skipped
    assert skipped["JOB_ID"] == "77_0"
    assert markers(study, "collect", "collect")["REASON"] == "ancestor simulate_X.1 failed"
    for x in (0, 2, 3):   # the siblings went on, each with its own files
        assert markers(study, f"analyze/X.{x}", f"analyze_X.{x}")["EXIT_CODE"] == "0"
        assert (study / f"analyze/X.{x}/ana.txt").read_text() == f"prep {x}\n"
    # a node's step script is still runnable by hand
    node = study / "collect" / "collect.slurm.sh"
    assert subprocess.run([str(node)], cwd=node.parent, capture_output=True).returncode == 0


def test_a_cancelled_bundle_stops_its_running_nodes(tmp_path):
    body = sweep(2).replace("echo prep $(X) > out.txt", "sleep 30; echo $(X)")
    study = compiled(tmp_path, body, bundle=2, max_queued=1000).directory
    script = study / "prepare" / "prepare.bundle.slurm.sh"
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="0", SLURM_CPUS_ON_NODE="2", SLURM_JOB_NUM_NODES="1")
    process = subprocess.Popen([str(script)], cwd=script.parent, env=env, stdout=subprocess.PIPE, text=True)
    from helpers import wait_until
    wait_until(lambda: all(markers(study, f"prepare/X.{x}", f"prepare_X.{x}") for x in (0, 1)), "both started", 20)
    process.terminate()
    assert process.wait(timeout=30) == 143    # the bundle broke: its dependents must not run
    for x in (0, 1):
        assert markers(study, f"prepare/X.{x}", f"prepare_X.{x}")["SIGNAL"] == "TERM"


# --- the cluster's limit, from sacctmgr's answers ---

USER = "root\n"
ASSOCIATIONS = "mcbundle|50||normal|\nmcacct|||normal,big|normal\nroot|||normal|\n"
QOS = "normal||\nbig|20|\nsmall|5|100\n"


@pytest.mark.parametrize("batch, limit", [
    ({}, None),                                   # the default account (root) has no limit
    ({"bank": "mcbundle"}, 50),
    ({"bank": "mcacct"}, None),
    ({"bank": "mcacct", "qos": "big"}, 20),       # the QOS's MaxSubmitJobsPerUser
    ({"bank": "mcbundle", "qos": "small"}, 5),
    ({"bank": "elsewhere"}, None),
])
def test_the_queue_limit_is_the_account_s_and_its_qos_s(batch, limit):
    assert SlurmBackend().parse_queue_limit([USER, ASSOCIATIONS, QOS], batch) == limit


def test_no_answer_means_no_limit():
    assert SlurmBackend().parse_queue_limit(["", "", ""], {"bank": "x"}) is None
    commands = SlurmBackend().queue_limit_commands("someone")
    assert [c.argv[:4] for c in commands] == [("sacctmgr", "-n", "-P", "show")] * 3
    assert all(c.optional and c.timeout <= 5 for c in commands)
    assert SlurmBackend().queue_limit_commands("") == []


def test_the_limit_read_from_the_cluster_bundles_the_study(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sacctmgr"
    fake.write_text("#!/bin/sh\ncase \"$4\" in\n  user) echo acct ;;\n  assoc) echo 'acct|30||normal|' ;;\n"
                    "  qos) echo 'normal||' ;;\nesac\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    result = compiled(tmp_path, sweep(100), max_array_size=1000)
    assert "at most 30 queued job(s) (the cluster's MaxSubmitJobs, from sacctmgr)" in result.notes[0]
    jobs = json.loads((result.directory / "study.json").read_text())["jobs"]
    assert sum(j["tasks"] for j in jobs) <= 30


def test_a_cluster_that_does_not_answer_is_asked_once_and_means_no_limit(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "sacctmgr"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> '{calls}'\necho 'sacctmgr: error: slurmdbd unreachable' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    result = compiled(tmp_path, sweep(100), max_array_size=1000)
    assert result.notes == [] and len(calls.read_text().splitlines()) == 1
    jobs = json.loads((result.directory / "study.json").read_text())["jobs"]
    assert "bundles" not in json.loads((result.directory / "study.json").read_text())
    assert [job["tasks"] for job in jobs] == [100, 100, 100, 1]


# --- LSF: the user's pending-job threshold, from busers -w ---

BUSERS_HEADER = "USER/GROUP          JL/P    MAX  NJOBS   PEND    RUN  SSUSP  USUSP    RSV  MPEND  PJOBS MPJOBS\n"


@pytest.mark.parametrize("output, limit", [
    (BUSERS_HEADER + "alice                  -     12      4      2      1      1      0      0      -      2    500\n", 500),
    # the slot threshold bounds the jobs too (a pending job holds at least one slot)
    (BUSERS_HEADER + "alice                  -      -      0      0      0      0      0      0    300      0   1000\n", 300),
    (BUSERS_HEADER + "alice                  -      -      0      0      0      0      0      0      -      0      -\n", None),
    # before LSF 10.1.0.3 busers -w had no PJOBS/MPJOBS and MPEND was MAX_PEND_JOBS
    ("USER/GROUP          JL/P    MAX  NJOBS   PEND    RUN  SSUSP  USUSP    RSV  MPEND\n"
     "alice                  -     10      0      0      0      0      0      0    200\n", 200),
    ("", None),                                                 # no answer (mbatchd out of reach)
    ("bob: No such user or user group\n", None),                # a user LSF does not know
    (BUSERS_HEADER, None),                                      # a header and no row for the user
])
def test_the_lsf_limit_is_the_user_s_smallest_pending_threshold(output, limit):
    assert LsfBackend().parse_queue_limit([output], {}) == limit


def test_lsf_asks_busers_for_the_user_only_when_there_is_a_user():
    commands = LsfBackend().queue_limit_commands("alice")
    assert [c.argv for c in commands] == [("busers", "-w", "alice")]
    assert commands[0].optional and commands[0].timeout <= 5
    assert LsfBackend().queue_limit_commands("") == []


def test_lsf_compile_fits_the_pending_threshold_read_from_busers(tmp_path):
    from test_doubles_e2e import Scheduler
    lsf = Scheduler("lsf", tmp_path, LSF_DOUBLE_MAX_PEND_JOBS="10")
    try:
        study = lsf.root / "fitted"
        result = lsf.ok("compile", lsf.spec("fitted", sweep(6)), "--backend", "lsf", "-o", study)
        lsf.studies.append(study)
        assert "at most 10 queued job(s) (your pending-job limit (MAX_PEND_JOBS), from busers -w)" in result.stdout
        jobs = json.loads((study / "study.json").read_text())["jobs"]
        assert sum(j["tasks"] for j in jobs) <= 10
        # the double refuses a submission past the threshold: every bundle gets in, and all the nodes run
        lsf.env["LSB_NTRIES"] = "1"
        lsf.submit(study)
        lsf.wait_for(study, {f"{step}_X.{x}": "FINISHED" for step in ("prepare", "simulate", "analyze")
                             for x in range(6)} | {"collect": "FINISHED"})
    finally:
        lsf.stop()


def test_an_explicit_max_queued_wins_and_busers_is_not_asked(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "busers"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> '{calls}'\nprintf '{BUSERS_HEADER}'\n"
                    "echo 'me  -  -  0  0  0  0  0  0  -  0  5'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    result = compiled(tmp_path, sweep(6, backend="lsf"), name="explicit", max_queued=100)
    assert result.notes == [] and not calls.exists()
    assert [job["tasks"] for job in json.loads((result.directory / "study.json").read_text())["jobs"]] == [6, 6, 6, 1]
    limited = compiled(tmp_path, sweep(6, backend="lsf"), name="asked")
    assert calls.read_text().split() == ["-w", getpass.getuser()]
    assert "at most 5 queued job(s) (your pending-job limit (MAX_PEND_JOBS), from busers -w)" in limited.notes[0]


# --- status of bundled nodes ---

def judge(markers_text: str, native, bundled: bool = True, parents=(), shown=None):
    runtime = Runtime(submitted_at=1.0, jobs={"n": native, "p": None}, parents={"n": tuple(parents)},
                      shown=shown or {}, bundled=frozenset({"n"} if bundled else ()))
    return SlurmBackend().judge("n", parse_markers(markers_text), True, runtime)


@pytest.mark.parametrize("text, native, expected", [
    ("START=1\nEND=2\nEXIT_CODE=0\n", NativeStatus("COMPLETED"), (State.FINISHED, "")),
    ("START=1\nEND=2\nEXIT_CODE=3\n", NativeStatus("COMPLETED"), (State.FAILED, "exit code 3")),
    ("JOB_ID=1_0\nSKIPPED=5\nREASON=ancestor a failed\n", NativeStatus("COMPLETED"),
     (State.CANCELLED, "ancestor a failed")),
    ("", NativeStatus("RUNNING"), (State.PENDING, "waiting for its turn in its bundle")),
    ("", NativeStatus("PENDING", "JobHeldUser"), (State.PENDING, "held (released once the whole study is queued)")),
    ("START=1\n", NativeStatus("RUNNING"), (State.RUNNING, "")),
    ("START=1\n", NativeStatus("TIMEOUT"), (State.TIMEDOUT, "its bundle ended (TIMEOUT) while the node ran")),
    ("", NativeStatus("TIMEOUT"), (State.CANCELLED, "its bundle ended (TIMEOUT) before the node started")),
    ("START=1\nSIGNAL=TERM\nEND=2\nEXIT_CODE=143\n", NativeStatus("CANCELLED by 0"),
     (State.CANCELLED, "its bundle was stopped (CANCELLED by 0) while the node ran")),
    ("START=1\nSIGNAL=TERM\nEND=2\nEXIT_CODE=143\n", NativeStatus("TIMEOUT"),
     (State.TIMEDOUT, "its bundle was stopped (TIMEOUT) while the node ran")),
    ("START=1\nEND=2\nEXIT_CODE=0\n", None, (State.FINISHED, "")),
])
def test_a_bundled_node_is_judged_by_its_markers_first(text, native, expected):
    verdict = judge(text, native)
    assert (verdict.state, verdict.reason) == expected


def test_a_bundle_killed_for_a_failed_parent_bundle_names_the_ancestor():
    verdict = judge("", NativeStatus("CANCELLED", "DependencyNeverSatisfied"), parents=["p"],
                    shown={"p": State.TIMEDOUT})
    assert (verdict.state, verdict.reason) == (State.CANCELLED, "ancestor p failed")
    # a node of an ordinary job is judged as before: its job's COMPLETED counts
    assert judge("", NativeStatus("COMPLETED"), bundled=False).state == State.FINISHED


def test_a_resubmission_of_bundled_nodes_queues_bundles_within_the_limit(tmp_path):
    # one job per node would be 9 jobs, more than 8; in bundles of 5 it is 2 (tests/test_resubmit_bundles.py)
    from maestro_compile.studydir import StudyDir
    study = StudyDir.open(compiled(tmp_path, sweep(10), max_queued=8).directory)
    assert study.manifest.get("max_queued") == 8
    names = [name for name in study.manifest.nodes if name.startswith("simulate")][:9]
    text = SlurmBackend().render_resubmit(study, names, {
        "study_name": "s", "number": 1, "created": "now", "ledger_size": 0, "node_count": 9, "counts": "9 FAILED",
        "jobs_limit": 1, "logs": []})
    assert "submit J1 " in text and "submit J2 " not in text


# --- LSF, against the command double of tests/doubles/lsf (it runs the jobs for real) ---

def test_lsf_bundles_cascade_a_failure_to_its_descendants_only_and_resubmit_reruns_only_them(tmp_path):
    from test_doubles_e2e import Scheduler
    lsf = Scheduler("lsf", tmp_path)
    try:
        spec = lsf.spec("lsfbundles", sweep(6).replace("$(SPECROOT)/fail", str(tmp_path / "fail")))
        (tmp_path / "fail.1").write_text("")
        study = lsf.compile(spec, "--bundle", "3", "--max-queued", "100")
        text = (study / "submit.sh").read_text()
        header = (study / "simulate/simulate.bundle.lsf.sh").read_text()
        assert 'done(${J0}[*])' in text and '-J "simulate[1-2]"' in header
        lsf.submit(study)
        expected = {f"{step}_X.{x}": "FINISHED" for step in ("prepare", "simulate", "analyze") for x in range(6)}
        expected.update({"simulate_X.1": "FAILED", "analyze_X.1": "CANCELLED", "collect": "CANCELLED"})
        nodes = lsf.wait_for(study, expected)
        assert nodes["collect"]["reason"] == "ancestor simulate_X.1 failed"
        # the failed node shares its job with its bundle's siblings: element 1 of the array (LSF counts from 1)
        assert nodes["simulate_X.0"]["job_id"] == nodes["simulate_X.1"]["job_id"] == nodes["simulate_X.2"]["job_id"]
        assert nodes["simulate_X.1"]["job_id"].endswith("[1]") and nodes["simulate_X.4"]["job_id"].endswith("[2]")
        (tmp_path / "fail.1").unlink()
        lsf.ok("resubmit", study)
        lsf.wait_for(study, dict.fromkeys(expected, "FINISHED"))
        assert (study / "analyze/X.1/ana.txt").read_text() == "prep 1\n"
    finally:
        lsf.stop()


def test_lsf_a_restart_node_below_bundles_requeues_its_bundle_and_finishes_with_its_restart(tmp_path):
    from test_doubles_e2e import Scheduler
    lsf = Scheduler("lsf", tmp_path)
    try:
        # the double's minute is 2 s: a bundle of one 3-minute node has -W 00:04 (8 s), USR1 2 s before
        body = restart_below_bundles(2, "lsf", "00:03:00").replace(
            "cat ../../prepare/X.$(X)/out.txt > sim.txt",
            "echo first >> attempts.txt\n                if [ $(X) = 0 ]; then sleep 60; fi\n"
            "                cat ../../prepare/X.$(X)/out.txt > sim.txt")
        body = body.replace("restart: echo again > again.txt",
                            "restart: echo again >> attempts.txt; cat ../../prepare/X.$(X)/out.txt > sim.txt")
        study = lsf.compile(lsf.spec("lsfrestart", body), "--max-queued", "100")
        lsf.submit(study)
        first_ids = dict(ledger_rows(study))
        nodes = lsf.wait_for(study, {name: "FINISHED" for name in first_ids}, timeout=90)
        assert (study / "simulate/X.0/attempts.txt").read_text() == "first\nagain\n"
        assert (study / "simulate/X.1/attempts.txt").read_text() == "first\n"
        assert nodes["simulate_X.0"]["restarts"] == 1 and nodes["simulate_X.1"]["restarts"] == 0
        assert dict(ledger_rows(study)) == first_ids       # brequeue kept the bundle's id
        assert (study / "collect/count.txt").read_text().strip() == "2"
    finally:
        lsf.stop()


def ledger_rows(study: Path):
    return [tuple(line.split("\t")[1:]) for line in (study / "jobs.tsv").read_text().splitlines()]


# --- Flux: each bundle a `flux batch` job whose own instance runs its nodes ---

# Stands in for `flux` inside a bundle's instance: bulksubmit and batch --wrap run the nodes at
# once, one after another (cwd and output files as given), queue drain and cancel do nothing.
# Every call is logged.
FAKE_FLUX = r'''#!/usr/bin/env python3
import os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_FLUX_LOG"], "a") as log:
    log.write(repr(args) + "\n")

def option(words, name):
    return next(w.split("=", 1)[1] for w in words if w.startswith(name + "="))

def run(script, cwd, out, err):
    with open(out, "w") as stdout, open(err, "w") as stderr:
        subprocess.run([script], cwd=cwd, stdout=stdout, stderr=stderr)

if args[0] == "bulksubmit":
    cut = args.index(":::")
    lists, current = [], None
    for word in args[cut:]:
        if word in (":::", ":::+"):
            current = []
            lists.append(current)
        else:
            current.append(word)
    for name, cwd, out, err, script in zip(*lists):
        run(script, cwd, out, err)
elif args[0] == "batch":
    run(args[-1], option(args, "--cwd"), option(args, "--output"), option(args, "--error"))
'''


def fake_flux(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "flux").write_text(FAKE_FLUX)
    (bin_dir / "flux").chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_FLUX_LOG=str(tmp_path / "flux.log"),
                FLUX_ENCLOSING_ID="ƒbundle")


def test_a_flux_bundle_is_a_batch_job_chained_with_afterany_and_every_node_is_in_the_ledger(tmp_path):
    result = compiled(tmp_path, sweep(7, "flux", extra_batch="\n          queue: pdebug"), bundle=3)
    study = result.directory
    assert result.notes == ["bundles: 3 node(s) per job for step(s) prepare, simulate, analyze "
                            "(10 job(s) queued for 22 node(s))"]
    plan = [json.loads(line) for line in (study / "flux-plan.jsonl").read_text().splitlines()]
    assert len(plan) == 10 and {entry["flux"][0] for entry in plan} == {"batch"}
    assert {entry["dependency"] for entry in plan} == {"afterany"}
    assert sorted(n for entry in plan for n in entry["nodes"]) == sorted(json.loads(
        (study / "study.json").read_text())["nodes"])
    # one bundle per job: simulate's second bundle waits for prepare's second, the funnel for all of analyze
    by_script = {entry["flux"][-1].rsplit("/", 1)[1]: entry for entry in plan}
    assert by_script["simulate.bundle1.flux.sh"]["after"] == [by_script["prepare.bundle1.flux.sh"]["job"]]
    assert by_script["simulate.bundle1.flux.sh"]["nodes"] == ["simulate_X.3", "simulate_X.4", "simulate_X.5"]
    assert len(by_script["collect.bundle.flux.sh"]["after"]) == 3
    # the header one node gets (queue included), the time limit for 3 nodes of 60 s one after another
    script = (study / "simulate" / "simulate.bundle1.flux.sh").read_text()
    header = [line for line in script.splitlines() if line.startswith("# flux:")]
    assert header == ["# flux: --job-name=simulate.bundle1", "# flux: --output=simulate.bundle1.log",
                      "# flux: --error=simulate.bundle1.log", "# flux: -n 1", "# flux: -q pdebug", "# flux: -t 240s"]
    # inside, each node as one task with its own walltime, the queue left to the bundle
    assert "flux bulksubmit --quiet -n 1 -t 60s --job-name={0}" in script
    # job by job (resubmission scripts' way), the same dependency
    submit = FluxBackend().render_submit_job_by_job(*build_plan(tmp_path / "again", sweep(7, "flux"), bundle=3))
    assert "--dependency=afterany:${J0}" in submit and "--dependency=afterok:$" not in submit


def build_plan(tmp_path: Path, body: str, **options):
    from maestro_compile.pipeline import plan_study
    tmp_path.mkdir()
    spec = write_study_spec(tmp_path, "plan", body)
    study = build_study(Options(spec_path=spec, out_dir=tmp_path / "plan", **options))
    return study, plan_study(study, FluxBackend())


def test_flux_asks_no_queue_limit_and_max_queued_fits_the_study(tmp_path):
    assert FluxBackend().queue_limit_commands("someone") == []
    result = compiled(tmp_path, sweep(100, "flux"), max_queued=40)
    assert "at most 40 queued job(s) (--max-queued)" in result.notes[0]
    plan = (result.directory / "flux-plan.jsonl").read_text().splitlines()
    assert len(plan) <= 40


def run_flux_bundle(script: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(script)], cwd=script.parent, env=env, capture_output=True, text=True, timeout=60)


def test_a_flux_bundle_runs_its_nodes_in_its_instance_and_skips_only_the_descendants_of_a_failed_one(tmp_path):
    study = compiled(tmp_path, sweep(4, "flux"), bundle=2).directory
    (tmp_path / "spec" / "fail.1").write_text("")
    env = fake_flux(tmp_path)
    for step in ("prepare", "simulate", "analyze"):
        for number in ("", "1"):
            done = run_flux_bundle(study / step / f"{step}.bundle{number}.flux.sh", env)
            assert done.returncode == 0, done.stderr   # whatever its nodes returned
    done = run_flux_bundle(study / "collect" / "collect.bundle.flux.sh", env)
    assert done.returncode == 0 and "skipped collect: ancestor simulate_X.1 failed" in done.stdout
    assert markers(study, "simulate/X.1", "simulate_X.1")["EXIT_CODE"] == "7"
    skipped = markers(study, "analyze/X.1", "analyze_X.1")
    assert skipped["REASON"] == "ancestor simulate_X.1 failed" and "SKIPPED" in skipped
    for x in (0, 2, 3):   # the siblings went on, each in its workspace with its own files, the bundle's id
        node = markers(study, f"analyze/X.{x}", f"analyze_X.{x}")
        assert node["EXIT_CODE"] == "0" and node["JOB_ID"] == skipped["JOB_ID"] == "ƒbundle"
        assert (study / f"analyze/X.{x}/ana.txt").read_text() == f"prep {x}\n"
    calls = [eval(line) for line in (tmp_path / "flux.log").read_text().splitlines()]   # noqa: S307 (our log)
    analyze = [call for call in calls if call[0] == "bulksubmit" and "analyze_X.0" in call]
    # one submission for the bundle's nodes that may run: analyze_X.1 is not among them
    assert len(analyze) == 1 and "analyze_X.1" not in analyze[0]
    assert analyze[0][analyze[0].index(":::+") + 1] == str(study / "analyze" / "X.0")
    assert sum(1 for call in calls if call[:2] == ["queue", "drain"]) == 7   # each bundle waits for its queue


def test_a_flux_bundle_of_nodes_with_an_allocation_runs_each_in_an_instance_of_its_own(tmp_path):
    body = sweep(2, "flux").replace("echo prep $(X) > out.txt",
                                    "echo prep $(X) > out.txt\n              nodes: 1\n              procs: 2")
    study = compiled(tmp_path, body, bundle=2).directory
    script = study / "prepare" / "prepare.bundle.flux.sh"
    text = script.read_text()
    assert "# flux: -N 1\n# flux: -n 2\n" in text
    done = run_flux_bundle(script, fake_flux(tmp_path))
    assert done.returncode == 0, done.stderr
    calls = [eval(line) for line in (tmp_path / "flux.log").read_text().splitlines()]   # noqa: S307 (our log)
    batches = [call for call in calls if call[0] == "batch"]
    assert len(batches) == 2 and all(call[1:5] == ["-N", "1", "-n", "2"] and "--wrap" in call for call in batches)
    assert (study / "prepare/X.1/out.txt").read_text() == "prep 1\n"


# --- PBS: arrays of bundles only, each waiting for whole parent jobs (afterany) ---

def submit_lines(study: Path):
    return [line for line in (study / "submit.sh").read_text().splitlines() if line.startswith("submit J")]


def test_pbs_makes_arrays_of_bundles_only_and_plain_nodes_stay_one_job_each(tmp_path):
    # prepare is not bundled (one job per node, as without bundles); simulate is, by 2; analyze and
    # collect run below it in bundles of one node
    body = sweep(6, "pbs").replace("walltime: \"00:01:00\"\n          - name: analyze",
                                   "walltime: \"00:01:00\"\n              bundle: 2\n          - name: analyze")
    study = compiled(tmp_path, body, max_queued=1000, max_array_size=10000).directory
    jobs = json.loads((study / "study.json").read_text())["jobs"]
    # bundle i of simulate waits for two plain jobs: not a mapping an array can express, so each
    # bundle is a job of its own (as on Slurm), and so are those below it
    assert [(j["step"], j["array"], j.get("bundles")) for j in jobs] == \
        [("prepare", False, None)] * 6 + [("simulate", False, [2])] * 3 + [("analyze", False, [1])] * 6 + \
        [("collect", False, [1])]
    lines = submit_lines(study)
    assert all(" -h " in line and "-J" not in line for line in lines[:6])
    assert '-W "depend=afterany:${J2}:${J3}" ' in lines[7]
    assert '-W "depend=afterany:${J7}" ' in lines[11]
    header = (study / "simulate" / "simulate.bundle1.pbs.sh").read_text()
    assert "#PBS -o simulate.bundle1.log\n" in header and "#PBS -N mc_simulate\n" in header
    assert "#PBS -l walltime=00:03:00\n" in header     # 2 nodes of 1 min, plus a minute


def test_pbs_chains_arrays_of_bundles_with_afterany_on_whole_arrays(tmp_path):
    study = compiled(tmp_path, sweep(6, "pbs"), bundle=2, max_queued=1000, max_array_size=10000).directory
    jobs = json.loads((study / "study.json").read_text())["jobs"]
    assert [(j["step"], j["array"], j["tasks"]) for j in jobs] == \
        [("prepare", True, 3), ("simulate", True, 3), ("analyze", True, 3), ("collect", False, 1)]
    lines = submit_lines(study)
    # no element-wise dependency on PBS: task-to-task chains wait for the whole parent array
    assert " -h -J 0-2 " in lines[0]
    assert '-W "depend=afterany:${J0}" -J 0-2 ' in lines[1] and '-W "depend=afterany:${J1}" -J 0-2 ' in lines[2]
    assert '-W "depend=afterany:${J2}" ' in lines[3] and "-J" not in lines[3]
    header = (study / "simulate" / "simulate.bundle.pbs.sh").read_text()
    assert "#PBS -o simulate.bundle.^array_index^.log\n" in header


def test_pbs_bundles_without_bundle_keys_keep_today_s_plan(tmp_path):
    study = compiled(tmp_path, sweep(3, "pbs"), max_queued=1000, max_array_size=10000).directory
    jobs = json.loads((study / "study.json").read_text())["jobs"]
    assert len(jobs) == 10 and not any(j["array"] for j in jobs)
    assert all("afterany" not in line and "-J" not in line for line in submit_lines(study))


def test_pbs_refuses_an_array_of_one_bundle(tmp_path):
    # 5 bundles in arrays of at most 2: the last array would hold one bundle (qsub -J 0-0 is illegal)
    with pytest.raises(CompileError, match="PBS refuses a job array of one sub-job"):
        compiled(tmp_path, sweep(10, "pbs"), bundle=2, max_queued=1000, max_array_size=2)


def run_pbs_task(script: Path, task: int, ncpus: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PBS_ARRAY_INDEX=str(task), PBS_JOBID=f"9[{task}].server", NCPUS=str(ncpus))
    env.pop("PBS_NODEFILE", None)
    return subprocess.run([str(script)], cwd=script.parent, env=env, capture_output=True, text=True, timeout=60)


def test_a_pbs_bundle_runs_its_nodes_with_the_sub_job_s_id_and_cpus(tmp_path):
    body = sweep(4, "pbs").replace("echo prep $(X) > out.txt", "echo prep $(X) > out.txt; sleep 1")
    study = compiled(tmp_path, body, bundle=4, max_queued=1000, max_array_size=10000).directory
    script = study / "prepare" / "prepare.bundle.pbs.sh"
    assert "task=${PBS_ARRAY_INDEX:?" not in script.read_text()      # one bundle: a plain job
    started = __import__("time").monotonic()
    done = run_pbs_task(script, 0, ncpus=4)
    assert done.returncode == 0, done.stderr
    assert __import__("time").monotonic() - started < 3.5     # 4 nodes of 1 s at once (NCPUS=4)
    assert markers(study, "prepare/X.3", "prepare_X.3")["JOB_ID"] == "9[0].server"
    study = compiled(tmp_path, sweep(4, "pbs"), name="two", bundle=2, max_queued=1000, max_array_size=10000).directory
    script = study / "prepare" / "prepare.bundle.pbs.sh"
    assert run_pbs_task(script, 1, ncpus=1).returncode == 0
    assert markers(study, "prepare/X.2", "prepare_X.2")["JOB_ID"] == "9[1].server"
    assert markers(study, "prepare/X.0", "prepare_X.0") is None


def test_pbs_records_each_node_with_its_sub_job_id(tmp_path):
    """submit.sh's record_bundles, run with a fake qsub: the ledger names sub-jobs 13[i].server."""
    study = compiled(tmp_path, sweep(5, "pbs"), bundle=2, max_queued=1000, max_array_size=10000).directory
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    counter = tmp_path / "n"
    (bin_dir / "qsub").write_text(f"#!/bin/bash\nn=$(( $(cat {counter} 2>/dev/null || echo 12) + 1 ))\n"
                                  f"echo $n > {counter}\n[[ \" $* \" == *' -J '* ]] && echo \"$n[].server\" "
                                  f"|| echo \"$n.server\"\n")
    (bin_dir / "qrls").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("qsub", "qrls"):
        (bin_dir / tool).chmod(0o755)
    done = subprocess.run([str(study / "submit.sh")], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}"))
    assert done.returncode == 0, done.stderr
    rows = dict(line.split("\t")[1:] for line in (study / "jobs.tsv").read_text().splitlines())
    assert rows["prepare_X.0"] == rows["prepare_X.1"] == "13[0].server"
    assert rows["prepare_X.4"] == "13[2].server" and rows["simulate_X.3"] == "14[1].server"
    assert rows["collect"] == "16.server"


@pytest.mark.parametrize("server, queue, batch, limit", [
    ("", "", {}, None),
    ("[u:PBS_GENERIC=50]", "", {}, 50),
    ("[u:PBS_GENERIC=50],[u:alice=80]", "", {}, 80),               # the user's own limit wins
    ("[u:PBS_GENERIC=50]", "[o:PBS_ALL=30]", {}, 30),               # the default queue's too
    ("[g:PBS_GENERIC=40],[g:staff=20]", "", {}, 20),
    ("[p:PBS_GENERIC=25]", "", {}, 25),                              # each study is a project
    ("", "[u:PBS_GENERIC=10]", {"queue": "other"}, None),           # another queue's limit
    ("[u:bob=5]", "", {}, None),                                     # someone else's
])
def test_the_pbs_queue_limit_is_the_server_s_and_the_queue_s_max_queued(server, queue, batch, limit):
    from maestro_compile.backends.pbs import PbsBackend
    def quoted(value):
        return f', "max_queued": "{value}"' if value else ""
    server_json = '{"Server": {"host": {"default_queue": "workq"' + quoted(server) + "}}}"
    queue_json = '{"Queue": {"workq": {"queue_type": "Execution"' + quoted(queue) + "}, \"other\": {}}}"
    who = "uid=1001(alice) gid=1002(staff) groups=1002(staff)\n"
    assert PbsBackend().parse_queue_limit([server_json, queue_json, who], batch) == limit


def test_pbs_reads_max_array_size_and_asks_for_sub_jobs():
    from maestro_compile.backends.pbs import PbsBackend
    backend = PbsBackend()
    assert backend.parse_max_array_size('{"Server": {"h": {"max_array_size": 500}}}') == 500
    assert backend.parse_max_array_size("") is None
    assert backend.query_id("13[4].server") == "13[].server" and backend.query_id("12.server") == "12.server"
    assert "-t" in backend.status_command(["13[].server"], None).argv
    assert backend.job_id.fullmatch("13[4].server") and backend.job_id.fullmatch("13[].server")
