"""`maestro resubmit` on LSF (against the command double of tests/doubles/lsf) and on Flux (against
the session's real Flux instance), driven as in test_doubles_e2e.py: the real CLI, the real
generated scripts, and only what a user can read (jobs.tsv, the step files, `maestro status`, the
schedulers' commands).

A step fails because of a file the test controls ($(SPECROOT)/ok-<X> is missing); every step
appends its name to $(SPECROOT)/runs.txt, so the test can tell which steps ran again.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List

import pytest

from test_doubles_e2e import Scheduler, describe, ledger, make_scheduler, wait_until, workspace

SPEC = """
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
        - name: post
          description: one per work node
          run:
              cmd: echo post_$(X) >> $(SPECROOT)/runs.txt
              depends: [work]
        - name: report
          description: waits for every post node
          run:
              cmd: echo report >> $(SPECROOT)/runs.txt
              depends: [post_*]
    global.parameters:
        X: {values: [1, 2], label: X.%%}
"""
FAILED_ONCE = {"prepare": "FINISHED", "work_X.1": "FINISHED", "work_X.2": "FAILED", "post_X.1": "FINISHED",
               "post_X.2": "CANCELLED", "report": "CANCELLED"}
AGAIN = ["work_X.2", "post_X.2", "report"]


@pytest.fixture(params=["lsf", pytest.param("flux", marks=pytest.mark.flux)])
def sched(request, tmp_path):
    scheduler = make_scheduler(request, request.param, tmp_path)
    yield scheduler
    scheduler.stop()


def runs(sched: Scheduler) -> List[str]:
    path = sched.root / "runs.txt"
    return path.read_text().split() if path.exists() else []


def failed_study(sched: Scheduler, name: str = "study") -> Path:
    (sched.root / "ok-1").touch()
    study = sched.compile(sched.spec(name, SPEC), name=name)
    sched.submit(study)
    nodes = sched.wait_for(study, FAILED_ONCE)
    assert nodes["post_X.2"]["reason"] == "ancestor work_X.2 failed", describe(nodes)
    return study


def submit_lines(script: Path) -> Dict[str, str]:
    """node -> its `submit Jn NODE ...` line in a resubmission script."""
    return {line.split()[2]: line for line in script.read_text().splitlines() if re.match(r"submit J\d+ ", line)}


def decimal(sched: Scheduler, job_id: str) -> str:
    """Flux shows the id a job reports (F58), the ledger keeps it decimal; LSF ids are as they are."""
    if sched.kind == "lsf":
        return job_id
    return sched.command("flux", "job", "id", "--to=dec", job_id).stdout.strip()


def job_results(sched: Scheduler, ids: List[str]) -> List[str]:
    """The scheduler's own verdict on the given jobs: bjobs STAT or flux jobs result."""
    if sched.kind == "lsf":
        out = sched.command("bjobs", "-a", "-o", "jobid stat exit_reason", "-json", *ids).stdout
        return [record["STAT"] for record in json.loads(out)["RECORDS"]]
    out = json.loads(sched.command("flux", "jobs", "-a", "--json", *ids).stdout)
    return [job["result"] for job in (out["jobs"] if "jobs" in out else [out])]


