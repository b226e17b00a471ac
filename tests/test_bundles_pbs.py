"""Bundles on the real one-node OpenPBS server of tests/pbs/server.sh (harness: test_pbs_e2e.py; only
the tests' own jobs are looked at or deleted). Bundles are job arrays there (`qsub -J`), each
waiting for whole parent jobs with afterany (docs/big-sweeps.md, PBS section).

The automatic queue limit is tested on a queue of its own, `bundleq`, whose max_queued is
[u:PBS_GENERIC=50] (tests/pbs/server.sh creates it; the fixture below makes sure of it on a server
started before): the other PBS tests submit to the default queue and never meet the limit.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Dict, List

import pytest

import helpers
from helpers import describe
from test_bundles_slurm import runs, sweep as slurm_sweep
from test_pbs_e2e import Studies, ledger, run

pytestmark = pytest.mark.pbs

LIMITED_QUEUE = "bundleq"      # tests/pbs/server.sh
LIMIT = 50


@pytest.fixture
def studies(pbs_server, pbs_cli):
    registry = Studies(pbs_cli, pbs_server)
    yield registry
    registry.stop_all()


@pytest.fixture
def limited_queue(pbs_server):
    """The queue with max_queued = [u:PBS_GENERIC=50] (created by tests/pbs/server.sh up; here too
    for a server started by an older harness)."""
    if run(["qmgr", "-c", f"list queue {LIMITED_QUEUE}"]).returncode != 0:
        helpers.ok(run(["qmgr", "-c", f"create queue {LIMITED_QUEUE} queue_type=execution,enabled=true,started=true"]))
    helpers.ok(run(["qmgr", "-c", f"set queue {LIMITED_QUEUE} max_queued = [u:PBS_GENERIC={LIMIT}]"]))
    return LIMITED_QUEUE


def sweep(points: int, queue: str = "") -> str:
    """The Slurm bundle tests' sweep (prepare -> simulate -> analyze per point and a funnel;
    simulate fails while fail.<X> exists; runs.txt lists what ran), for PBS."""
    batch = f"{{type: pbs, queue: {queue}}}" if queue else "{type: pbs}"
    return slurm_sweep(points).replace("batch: {type: slurm, bank: mcbundle}", f"batch: {batch}")


def submit_lines(study: Path) -> List[str]:
    return [line for line in (study / "submit.sh").read_text().splitlines() if line.startswith("submit J")]


def queued_jobs(study: Path) -> int:
    """The study's jobs PBS counts against max_queued now: each queued or running sub-job, and
    each queued or running plain job (qstat -t without -x: finished jobs are left out)."""
    arrays = sorted({re_array(job_id) for _, job_id in ledger(study / "jobs.tsv")}) \
        if (study / "jobs.tsv").exists() else []
    if not arrays:
        return 0
    out = run(["qstat", "-t", *arrays]).stdout
    count = 0
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 5 and words[0][0].isdigit() and "[]" not in words[0] and words[4] in "QHRWTESU":
            count += 1
    return count


def re_array(job_id: str) -> str:
    """The array of a sub-job id: 13[4].server -> 13[].server."""
    return re.sub(r"\[\d+\]", "[]", job_id)


def test_a_failure_in_a_bundle_cancels_only_its_descendants_and_resubmit_runs_only_them(studies):
    spec = studies.spec("cascade", sweep(6))
    (spec.parent / "fail.1").touch()
    study = studies.compile(spec, "--bundle", "3", name="cascade")
    lines = submit_lines(study)
    # arrays of 2 bundles, each waiting for the whole parent array (no element-wise dependency)
    assert [("-J 0-1" in line, "depend=afterany:${J%d}" % (i - 1) in line) for i, line in enumerate(lines)] == [
        (True, False), (True, True), (True, True), (False, True)], lines
    studies.maestro("submit", study)
    expected = {f"{step}_X.{x}": "FINISHED" for step in ("prepare", "simulate", "analyze") for x in range(6)}
    expected.update({"simulate_X.1": "FAILED", "analyze_X.1": "CANCELLED", "collect": "CANCELLED"})
    nodes = studies.wait_for_states(study, expected, timeout=240)
    assert nodes["analyze_X.1"]["reason"] == nodes["collect"]["reason"] == "ancestor simulate_X.1 failed", \
        describe(nodes)
    # the failed node's bundle siblings went on, in the same sub-job
    assert nodes["simulate_X.0"]["job_id"] == nodes["simulate_X.1"]["job_id"] == nodes["simulate_X.2"]["job_id"]
    assert nodes["simulate_X.1"]["job_id"].split(".")[0].endswith("[0]")
    assert nodes["simulate_X.4"]["job_id"].split(".")[0].endswith("[1]")
    assert (study / "analyze/X.2/ana.txt").read_text() == "5\n"
    before = runs(spec)
    assert sorted(before) == sorted([f"{s}_{x}" for s in ("prepare", "simulate") for x in range(6)]
                                    + [f"analyze_{x}" for x in range(6) if x != 1])

    (spec.parent / "fail.1").unlink()
    studies.maestro("resubmit", study)
    studies.wait_for_states(study, {name: "FINISHED" for name in expected}, timeout=240)
    assert sorted(runs(spec)[len(before):]) == ["analyze_1", "collect", "simulate_1"]   # no finished sibling again
    assert (study / "collect/all.txt").read_text() == "1 3 5 7 9 11 "


def test_cancel_stops_the_bundles_and_every_node_shows_cancelled(studies):
    body = sweep(4).replace("echo $(X) > out.txt", "echo $(X) > out.txt; sleep 300")
    spec = studies.spec("stop", body)
    study = studies.compile(spec, "--bundle", "2", name="stop")
    studies.maestro("submit", study)
    helpers.wait_until(lambda: studies.status(study)["prepare_X.0"]["state"] == "RUNNING", "prepare_X.0 to run", 120)
    out = studies.maestro("cancel", study).stdout
    assert "cancelled" in out, out
    nodes = studies.wait_for_states(study, {name: "CANCELLED" for name in studies.status(study)}, timeout=120)
    assert nodes["prepare_X.0"]["reason"] == "its bundle was stopped (deleted (qdel)) while the node ran", \
        describe(nodes)
    arrays = sorted({re_array(job_id) for _, job_id in ledger(study / "jobs.tsv")})
    assert len(arrays) == 4
    active = run(["qselect", "-s", "HQRSTWBEU"]).stdout.split()
    assert not set(arrays) & set(active), active
    # the dependents were deleted before their parents: none of them started
    time.sleep(12)     # a scheduler cycle (scheduler_iteration=10)
    assert not [name for name in runs(spec) if not name.startswith("prepare_")], runs(spec)


def _sweep_under_the_queue_limit(studies, limited_queue, points: int) -> Dict[str, float]:
    spec = studies.spec(f"big{points}", sweep(points, limited_queue))
    started = time.monotonic()
    result = studies.maestro("compile", spec, "--backend", "pbs", "-o", studies.root / "big")
    study = studies.root / "big"
    studies.dirs.append(study)
    assert f"at most {LIMIT} queued job(s) (the server's and queue's max_queued, from qstat -Bf/-Qf)" \
        in result.stdout, result.stdout
    manifest = json.loads((study / "study.json").read_text())
    planned = sum(job["tasks"] for job in manifest["jobs"])
    assert planned <= LIMIT and len(manifest["nodes"]) == 3 * points + 1
    compiled = time.monotonic()
    studies.maestro("submit", study)      # unbundled, PBS refuses it: "would exceed queue generic's per-user limit"
    submitted = time.monotonic()
    most = 0
    while time.monotonic() - started < 1200:
        now = queued_jobs(study)
        most = max(most, now)
        if (study / "collect" / "collect.status").exists() and now == 0:
            break
        time.sleep(1)
    ended = time.monotonic()
    assert 0 < most <= LIMIT
    nodes = studies.wait_for_states(study, {name: "FINISHED" for name in manifest["nodes"]}, timeout=300)
    assert len({node["job_id"] for node in nodes.values()}) == planned
    expected = " ".join(str(2 * x + 1) for x in range(points)) + " "
    assert (study / "collect/all.txt").read_text() == expected
    assert sorted(runs(spec)) == sorted([f"{s}_{x}" for s in ("prepare", "simulate", "analyze")
                                         for x in range(points)] + ["collect"])
    assert len(ledger(study / "jobs.tsv")) == 3 * points + 1
    timing = {"compile": compiled - started, "submit": submitted - compiled, "run": ended - submitted,
              "jobs": planned, "most_queued": most}
    print(f"PBS bundled sweep of {points} points: {timing}")
    return timing


@pytest.mark.slow
def test_a_1000_point_sweep_fits_the_queue_s_max_queued_of_50(studies, limited_queue):
    _sweep_under_the_queue_limit(studies, limited_queue, 1000)


def test_a_sweep_with_most_nodes_failed_is_resubmitted_in_bundles_under_the_queue_limit(studies, limited_queue):
    """100 of 150 simulations fail: 201 nodes to run again, which one job each the queue's
    max_queued of 50 would refuse; in bundles of the study's size they are 21 jobs."""
    points = 150
    spec = studies.spec("refail", sweep(points, limited_queue))
    failing = [x for x in range(points) if x % 3]
    for x in failing:
        (spec.parent / f"fail.{x}").touch()
    study = studies.compile(spec, name="refail")
    manifest = json.loads((study / "study.json").read_text())
    assert manifest["max_queued"] == LIMIT and manifest["bundles"]["simulate"] == 10
    studies.maestro("submit", study)
    expected = {f"{step}_X.{x}": "FINISHED" for step in ("prepare", "simulate", "analyze") for x in range(points)}
    expected.update({f"simulate_X.{x}": "FAILED" for x in failing})
    expected.update({f"analyze_X.{x}": "CANCELLED" for x in failing} | {"collect": "CANCELLED"})
    studies.wait_for_states(study, expected, timeout=300)
    before, lines = runs(spec), len(ledger(study / "jobs.tsv"))
    for x in failing:
        (spec.parent / f"fail.{x}").unlink()
    out = studies.maestro("resubmit", study).stdout
    assert "resubmitting 201 node(s)" in out and "as 21 PBS job(s)" in out, out
    nodes = studies.wait_for_states(study, dict.fromkeys(expected, "FINISHED"), timeout=300)
    # only the failed nodes and their descendants ran again, each once
    again = runs(spec)[len(before):]
    assert sorted(again) == sorted([f"{s}_{x}" for s in ("simulate", "analyze") for x in failing] + ["collect"])
    assert (study / "collect/all.txt").read_text() == " ".join(str(2 * x + 1) for x in range(points)) + " "
    new = ledger(study / "jobs.tsv")[lines:]
    assert len(new) == 201 and len({job_id for _, job_id in new}) == 21
    assert all("[" not in job_id for _, job_id in new)      # plain jobs, one per resubmitted bundle
    assert nodes["simulate_X.1"]["job_id"] == nodes["simulate_X.2"]["job_id"] != nodes["simulate_X.0"]["job_id"]
