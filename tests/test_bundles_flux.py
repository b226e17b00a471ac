"""Bundles on the real Flux instance of the session (tests/flux/instance.sh): each bundle is one
`flux batch` job whose own Flux instance runs its nodes, chained with afterany. Harness:
test_doubles_e2e.py's Scheduler (the CLI against the instance; only the tests' own jobs are looked
at or cancelled). The sweep is test_bundles_slurm.py's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Set

import pytest

from helpers import describe, wait_until
from test_bundles_slurm import runs, sweep as slurm_sweep
from test_doubles_e2e import ledger, make_scheduler

pytestmark = pytest.mark.flux


@pytest.fixture
def sched(request, tmp_path):
    scheduler = make_scheduler(request, "flux", tmp_path)
    yield scheduler
    scheduler.stop()


def sweep(points: int) -> str:
    """prepare -> simulate -> analyze per point and a funnel; simulate fails while fail.<X> exists;
    every run appends its node to runs.txt beside the spec."""
    return slurm_sweep(points).replace("batch: {type: slurm, bank: mcbundle}", "batch: {type: flux}")


def plan(study: Path) -> List[dict]:
    return [json.loads(line) for line in (study / "flux-plan.jsonl").read_text().splitlines()]


def study_jobs(sched, study: Path, active_only: bool) -> Set[str]:
    """The top-level jobs running in the study directory (every bundle runs in its step's folder)."""
    out = sched.command("flux", "jobs", "-n", "-f" if active_only else "-a", *(["active"] if active_only else []),
                        "-o", "{id.dec}|{cwd}").stdout
    inside = str(study) + "/"
    return {line.split("|")[0].strip() for line in out.splitlines() if line.partition("|")[2].startswith(inside)}


@pytest.mark.slow
def test_a_1000_point_sweep_in_at_most_50_queued_jobs_runs_to_the_end(sched):
    spec = sched.spec("big", sweep(1000))
    started = time.monotonic()
    study = sched.root / "big"
    result = sched.ok("compile", spec, "--backend", "flux", "-o", study, "--max-queued", "50")
    sched.studies.append(study)
    assert "at most 50 queued job(s) (--max-queued)" in result.stdout
    manifest = json.loads((study / "study.json").read_text())
    jobs = plan(study)
    assert len(jobs) <= 50 and len(manifest["nodes"]) == 3001 and {job["flux"][0] for job in jobs} == {"batch"}
    submitted = sched.submit(study)
    assert f"submitted {len(jobs)} Flux job(s) (0 array(s)) for 3001 node(s)" in submitted.stdout, submitted.stdout
    most = 0
    while time.monotonic() - started < 900:
        most = max(most, len(study_jobs(sched, study, active_only=True)))
        if (study / "collect" / "collect.status").exists() and not study_jobs(sched, study, active_only=True):
            break
        time.sleep(1)
    elapsed = time.monotonic() - started
    # every job the study ever had in the top-level queue: the bundles, nothing else
    assert 0 < most <= 50 and len(study_jobs(sched, study, active_only=False)) == len(jobs)
    nodes = sched.wait_for(study, {name: "FINISHED" for name in manifest["nodes"]}, timeout=120)
    assert len(nodes) == 3001 and len(ledger(study)) == 3001
    assert len({job_id for _, job_id in ledger(study)}) == len(jobs)
    # the outputs an unbundled run gives
    assert (study / "collect/all.txt").read_text() == " ".join(str(2 * x + 1) for x in range(1000)) + " "
    assert sorted(runs(spec)) == sorted([f"{s}_{x}" for s in ("prepare", "simulate", "analyze") for x in range(1000)]
                                        + ["collect"])
    print(f"\n3,001 nodes in {len(jobs)} Flux jobs: compile to the end in {elapsed:.0f} s")


def test_a_failure_in_a_bundle_cancels_only_its_descendants_and_resubmit_runs_only_them(sched):
    spec = sched.spec("cascade", sweep(6))
    (spec.parent / "fail.1").touch()
    study = sched.compile(spec, "--bundle", "3", name="cascade")
    jobs = plan(study)
    assert len(jobs) == 7 and {job.get("dependency") for job in jobs if job["after"]} == {"afterany"}
    sched.submit(study)
    expected = {f"{step}_X.{x}": "FINISHED" for step in ("prepare", "simulate", "analyze") for x in range(6)}
    expected.update({"simulate_X.1": "FAILED", "analyze_X.1": "CANCELLED", "collect": "CANCELLED"})
    nodes = sched.wait_for(study, expected, timeout=120)
    assert nodes["analyze_X.1"]["reason"] == nodes["collect"]["reason"] == "ancestor simulate_X.1 failed", \
        describe(nodes)
    # the failed node's bundle siblings went on, in the same job (its id in their markers)
    assert nodes["simulate_X.0"]["job_id"] == nodes["simulate_X.1"]["job_id"] == nodes["simulate_X.2"]["job_id"]
    assert nodes["simulate_X.0"]["job_id"] != nodes["simulate_X.3"]["job_id"]
    assert (study / "analyze/X.2/ana.txt").read_text() == "5\n"
    before = runs(spec)
    assert sorted(before) == sorted([f"{s}_{x}" for s in ("prepare", "simulate") for x in range(6)]
                                    + [f"analyze_{x}" for x in range(6) if x != 1])

    (spec.parent / "fail.1").unlink()
    sched.ok("resubmit", study)
    # in bundles again: each bundle script as a `flux batch` job told its node (docs/big-sweeps.md)
    lines = [line for line in (study / ".maestro/resubmit-1.sh").read_text().splitlines() if line.startswith("submit J")]
    assert len(lines) == 3 and all(" batch " in line and "--env=MAESTRO_BUNDLE_NODES=" in line for line in lines)
    sched.wait_for(study, {name: "FINISHED" for name in expected}, timeout=120)
    assert sorted(runs(spec)[len(before):]) == ["analyze_1", "collect", "simulate_1"]   # no finished sibling again
    assert (study / "collect/all.txt").read_text() == "1 3 5 7 9 11 "


def sleepy(points: int, sleeping: str) -> str:
    """sweep() whose prepare nodes sleep 300 s when ``sleeping`` (a shell test on $(X)) holds."""
    return sweep(points).replace("echo $(X) > out.txt", f"echo $(X) > out.txt; if {sleeping}; then sleep 300; fi")


def test_cancel_stops_the_bundles_and_every_node_shows_cancelled(sched):
    study = sched.compile(sched.spec("stop", sleepy(4, "true")), "--bundle", "2", name="stop")
    sched.submit(study)
    wait_until(lambda: sched.status(study)["prepare_X.0"]["state"] == "RUNNING", "prepare_X.0 to run", 60)
    sched.ok("cancel", study)
    nodes = sched.wait_for(study, {name: "CANCELLED" for name in sched.status(study)}, timeout=60)
    assert "while the node ran" in nodes["prepare_X.0"]["reason"], describe(nodes)
    assert (study / "prepare/X.0/prepare_X.0.status").read_text().count("SIGNAL=TERM") == 1
    assert not study_jobs(sched, study, active_only=True)


def test_a_cancelled_parent_bundle_lets_the_next_bundles_run_and_skip_its_descendants(sched):
    """afterany: the bundle after a cancelled one still starts; its nodes whose parents never
    finished are skipped, the others run."""
    study = sched.compile(sched.spec("parent", sleepy(4, "[ $(X) -lt 2 ]")), "--bundle", "2", name="parent")
    sched.submit(study)
    wait_until(lambda: sched.status(study)["prepare_X.0"]["state"] == "RUNNING", "prepare_X.0 to run", 60)
    bundle = dict(ledger(study))["prepare_X.0"]
    assert sched.command("flux", "cancel", bundle).returncode == 0
    expected = {f"{step}_X.{x}": "FINISHED" for step in ("prepare", "simulate", "analyze") for x in (2, 3)}
    expected.update({f"{step}_X.{x}": "CANCELLED" for step in ("prepare", "simulate", "analyze") for x in (0, 1)})
    expected["collect"] = "CANCELLED"
    nodes = sched.wait_for(study, expected, timeout=120)
    assert "while the node ran" in nodes["prepare_X.0"]["reason"], describe(nodes)
    assert nodes["simulate_X.0"]["reason"] == nodes["analyze_X.0"]["reason"] == "ancestor prepare_X.0 failed"
    assert nodes["simulate_X.1"]["reason"] == "ancestor prepare_X.1 failed"
    assert nodes["collect"]["reason"].startswith("ancestor prepare_X.")


def test_a_bundle_stopped_at_its_time_limit_marks_its_running_node(sched):
    """The bundle script run as Flux runs it, with a 4 s limit on the command line (a bundle's own
    is a minute past its nodes' walltimes): the node that ran records the signal."""
    # without walltimes: a Flux instance refuses a job longer than its own remaining time
    body = "\n".join(line for line in sleepy(2, "true").splitlines() if "walltime" not in line)
    study = sched.compile(sched.spec("limit", body), "--bundle", "2", name="limit")
    script = study / "prepare" / "prepare.bundle.flux.sh"
    job = sched.command("flux", "batch", "-t", "4s", f"--cwd={script.parent}", str(script)).stdout.strip()
    assert sched.command("flux", "job", "wait-event", "-t", "60", job, "clean").returncode == 0
    info = sched.command("flux", "jobs", "-n", "-o", "{status}", job).stdout.strip()
    assert info == "TIMEOUT"
    markers = (study / "prepare/X.0/prepare_X.0.status").read_text()
    # the node's own job expires with the bundle's instance: Flux sends both ALRM
    assert "SIGNAL=" in markers and "EXIT_CODE=0" not in markers, markers
    assert "rc=143" in (script.parent / "prepare.bundle.log").read_text()   # stop() ran: it exits 143
