"""`maestro status` without a scheduler: a compiled local study whose run is simulated by writing
the files a run leaves (markers, the ledger, .maestro/*), the JSON layout, the State vocabulary,
and the scheduled backends' judge on hand-built runtimes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import write_study_spec
from maestro_compile.backends.slurm import SlurmBackend
from maestro_compile.states import (ACTIVE, ANCESTOR_FAILURES, ENDED, NO_MARKERS, RERUN, TERMINAL, NativeStatus,
                                    Runtime, State, Verdict, state_of)
from maestro_compile.status import collect, finished, format_json, format_table, make_report
from maestro_compile.studydir import StudyDir, parse_markers

SPEC = """\
    study:
      - name: prep
        description: the root
        run:
          cmd: echo prep
      - name: work
        description: one per X
        run:
          cmd: echo $(X)
          depends: [prep]
      - name: report
        description: the funnel
        run:
          cmd: echo report
          depends: [work_*]
    global.parameters:
      X:
        values: [1, 2, 3]
        label: X.%%
    """
NAMES = ["prep", "work_X.1", "work_X.2", "work_X.3", "report"]
T0 = 1_700_000_000
TOP_KEYS = {"schema", "study", "backend", "directory", "submitted", "cancelled", "interrupted", "finished", "counts",
            "nodes"}
NODE_KEYS = {"name", "step", "state", "reason", "job_id", "workspace", "params", "submit_time", "start_time",
             "end_time", "run_seconds", "elapsed_seconds", "restarts", "exit_code"}


@pytest.fixture
def study(tmp_path) -> StudyDir:
    from maestro_compile.cli import main
    spec = write_study_spec(tmp_path, "sim", SPEC)
    out = tmp_path / "out"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    return StudyDir.open(out)


def mark(study: StudyDir, node: str, **values) -> None:
    """Append marker lines as a node's job does (KEY=VALUE, in the order given)."""
    path = Path(study.marker_path(study.manifest.nodes[node]))
    with open(path, "a") as handle:
        for key, value in values.items():
            handle.write(f"{key.split('__')[0]}={value}\n")   # START__2: a second START line


def ledger(study: StudyDir, *lines) -> None:
    with open(study.ledger_path, "a") as handle:
        for when, node, pid in lines:
            handle.write(f"{when}\t{node}\t{pid}\n")


def submitted(study: StudyDir, runner_pid=None, done=None, cancelled=False) -> None:
    study.state_dir.mkdir(exist_ok=True)
    (study.state_dir / "submitted").write_text(f"{T0} 4242\n")
    if runner_pid is not None:
        (study.state_dir / "runner.pid").write_text(f"{runner_pid}\n")
    if done is not None:
        (study.state_dir / "runner.done").write_text(done + "\n")
    if cancelled:
        study.mark_cancelled(T0 + 50)


def by_name(rows):
    return {row.name: row for row in rows}


def test_before_submit_every_node_is_initialized(study):
    rows, runtime = collect(study)
    assert [row.name for row in rows] == NAMES
    assert {row.state for row in rows} == {State.INITIALIZED}
    assert all(row.reason == "" and row.job_id is None and row.restarts == 0 for row in rows)
    assert all(row.submit is None and row.start is None and row.end is None for row in rows)
    assert not runtime.submitted and not runtime.cancelled
    assert not finished(rows, runtime)
    assert by_name(rows)["work_X.2"].params == {"X": "2"}


def test_collect_accepts_a_path(study):
    rows, _ = collect(study.path)
    assert [row.name for row in rows] == NAMES


def simulate_ended_run(study: StudyDir) -> None:
    """prep finished, work_X.1 failed, work_X.2 finished on its second attempt after one
    resubmission, work_X.3 never started (the runner died), report skipped."""
    submitted(study, runner_pid=999_999_999, done=f"{T0 + 100} failed")
    ledger(study, (T0 + 1, "prep", 5001), (T0 + 10, "work_X.1", 5002), (T0 + 11, "work_X.2", 5003),
           (T0 + 40, "work_X.2", 5004))
    mark(study, "prep", START=T0 + 2, HOST="h", JOB_ID=6001, END=T0 + 5, EXIT_CODE=0)
    mark(study, "work_X.1", START=T0 + 12, HOST="h", JOB_ID=6002, END=T0 + 20, EXIT_CODE=2)
    mark(study, "work_X.2", START=T0 + 42, JOB_ID=6004, END=T0 + 43, EXIT_CODE=1,
         START__2=T0 + 44, END__2=T0 + 47, EXIT_CODE__2=0)
    mark(study, "report", SKIPPED=T0 + 20, REASON="ancestor work_X.1 failed")