def test_resubmit_chains_the_failed_node_and_its_descendants_natively(sched):
    study = failed_study(sched)
    first = ledger(study)
    (sched.root / "ok-2").touch()

    result = sched.ok("resubmit", study)
    assert "resubmitting 3 node(s) of 3 step(s)" in result.stdout
    assert f"resubmitted 3 node(s) as 3 {'LSF' if sched.kind == 'lsf' else 'Flux'} job(s)" in result.stdout

    # one job per node, in order, each waiting only for its resubmitted parent; the root held
    lines = submit_lines(study / ".maestro" / "resubmit-1.sh")
    assert list(lines) == AGAIN
    if sched.kind == "lsf":
        assert " -H " in lines["work_X.2"] and "-w" not in lines["work_X.2"]
        assert '-w "done(${J0})" -ti' in lines["post_X.2"] and '-w "done(${J1})" -ti' in lines["report"]
        assert lines["work_X.2"].endswith("< " + str(study / "work" / "X.2" / "work_X.2.lsf.sh"))
    else:
        assert lines["work_X.2"].startswith("submit J0 work_X.2 submit --job-name=work_X.2 ")
        assert "--urgency=hold" in lines["work_X.2"] and "--dependency" not in lines["work_X.2"]
        assert "--dependency=afterok:${J0}" in lines["post_X.2"] and "--dependency=afterok:${J1}" in lines["report"]
        assert "--dependency=afterok:${J1} " in lines["report"] and lines["report"].count("--dependency") == 1

    nodes = sched.wait_for(study, {name: "FINISHED" for name in FAILED_ONCE})
    assert sorted(runs(sched)) == sorted(["prepare", "work_1", "work_2", "post_1",
                                          "work_2", "post_2", "report"])
    assert nodes["report"]["start_time"] >= nodes["post_X.2"]["end_time"] >= nodes["work_X.2"]["start_time"]

    # jobs.tsv keeps both attempts; status shows the latest id and one restart
    rows = ledger(study)
    assert rows[:len(first)] == first and [node for node, _ in rows[len(first):]] == AGAIN
    new_ids = dict(rows[len(first):])
    for name in AGAIN:
        assert decimal(sched, nodes[name]["job_id"]) == new_ids[name]
        assert nodes[name]["restarts"] == 1, describe(nodes)
    assert all(nodes[name]["restarts"] == 0 for name in FAILED_ONCE if name not in AGAIN)
    expected = "DONE" if sched.kind == "lsf" else "COMPLETED"
    assert job_results(sched, [new_ids[name] for name in AGAIN]) == [expected] * 3

    # the old attempt's files are kept beside the new ones
    work2 = workspace(study, nodes["work_X.2"])
    assert "EXIT_CODE=1" in (work2 / "work_X.2.attempt-1.status").read_text()
    assert "EXIT_CODE=0" in (work2 / "work_X.2.status").read_text()
    assert "nothing to resubmit" in sched.ok("resubmit", study).stdout


def test_failed_resubmission_is_rolled_back(sched):
    study = failed_study(sched, "rollback")
    (sched.root / "ok-2").touch()
    before = (study / "jobs.tsv").read_bytes()
    status_file = study / "work" / "X.2" / "work_X.2.status"
    old_markers = status_file.read_text()
    # the user edits the header of a node script: its submission will be refused
    script = study / "post" / "X.2" / f"post_X.2.{sched.kind}.sh"
    directive = "#BSUB -q nosuchqueue" if sched.kind == "lsf" else "# flux: -q nosuchqueue"
    original = script.read_text()
    shebang, rest = original.split("\n", 1)
    script.write_text(f"{shebang}\n{directive}\n{rest}")

    result = sched.maestro("resubmit", study)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "nosuchqueue" in result.stderr, result.stderr
    # jobs.tsv is cut back to the byte; the lines removed are kept aside
    assert (study / "jobs.tsv").read_bytes() == before
    aside = list((study / ".maestro").glob("jobs.rolled-back.*.tsv"))
    assert len(aside) == 1
    rolled = ledger(study, aside[0])
    assert [node for node, _ in rolled] == ["work_X.2"]
    # the job that was submitted is cancelled (it was held: it never ran)
    expected = "EXIT" if sched.kind == "lsf" else "CANCELED"
    assert job_results(sched, [rolled[0][1]]) == [expected]
    assert runs(sched).count("work_2") == 1
    # the previous attempt's files are back, and the study looks as before
    assert status_file.read_text() == old_markers
    assert not list(study.rglob("*.attempt-*"))
    assert {n: v["state"] for n, v in sched.status(study).items()} == FAILED_ONCE

    script.write_text(original)
    sched.ok("resubmit", study)
    assert (study / ".maestro" / "resubmit-2.sh").exists()
    sched.wait_for(study, {name: "FINISHED" for name in FAILED_ONCE})
    assert runs(sched).count("work_2") == 2 and runs(sched).count("report") == 1


