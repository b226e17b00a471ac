"""`maestro resubmit` on the real one-node Slurm cluster of tests/slurm/cluster.sh (see
test_slurm_e2e.py for the harness: only the ids in the tests' own jobs.tsv files are looked at or
cancelled). A parameterized step runs as a job array; one task fails because of a file the test
controls, the test fixes the cause and resubmits: the failed task and its descendants come back
as single jobs chained with --dependency=afterok, the rest is not run again.

The funnel below the array waits for the whole array (afterok). An element-wise chain (aftercorr)
is avoided on purpose: when a task fails before Slurm has split the dependent array's pending
tasks, kill-on-invalid-dep can cancel the sibling task too, so which nodes end CANCELLED depends
on timing (resubmit then simply takes the sibling along, as it is CANCELLED).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

import pytest

from test_slurm_e2e import Studies, describe, ledger, maestro, ok, status, submit_lines, wait_for_states, wait_sacct

pytestmark = pytest.mark.slurm


@pytest.fixture
def studies(tmp_path, slurm_cluster):
    """Cancels, at the end, every job id of the tests' studies (jobs.tsv and rolled-back ledgers)."""
    registry = Studies(tmp_path)
    yield registry
    registry.stop_all()

SPEC = """
    batch: {type: slurm}
    study:
      - name: prepare
        description: the root
        run: {cmd: echo prepare >> $(SPECROOT)/runs.txt}
      - name: work
        description: fails while $(SPECROOT)/ok-<X> is missing
        run:
          cmd: |
            echo work_$(X) >> $(SPECROOT)/runs.txt
            test -f $(SPECROOT)/ok-$(X)
          depends: [prepare]
      - name: report
        description: waits for every work node
        run:
          cmd: echo report >> $(SPECROOT)/runs.txt
          depends: [work_*]
      - name: final
        description: below the report
        run:
          cmd: echo final >> $(SPECROOT)/runs.txt
          depends: [report]
    global.parameters:
      X: {values: [1, 2], label: X.%%}
    """
FAILED_ONCE = {"prepare": "FINISHED", "work_X.1": "FINISHED", "work_X.2": "FAILED", "report": "CANCELLED",
               "final": "CANCELLED"}
AGAIN = ["work_X.2", "report", "final"]


def runs(spec_dir: Path) -> List[str]:
    path = spec_dir / "runs.txt"
    return path.read_text().split() if path.exists() else []


def resubmit_lines(study: Path, number: int) -> Dict[str, str]:
    """node -> its `submit Jn NODE ...` line in .maestro/resubmit-<number>.sh."""
    text = (study / ".maestro" / f"resubmit-{number}.sh").read_text()
    return {line.split()[2]: line for line in text.splitlines() if re.match(r"submit J\d+ ", line)}


def failed_study(studies, name: str) -> Path:
    spec = studies.spec(name, SPEC)
    (spec.parent / "ok-1").touch()
    study = studies.compile(spec, name=name)
    assert any("--array=0-1" in line for line in submit_lines(study)), "work should be a job array"
    studies.submit(study)
    nodes = wait_for_states(study, FAILED_ONCE)
    assert nodes["report"]["reason"] == "ancestor work_X.2 failed", describe(nodes)
    return study


def test_resubmit_brings_back_a_failed_array_task_and_its_descendants(studies):
    study = failed_study(studies, "resubmit")
    spec_dir = studies.root / "spec"
    first = ledger(study)
    assert dict(first)["work_X.2"].endswith("_1")        # task 1 of the work array
    (spec_dir / "ok-2").touch()

    result = ok(maestro("resubmit", study))
    assert "resubmitted 3 node(s) as 3 Slurm job(s); released 1 held root job(s)" in result.stdout

    lines = resubmit_lines(study, 1)
    assert list(lines) == AGAIN
    assert "--hold" in lines["work_X.2"] and "--dependency" not in lines["work_X.2"]
    # report waits for the resubmitted work_X.2 only: work_X.1 finished, it is not waited for
    assert '"--dependency=afterok:${J0}" --kill-on-invalid-dep=yes' in lines["report"]
    assert '"--dependency=afterok:${J1}" --kill-on-invalid-dep=yes' in lines["final"]
    assert "--array" not in "".join(lines.values())
    assert lines["report"].endswith(f"-D {study}/report {study}/report/report.slurm.sh")

    nodes = wait_for_states(study, {name: "FINISHED" for name in FAILED_ONCE})
    assert sorted(runs(spec_dir)) == sorted(["prepare", "work_1", "work_2", "work_2", "report", "final"])
    assert nodes["report"]["start_time"] >= nodes["work_X.2"]["end_time"] and nodes["final"]["start_time"] >= nodes["report"]["end_time"]

    rows = ledger(study)
    assert rows[:len(first)] == first and [node for node, _ in rows[len(first):]] == AGAIN
    new_ids = dict(rows[len(first):])
    assert all(re.fullmatch(r"\d+", job_id) for job_id in new_ids.values())
    for name in AGAIN:
        assert nodes[name]["job_id"] == new_ids[name] and nodes[name]["restarts"] == 1, describe(nodes)
    wait_sacct(new_ids.values(), {job_id: "COMPLETED" for job_id in new_ids.values()})

    work2 = study / "work" / "X.2"
    assert "EXIT_CODE=1" in (work2 / "work_X.2.attempt-1.status").read_text()
    assert "EXIT_CODE=0" in (work2 / "work_X.2.status").read_text()
    assert "nothing to resubmit" in ok(maestro("resubmit", study)).stdout


def test_a_refused_sbatch_rolls_the_resubmission_back(studies):
    study = failed_study(studies, "rollback")
    (studies.root / "spec" / "ok-2").touch()
    before = (study / "jobs.tsv").read_bytes()
    script = study / "report" / "report.slurm.sh"
    original = script.read_text()
    shebang, rest = original.split("\n", 1)
    script.write_text(f"{shebang}\n#SBATCH --partition=nosuchpartition\n{rest}")

    result = maestro("resubmit", study)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "partition" in result.stderr.lower(), result.stderr
    assert (study / "jobs.tsv").read_bytes() == before
    aside = list((study / ".maestro").glob("jobs.rolled-back.*.tsv"))
    assert len(aside) == 1
    rolled = ledger(study, aside[0])
    assert [node for node, _ in rolled] == ["work_X.2"]
    wait_sacct([rolled[0][1]], {rolled[0][1]: "CANCELLED"})   # held, cancelled: it never ran
    assert runs(studies.root / "spec").count("work_2") == 1
    assert not list(study.rglob("*.attempt-*"))
    assert {name: node["state"] for name, node in status(study).items()} == FAILED_ONCE

    script.write_text(original)
    ok(maestro("resubmit", study))
    wait_for_states(study, {name: "FINISHED" for name in FAILED_ONCE})
    assert runs(studies.root / "spec").count("work_2") == 2 and runs(studies.root / "spec").count("report") == 1