def test_an_ended_run(study):
    simulate_ended_run(study)
    rows, runtime = collect(study)
    got = by_name(rows)
    assert [(row.name, row.state, row.reason) for row in rows] == [
        ("prep", State.FINISHED, ""),
        ("work_X.1", State.FAILED, "exit code 2"),
        ("work_X.2", State.FINISHED, ""),
        ("work_X.3", State.UNKNOWN, "never started: the runner is not running"),
        ("report", State.CANCELLED, "ancestor work_X.1 failed"),
    ]
    assert runtime.submitted and runtime.submitted_at == T0 and not runtime.runner_alive
    prep = got["prep"]
    assert (prep.job_id, prep.submit, prep.start, prep.end, prep.exit_code, prep.restarts) == \
        ("6001", T0 + 1, T0 + 2, T0 + 5, 0, 0)       # the markers' job id wins over the ledger's pid
    assert got["work_X.1"].exit_code == 2
    # one resubmission (two ledger lines) and two STARTs in the latest attempt's markers
    assert got["work_X.2"].restarts == 2
    assert (got["work_X.2"].submit, got["work_X.2"].start, got["work_X.2"].end) == (T0 + 40, T0 + 44, T0 + 47)
    assert got["work_X.3"].job_id is None and got["work_X.3"].restarts == 0
    assert got["report"].job_id is None
    assert finished(rows, runtime)   # runner.done


def test_a_runner_still_alive_after_its_last_node_is_not_finished(study):
    # every node has ended, but the runner (this process) has not written runner.done yet
    submitted(study, runner_pid=os.getpid())
    for number, name in enumerate(NAMES):
        ledger(study, (T0 + 1, name, 5001 + number))
        mark(study, name, START=T0 + 2, END=T0 + 5, EXIT_CODE=0)
    rows, runtime = collect(study)
    assert {row.state for row in rows} == {State.FINISHED} and runtime.runner_alive
    assert not finished(rows, runtime)
    (study.state_dir / "runner.done").write_text(f"{T0 + 6} finished\n")
    rows, runtime = collect(study)
    assert not runtime.runner_alive and finished(rows, runtime)


def test_an_ended_run_as_json(study):
    simulate_ended_run(study)
    rows, runtime = collect(study)
    document = json.loads(format_json(make_report(study, rows, runtime)))
    assert set(document) == TOP_KEYS
    assert document["schema"] == 1
    assert (document["study"], document["backend"], document["directory"]) == ("sim", "local", str(study.path))
    assert (document["submitted"], document["cancelled"], document["finished"]) == (True, False, True)
    assert document["counts"] == {"FINISHED": 2, "FAILED": 1, "UNKNOWN": 1, "CANCELLED": 1}
    assert [node["name"] for node in document["nodes"]] == NAMES
    for node in document["nodes"]:
        assert set(node) == NODE_KEYS
        assert type(node["state"]) is str
        assert os.path.isabs(node["workspace"])
        assert Path(node["workspace"]) == study.path / study.manifest.nodes[node["name"]].workspace
    prep = document["nodes"][0]
    assert prep == {"name": "prep", "step": "prep", "state": "FINISHED", "reason": "", "job_id": "6001",
                    "workspace": str(study.path / "prep"), "params": {}, "submit_time": T0 + 1,
                    "start_time": T0 + 2, "end_time": T0 + 5, "run_seconds": 3, "elapsed_seconds": 4,
                    "restarts": 0, "exit_code": 0}
    report = document["nodes"][-1]
    assert (report["state"], report["reason"], report["run_seconds"], report["elapsed_seconds"]) == \
        ("CANCELLED", "ancestor work_X.1 failed", None, None)
    assert document["nodes"][2]["params"] == {"X": "2"}