def test_refused_while_a_job_runs(sched):
    gate = sched.root / "go"
    study = sched.compile(sched.spec("busy", f"""
        study:
            - name: slow
              description: runs until the test opens the gate
              run: {{cmd: "while [ ! -e {gate} ]; do sleep 0.1; done"}}
            - name: broken
              description: fails at once
              run: {{cmd: echo broken >> $(SPECROOT)/runs.txt; exit 1}}
    """))
    sched.submit(study)
    sched.wait_for(study, {"slow": "RUNNING", "broken": "FAILED"})
    refused = sched.maestro("resubmit", study)
    assert refused.returncode == 1 and "slow (RUNNING)" in refused.stderr and "Traceback" not in refused.stderr
    assert not list((study / ".maestro").glob("resubmit-*"))
    gate.touch()
    sched.wait_for(study, {"slow": "FINISHED", "broken": "FAILED"})
    sched.ok("resubmit", study, "--only", "broken")
    nodes = sched.wait_for(study, {"slow": "FINISHED", "broken": "FAILED"})
    wait_until(lambda: runs(sched).count("broken") == 2, "broken to run a second time")
    assert nodes["broken"]["restarts"] == 1 and len(ledger(study)) == 3


def test_a_timed_out_node_is_resubmitted(sched):
    walltime = "00:01:00" if sched.kind == "lsf" else "00:00:02"   # the LSF double's minute is 2 s
    study = sched.compile(sched.spec("timeout", f"""
        study:
            - name: slow
              description: too slow until $(SPECROOT)/fast exists
              run: {{cmd: "test -e $(SPECROOT)/fast || sleep 60", walltime: "{walltime}"}}
            - name: after
              description: waits for slow
              run: {{cmd: echo after > after.txt, depends: [slow]}}
    """))
    sched.submit(study)
    sched.wait_for(study, {"slow": "TIMEDOUT", "after": "CANCELLED"}, timeout=90)
    (sched.root / "fast").touch()
    dry = sched.ok("resubmit", study, "--dry")
    assert "slow  (TIMEDOUT)" in dry.stdout and "after  (CANCELLED)" in dry.stdout
    assert not list((study / ".maestro").glob("resubmit-*"))
    sched.ok("resubmit", study)
    nodes = sched.wait_for(study, {"slow": "FINISHED", "after": "FINISHED"})
    assert (workspace(study, nodes["after"]) / "after.txt").read_text() == "after\n"


def test_restarts_count_resubmissions_and_restarts_of_the_latest_attempt(sched):
    # attempt 1 fails at once; attempt 2 (resubmitted) times out once and finishes with its restart
    walltime = "00:03:00" if sched.kind == "lsf" else "00:00:03"
    study = sched.compile(sched.spec("restarts", f"""
        study:
            - name: slow
              description: fails until $(SPECROOT)/fixed exists, then needs its restart command
              run:
                  cmd: |
                    echo first >> attempts.txt
                    test -e $(SPECROOT)/fixed || exit 1
                    sleep 60
                  restart: echo restart >> attempts.txt
                  walltime: "{walltime}"
    """))
    sched.submit(study)
    assert sched.wait_for(study, {"slow": "FAILED"})["slow"]["restarts"] == 0
    (sched.root / "fixed").touch()
    sched.ok("resubmit", study)
    nodes = sched.wait_for(study, {"slow": "FINISHED"}, timeout=90)
    assert (workspace(study, nodes["slow"]) / "attempts.txt").read_text() == "first\nfirst\nrestart\n"
    assert len(ledger(study)) == 2
    assert nodes["slow"]["restarts"] == 2, describe(nodes)   # one resubmission + one restart
