"""Bundles on the real one-node Slurm cluster of tests/slurm/cluster.sh, which enforces association
limits as real sites do: its account mcbundle has MaxSubmitJobs=50 (the other tests use an
unlimited account). Harness: test_slurm_e2e.py (only the tests' own jobs are looked at or cancelled).
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from test_slurm_e2e import (Studies, describe, ledger, maestro, ok, status, submit_lines, wait_for_states,
                            wait_sacct)

pytestmark = pytest.mark.slurm

LIMITED_ACCOUNT = "mcbundle"     # tests/slurm/cluster.sh
LIMIT = 50


@pytest.fixture
def studies(tmp_path, slurm_cluster):
    registry = Studies(tmp_path)
    yield registry
    registry.stop_all()


def sweep(points: int) -> str:
    """prepare -> simulate -> analyze per point, and a funnel; simulate fails while fail.<X> exists.
    Every run appends its node to runs.txt, so the test sees what ran and how often."""
    values = ", ".join(str(i) for i in range(points))
    return f"""
    batch: {{type: slurm, bank: {LIMITED_ACCOUNT}}}
    study:
      - name: prepare
        description: per point
        run:
          cmd: |
            echo prepare_$(X) >> $(SPECROOT)/runs.txt
            echo $(X) > out.txt
          walltime: "00:01:00"
      - name: simulate
        description: fails while fail.<X> exists
        run:
          cmd: |
            echo simulate_$(X) >> $(SPECROOT)/runs.txt
            test ! -e $(SPECROOT)/fail.$(X) || exit 3
            echo $(( $(cat ../../prepare/X.$(X)/out.txt) * 2 )) > sim.txt
          depends: [prepare]
          walltime: "00:01:00"
      - name: analyze
        description: per point
        run:
          cmd: |
            echo analyze_$(X) >> $(SPECROOT)/runs.txt
            echo $(( $(cat ../../simulate/X.$(X)/sim.txt) + 1 )) > ana.txt
          depends: [simulate]
          walltime: "00:01:00"
      - name: collect
        description: the funnel
        run:
          cmd: |
            echo collect >> $(SPECROOT)/runs.txt
            cat ../analyze/X.*/ana.txt | sort -n | tr '\\n' ' ' > all.txt
          depends: [analyze_*]
    global.parameters:
      X: {{values: [{values}], label: X.%%}}
    """


def runs(spec: Path) -> List[str]:
    path = spec.parent / "runs.txt"
    return path.read_text().split() if path.exists() else []


def queued_jobs(tag: str) -> int:
    """Our queued jobs (pending or running; array tasks one each), as Slurm counts them for the limit."""
    out = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%k"], capture_output=True, text=True, timeout=30).stdout
    return sum(1 for comment in out.splitlines() if comment.startswith(tag))


# a 6-point sweep in bundles of 3 whose simulate_X.1 failed
FAILED_IN_A_BUNDLE = {**{f"{step}_X.{x}": "FINISHED" for step in ("prepare", "simulate", "analyze") for x in range(6)},
                      "simulate_X.1": "FAILED", "analyze_X.1": "CANCELLED", "collect": "CANCELLED"}


def failed_in_a_bundle(studies, name: str) -> Tuple[Path, Path, Dict[str, dict]]:
    """The spec, the study and its status once simulate_X.1 (in a bundle of 3) has failed."""
    spec = studies.spec(name, sweep(6))
    (spec.parent / "fail.1").touch()
    study = studies.compile(spec, "--bundle", "3", name=name)
    lines = submit_lines(study)
    assert [("--array=0-1" in line, "aftercorr" in line) for line in lines] == [
        (True, False), (True, True), (True, True), (False, False)], lines
    studies.submit(study)
    return spec, study, wait_for_states(study, FAILED_IN_A_BUNDLE)


def test_a_failure_in_a_bundle_cancels_only_its_descendants_and_resubmit_runs_only_them(studies):
    spec, study, nodes = failed_in_a_bundle(studies, "cascade")
    assert nodes["analyze_X.1"]["reason"] == nodes["collect"]["reason"] == "ancestor simulate_X.1 failed", \
        describe(nodes)
    # the failed node's bundle siblings went on, in the same job
    assert nodes["simulate_X.0"]["job_id"] == nodes["simulate_X.1"]["job_id"] == nodes["simulate_X.2"]["job_id"]
    assert (study / "analyze/X.2/ana.txt").read_text() == "5\n"
    before = runs(spec)
    assert sorted(before) == sorted([f"{s}_{x}" for s in ("prepare", "simulate") for x in range(6)]
                                    + [f"analyze_{x}" for x in range(6) if x != 1])

    (spec.parent / "fail.1").unlink()
    ok(maestro("resubmit", study))
    wait_for_states(study, {name: "FINISHED" for name in FAILED_IN_A_BUNDLE})
    assert sorted(runs(spec)[len(before):]) == ["analyze_1", "collect", "simulate_1"]   # no finished sibling again
    assert (study / "collect/all.txt").read_text() == "1 3 5 7 9 11 "


def test_a_refused_sbatch_rolls_a_bundled_resubmission_back(studies):
    spec, study, _ = failed_in_a_bundle(studies, "refused")
    (spec.parent / "fail.1").unlink()
    before_runs, before_ledger = runs(spec), (study / "jobs.tsv").read_bytes()
    script = study / "analyze" / "analyze.bundle.slurm.sh"     # the second sbatch of the resubmission
    original = script.read_text()
    shebang, rest = original.split("\n", 1)
    script.write_text(f"{shebang}\n#SBATCH --partition=nosuchpartition\n{rest}")

    refused = maestro("resubmit", study)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "partition" in refused.stderr.lower(), refused.stderr
    assert "nothing of this resubmission is queued any more" in refused.stderr, refused.stderr
    assert (study / "jobs.tsv").read_bytes() == before_ledger
    (aside,) = (study / ".maestro").glob("jobs.rolled-back.*.tsv")
    rolled = ledger(study, aside)
    assert [node for node, _ in rolled] == ["simulate_X.1"]
    wait_sacct([rolled[0][1]], {rolled[0][1]: "CANCELLED"})      # held, cancelled: it never ran
    assert runs(spec) == before_runs and not list(study.rglob("*.attempt-*"))
    assert {name: node["state"] for name, node in status(study).items()} == FAILED_IN_A_BUNDLE

    script.write_text(original)
    ok(maestro("resubmit", study))
    wait_for_states(study, {name: "FINISHED" for name in FAILED_IN_A_BUNDLE})
    assert sorted(runs(spec)[len(before_runs):]) == ["analyze_1", "collect", "simulate_1"]


@pytest.mark.slow
def test_a_1000_point_sweep_fits_the_cluster_s_limit_of_50_queued_jobs(studies):
    spec = studies.spec("big", sweep(1000))
    started = time.monotonic()
    result = ok(maestro("compile", spec, "--backend", "slurm", "-o", studies.out("big"), cwd=studies.root))
    study = studies.root / "big"
    assert f"at most {LIMIT} queued job(s) (the cluster's MaxSubmitJobs, from sacctmgr)" in result.stdout
    manifest = json.loads((study / "study.json").read_text())
    planned = sum(job["tasks"] for job in manifest["jobs"])
    assert planned <= LIMIT and len(manifest["nodes"]) == 3001
    tag = "maestro_compile:" + manifest["id"]
    studies.submit(study)      # an unbundled study is refused here: AssocMaxSubmitJobLimit
    most = 0
    while time.monotonic() - started < 900:
        most = max(most, queued_jobs(tag))
        if (study / "collect" / "collect.status").exists() and queued_jobs(tag) == 0:
            break
        time.sleep(1)
    assert 0 < most <= LIMIT
    nodes = wait_for_states(study, {name: "FINISHED" for name in manifest["nodes"]}, timeout=300)
    assert len(nodes) == 3001
    assert len({node["job_id"] for node in nodes.values()}) == planned
    expected = " ".join(str(2 * x + 1) for x in range(1000)) + " "
    assert (study / "collect/all.txt").read_text() == expected
    assert sorted(runs(spec)) == sorted([f"{s}_{x}" for s in ("prepare", "simulate", "analyze") for x in range(1000)]
                                        + ["collect"])
    assert len(ledger(study)) == 3001


def test_cancel_stops_the_bundles_and_every_node_shows_cancelled(studies):
    body = sweep(4).replace("echo $(X) > out.txt", "echo $(X) > out.txt; sleep 300")
    spec = studies.spec("stop", body)
    study = studies.compile(spec, "--bundle", "2", name="stop")
    studies.submit(study)
    from helpers import wait_until
    wait_until(lambda: status(study)["prepare_X.0"]["state"] == "RUNNING", "prepare_X.0 to run", 120)
    ok(maestro("cancel", study))
    nodes = wait_for_states(study, {name: "CANCELLED" for name in status(study)}, timeout=120)
    assert "while the node ran" in nodes["prepare_X.0"]["reason"], describe(nodes)
    # nothing of the study is left queued or running; a killed task may show as completing (CG) for a moment
    ids = ",".join({n["job_id"].split("_")[0] for n in nodes.values()})
    listed = lambda: subprocess.run(["squeue", "-h", "-j", ids], capture_output=True, text=True).stdout.strip()
    wait_until(lambda: not listed(), "the cancelled bundles to leave squeue", 60, detail=listed)


RESTART_BELOW_BUNDLES = """
    batch: {type: slurm}
    study:
      - name: prepare
        description: per point, bundled
        run:
          cmd: echo $(X) > out.txt
          walltime: "00:01:00"
      - name: long
        description: point 0 runs out of time once, then finishes with its restart command
        run:
          cmd: |
            echo first >> attempts.txt
            if [ $(X) = 0 ]; then sleep 600; fi
            echo $(( $(cat ../../prepare/X.$(X)/out.txt) * 10 )) > got.txt
          restart: |
            echo restart >> attempts.txt
            echo $(( $(cat ../../prepare/X.$(X)/out.txt) * 10 )) > got.txt
          depends: [prepare]
          walltime: "00:01:00"
      - name: collect
        description: the funnel, after the restart
        run:
          cmd: cat ../long/X.*/got.txt | tr '\\n' ' ' > all.txt
          depends: [long_*]
    global.parameters:
      X: {values: [0, 1], label: X.%%}
    """


@pytest.mark.slow
def test_a_restart_step_below_a_bundled_sweep_requeues_its_bundle_and_finishes_with_its_restart(studies):
    spec = studies.spec("restartbelow", RESTART_BELOW_BUNDLES)
    study = studies.compile(spec, "--bundle", "2", name="restartbelow")
    manifest = json.loads((study / "study.json").read_text())
    long_jobs = [job for job in manifest["jobs"] if job["step"] == "long"]
    # the restart step is not bundled itself: an array of two bundles of one node each
    assert [(job["array"], job["bundles"]) for job in long_jobs] == [(True, [1, 1])], long_jobs
    studies.submit(study)
    first_ids = dict(ledger(study))
    # a bundle of one 60 s node: 120 s, USR1 ahead of it, then Slurm's requeue delay
    nodes = wait_for_states(study, {"prepare_X.0": "FINISHED", "prepare_X.1": "FINISHED", "long_X.0": "FINISHED",
                                    "long_X.1": "FINISHED", "collect": "FINISHED"}, timeout=600)
    assert nodes["long_X.0"]["restarts"] == 1 and nodes["long_X.1"]["restarts"] == 0, describe(nodes)
    assert (study / "long/X.0/attempts.txt").read_text() == "first\nrestart\n"
    assert (study / "long/X.1/attempts.txt").read_text() == "first\n"
    assert (study / "collect/all.txt").read_text() == "0 10 "
    assert dict(ledger(study)) == first_ids        # the requeued bundle kept its id: collect's afterok held
    assert nodes["long_X.0"]["job_id"] != nodes["long_X.1"]["job_id"]     # requeuing one task left the other
    assert "REQUEUE" in (study / "long/X.0/long_X.0.status").read_text()