def test_a_running_study(study):
    # the runner is this process: alive, not done
    submitted(study, runner_pid=os.getpid())
    ledger(study, (T0 + 1, "prep", 5001), (T0 + 10, "work_X.1", 5002))
    mark(study, "prep", START=T0 + 2, END=T0 + 5, EXIT_CODE=0)
    mark(study, "work_X.1", START=T0 + 12, JOB_ID=6002)
    rows, runtime = collect(study)
    assert runtime.runner_alive
    assert [row.state for row in rows] == [State.FINISHED, State.RUNNING, State.PENDING, State.PENDING,
                                           State.PENDING]
    assert not finished(rows, runtime)
    document = json.loads(format_json(make_report(study, rows, runtime)))
    running = document["nodes"][1]
    assert running["end_time"] is None and running["run_seconds"] > 0 and running["elapsed_seconds"] > 0
    assert document["nodes"][2]["submit_time"] is None and document["nodes"][2]["elapsed_seconds"] is None
    assert document["finished"] is False


def test_a_runner_that_died_mid_step(study):
    submitted(study)                  # no runner.pid, no runner.done
    ledger(study, (T0 + 1, "prep", 5001))
    mark(study, "prep", START=T0 + 2)
    row = by_name(collect(study)[0])["prep"]
    assert row.state == State.UNKNOWN
    assert row.reason.startswith("the runner stopped before the step ended")


def test_a_cancelled_study(study):
    submitted(study, done=f"{T0 + 60} cancelled", cancelled=True)
    ledger(study, (T0 + 1, "prep", 5001), (T0 + 10, "work_X.1", 5002))
    mark(study, "prep", START=T0 + 2, END=T0 + 5, EXIT_CODE=0)
    mark(study, "work_X.1", START=T0 + 12, SIGNAL="TERM", END=T0 + 51, EXIT_CODE=143)
    mark(study, "work_X.2", CANCELLED=T0 + 50)
    rows, runtime = collect(study)
    assert runtime.cancelled
    assert [(row.state, row.reason) for row in rows] == [
        (State.FINISHED, ""),
        (State.CANCELLED, "study cancelled while the step ran"),
        (State.CANCELLED, "study cancelled before the step started"),
        (State.CANCELLED, "study cancelled before the step started"),
        (State.CANCELLED, "study cancelled before the step started"),
    ]
    assert json.loads(format_json(make_report(study, rows, runtime)))["cancelled"] is True


def test_after_a_resubmit_nodes_not_run_again_keep_their_state(study):
    submitted(study, runner_pid=os.getpid())
    (study.state_dir / "runner.nodes").write_text("work_X.1\nreport\n")
    ledger(study, (T0 + 1, "prep", 5001), (T0 + 10, "work_X.1", 5002), (T0 + 11, "work_X.2", 5003),
           (T0 + 12, "work_X.3", 5004), (T0 + 90, "work_X.1", 5010))
    mark(study, "prep", START=T0 + 2, END=T0 + 5, EXIT_CODE=0)
    mark(study, "work_X.1", START=T0 + 91)        # the failed attempt's markers were moved aside
    mark(study, "work_X.2", START=T0 + 12, END=T0 + 15, EXIT_CODE=0)
    mark(study, "work_X.3", START=T0 + 13)         # the first runner died while it ran
    rows, _ = collect(study)
    got = by_name(rows)
    assert got["work_X.1"].state == State.RUNNING and got["work_X.1"].restarts == 1
    assert got["work_X.1"].submit == T0 + 90
    assert got["work_X.2"].state == State.FINISHED
    # not run again by the live runner: not taken for running
    assert got["work_X.3"].state == State.UNKNOWN
    assert got["work_X.3"].reason.startswith("the runner stopped before the step ended")
    assert got["report"].state == State.PENDING


def test_table_has_a_reason_column_only_when_a_node_has_a_reason(study):
    rows, _ = collect(study)
    text = format_table(rows)
    assert "Reason" not in text.splitlines()[0]
    assert text.endswith("5 node(s): 5 INITIALIZED")
    simulate_ended_run(study)
    rows, _ = collect(study)
    text = format_table(rows)
    assert text.splitlines()[0].split()[-1] == "Reason"
    assert "ancestor work_X.1 failed" in text
    line = next(line for line in text.splitlines() if line.startswith("prep "))
    assert "6001" in line and "FINISHED" in line and "0d:00h:00m:03s" in line


# --- the state vocabulary ---

def test_state_prints_as_its_name():
    assert str(State.FAILED) == "FAILED"
    assert f"{State.FAILED}" == "FAILED"
    assert f"{State.FAILED:>8}" == "  FAILED"
    assert State.FAILED == "FAILED"
    assert json.dumps(State.FAILED) == '"FAILED"'
    assert json.dumps({"s": [State.RUNNING]}) == '{"s": ["RUNNING"]}'
    assert state_of(" finished ") is State.FINISHED and state_of("no such") is State.UNKNOWN


def test_state_sets_agree():
    assert RERUN <= ENDED and TERMINAL <= ENDED
    assert not ACTIVE & ENDED
    assert State.FINISHED not in RERUN and State.FINISHED in TERMINAL
    assert ANCESTOR_FAILURES <= RERUN
    assert State.CANCELLED not in ANCESTOR_FAILURES
    assert set(State) == ENDED | ACTIVE | {State.INITIALIZED}


# --- the scheduled backends' judge ---

def slurm_runtime(**jobs) -> Runtime:
    parents = {"prep": (), "work": ("prep",), "report": ("work",)}
    return Runtime(submitted_at=1.0, jobs=dict(jobs), parents=parents)


def test_judge_held_root():
    runtime = slurm_runtime(prep=NativeStatus("PENDING", "JobHeldUser", "0:0"))
    verdict = SlurmBackend().judge("prep", NO_MARKERS, True, runtime)
    assert verdict.state == State.PENDING and verdict.reason.startswith("held ")


def test_judge_pending_reason_is_kept_and_none_is_dropped():
    backend = SlurmBackend()
    assert backend.judge("work", NO_MARKERS, True, slurm_runtime(work=NativeStatus("PENDING", "Resources"))) == \
        Verdict(State.PENDING, "Resources")
    assert backend.judge("work", NO_MARKERS, True, slurm_runtime(work=NativeStatus("RUNNING", "None"))) == \
        Verdict(State.RUNNING, "")


def test_judge_markers_that_ended_win_over_a_lagging_scheduler():
    backend = SlurmBackend()
    runtime = slurm_runtime(prep=NativeStatus("RUNNING", "None", "0:0"))
    done = parse_markers("START=1\nEND=2\nEXIT_CODE=0\n")
    assert backend.judge("prep", done, True, runtime) == Verdict(State.FINISHED)
    failed = parse_markers("START=1\nEND=2\nEXIT_CODE=5\n")
    assert backend.judge("prep", failed, True, runtime) == Verdict(State.FAILED, "exit code 5")
    started = parse_markers("START=1\n")
    assert backend.judge("prep", started, True, runtime) == Verdict(State.RUNNING)


def test_judge_when_the_scheduler_forgot_the_job():
    backend = SlurmBackend()
    runtime = slurm_runtime(prep=None)
    verdict = backend.judge("prep", NO_MARKERS, True, runtime)
    assert verdict.state == State.UNKNOWN and "no longer knows the job" in verdict.reason
    assert backend.judge("prep", parse_markers("START=1\nEXIT_CODE=0\n"), True, runtime) == Verdict(State.FINISHED)
    assert "prep" not in slurm_runtime().jobs
    assert backend.judge("prep", NO_MARKERS, True, slurm_runtime()).state == State.UNKNOWN


def test_judge_cancelled_because_an_ancestor_failed():
    backend = SlurmBackend()
    runtime = slurm_runtime(prep=NativeStatus("FAILED", "NonZeroExitCode", "1:0"),
                            work=NativeStatus("CANCELLED", "None", "0:0"),
                            report=NativeStatus("PENDING", "DependencyNeverSatisfied", "0:0"))
    assert backend.judge("work", NO_MARKERS, True, runtime) == Verdict(State.CANCELLED, "ancestor prep failed")
    # pending on a dependency that can no longer be met: the nearest failed ancestor is named
    assert backend.judge("report", NO_MARKERS, True, runtime) == Verdict(State.CANCELLED, "ancestor prep failed")
    # a plain cancel (no failed ancestor) has no such reason
    plain = slurm_runtime(prep=NativeStatus("COMPLETED", "None", "0:0"), work=NativeStatus("CANCELLED by 0"))
    assert backend.judge("work", NO_MARKERS, True, plain) == Verdict(State.CANCELLED, "")


def test_judge_failure_from_markers_is_more_precise():
    backend = SlurmBackend()
    runtime = slurm_runtime(prep=NativeStatus("FAILED", "NonZeroExitCode", "124:0"))
    markers = parse_markers("START=1\nTIMEOUT=5\nEND=5\nEXIT_CODE=124\n")
    assert backend.judge("prep", markers, True, runtime).state == State.TIMEDOUT


def test_judge_not_in_the_ledger_or_not_submitted():
    backend = SlurmBackend()
    runtime = slurm_runtime(prep=NativeStatus("RUNNING", "None"))
    assert backend.judge("work", NO_MARKERS, False, runtime) == Verdict(State.INITIALIZED)
    unsubmitted = Runtime(jobs={"prep": NativeStatus("RUNNING", "None")})
    assert not unsubmitted.submitted
    assert backend.judge("prep", parse_markers("START=1\n"), True, unsubmitted) == Verdict(State.INITIALIZED)


def test_judge_requeued_for_a_restart():
    runtime = slurm_runtime(prep=NativeStatus("PENDING", "BeginTime"))
    markers = parse_markers("START=1\nREQUEUE=9\n")
    assert SlurmBackend().judge("prep", markers, True, runtime) == \
        Verdict(State.PENDING, "requeued to run its restart command")


# --- collect on a Slurm study, with fake sacct and squeue on PATH ---

SLURM_SPEC = "    batch:\n      type: slurm\n" + SPEC
SACCT = """\
100|COMPLETED|None|0:0
101_0|COMPLETED|None|0:0
101_1|FAILED|NonZeroExitCode|1:0
101_2|RUNNING|None|0:0
"""


def test_collect_on_a_slurm_study(tmp_path, monkeypatch):
    from maestro_compile.cli import main
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for name, answer in (("sacct", SACCT), ("squeue", "102|PENDING|DependencyNeverSatisfied|\n")):
        (bin_dir / name).write_text(f"#!/bin/sh\necho \"{name} $*\" >> '{calls}'\ncat <<'END'\n{answer}END\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    spec = write_study_spec(tmp_path, "sl", SLURM_SPEC)
    out = tmp_path / "out"
    assert main(["compile", str(spec), "-o", str(out), "--max-array-size", "1000"]) == 0
    study = StudyDir.open(out)
    rows, runtime = collect(study)
    assert {row.state for row in rows} == {State.INITIALIZED} and not runtime.submitted
    assert not calls.exists()                     # nothing submitted: the scheduler is not asked
    submitted(study)
    ledger(study, (T0, "prep", 100), (T0, "work_X.1", "101_0"), (T0, "work_X.2", "101_1"),
           (T0, "work_X.3", "101_2"), (T0, "report", 102))
    mark(study, "work_X.2", START=T0 + 5, JOB_ID="101_1", END=T0 + 6, EXIT_CODE=1)
    rows, runtime = collect(study)
    assert [(row.name, row.state, row.reason, row.job_id) for row in rows] == [
        ("prep", State.FINISHED, "", "100"),
        ("work_X.1", State.FINISHED, "", "101_0"),
        ("work_X.2", State.FAILED, "exit code 1", "101_1"),
        ("work_X.3", State.RUNNING, "", "101_2"),
        ("report", State.CANCELLED, "ancestor work_X.2 failed", "102"),
    ]
    # one sacct for the three jobs (array tasks asked by their array's id), squeue for the one it missed
    assert calls.read_text().splitlines() == [
        "sacct -X -P -n -j 100,101,102 --format=JobID,State,Reason,ExitCode",
        "squeue -h -t all -j 102 -o %i|%T|%r|",
    ]
    assert runtime.submitted and runtime.submitted_at == T0
    document = json.loads(format_json(make_report(study, rows, runtime)))
    assert document["backend"] == "slurm" and document["finished"] is False
    assert document["counts"] == {"FINISHED": 2, "FAILED": 1, "RUNNING": 1, "CANCELLED": 1}
