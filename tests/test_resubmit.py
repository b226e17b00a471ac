"""`maestro resubmit` on the local backend, through the real CLI (`python -m maestro_compile`).

A step fails because of a file the test controls ($(SPECROOT)/ok-<X> is missing); the test runs
the study, checks the failure and its cancelled descendants, creates the file and resubmits.
Every step appends its name to $(SPECROOT)/runs.txt, so the test can tell which steps ran again.
Steps that must stay running wait on a gate file (``gated``) instead of sleeping.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

from test_e2e_local import DEADLINE, Studies, gated, markers, wait_for_end, wait_until
from helpers import maestro, ok, states

CHAIN = """
    study:
      - name: prepare
        description: the root
        run:
          cmd: |
            echo prepare >> $(SPECROOT)/runs.txt
            echo data > data.txt
      - name: work
        description: fails while $(SPECROOT)/ok-<X> is missing
        run:
          cmd: |
            echo work_$(X) >> $(SPECROOT)/runs.txt
            echo "work $(X) was here"
            test -f $(SPECROOT)/ok-$(X) || { echo "no ok-$(X)" >&2; exit 4; }
            cp $(prepare.workspace)/data.txt out.txt
          depends: [prepare]
      - name: post
        description: one per work node
        run:
          cmd: |
            echo post_$(X) >> $(SPECROOT)/runs.txt
            cat $(work.workspace)/out.txt > in.txt
          depends: [work]
    global.parameters:
      X:
        values: [1, 2, 3]
        label: X.%%
    """
FUNNEL = """
      - name: report
        description: waits for every post node
        run:
          cmd: echo report >> $(SPECROOT)/runs.txt
          depends: [post_*]
"""


def chain_spec(with_funnel: bool) -> str:
    head, params = CHAIN.split("    global.parameters:")
    return head + (FUNNEL if with_funnel else "") + "    global.parameters:" + params


@pytest.fixture
def studies(tmp_path):
    registry = Studies(tmp_path)
    yield registry
    registry.stop_all()




def runs(studies: Studies) -> List[str]:
    path = studies.root / "spec" / "runs.txt"
    return path.read_text().split() if path.exists() else []


def ledger_nodes(study: Path) -> List[str]:
    return [line.split("\t")[1] for line in (study / "jobs.tsv").read_text().splitlines()]


def snapshot(study: Path) -> Dict[str, float]:
    """Every file of the study directory with its modification time (to prove nothing was written)."""
    return {str(p.relative_to(study)): p.stat().st_mtime_ns for p in study.rglob("*")}


def run_failing(studies: Studies, name: str, with_funnel: bool = True, ok_for=(1, 3)) -> Path:
    spec = studies.spec(name, chain_spec(with_funnel))
    for x in ok_for:
        studies.release(f"ok-{x}")
    study = studies.out(name)
    result = maestro("run", spec, "-o", study, "--wait", "--poll", "0.1")
    assert result.returncode == 2, result.stdout + result.stderr
    return study


def resubmit(study: Path, *options) -> subprocess.CompletedProcess:
    return maestro("resubmit", study, *options)


# --------------------------------------------------------------------------- the main path

def test_resubmit_runs_the_failed_node_and_its_descendants_only(studies):
    study = run_failing(studies, "chain")
    assert states(study) == {
        "prepare": "FINISHED", "work_X.1": "FINISHED", "work_X.2": "FAILED", "work_X.3": "FINISHED",
        "post_X.1": "FINISHED", "post_X.2": "CANCELLED", "post_X.3": "FINISHED", "report": "CANCELLED"}
    assert sorted(runs(studies)) == sorted(["prepare", "work_1", "work_2", "work_3", "post_1", "post_3"])
    old_err = (study / "work" / "X.2" / "work_X.2.err").read_text()
    assert old_err == "no ok-2\n"

    # --dry: the selection, grouped by step, and nothing written
    before = snapshot(study)
    dry = ok(resubmit(study, "--dry"))
    assert snapshot(study) == before
    lines = dry.stdout.splitlines()
    assert "3 node(s) of 3 step(s)" in lines[0] and "5 finished node(s) are kept" in lines[0], dry.stdout
    assert "  work: 1 node(s)" in lines and "  post: 1 node(s)" in lines and "  report: 1 node(s)" in lines
    assert "    work_X.2  (FAILED)" in lines and "    post_X.2  (CANCELLED)" in lines
    assert "    report  (CANCELLED)" in lines
    assert "work_X.1" not in dry.stdout and "prepare" not in dry.stdout
    assert "nothing was written" in dry.stdout

    # fix the cause, resubmit, wait
    studies.release("ok-2")
    result = ok(resubmit(study))
    assert "resubmitting 3 node(s)" in result.stdout and "runner pid" in result.stdout
    nodes = wait_for_end(study)
    assert {n: v["state"] for n, v in nodes.items()} == {name: "FINISHED" for name in nodes}
    assert (study / "report").is_dir() and (study / "post" / "X.2" / "in.txt").read_text() == "data\n"

    # the finished nodes were not run again; the resubmitted ones ran once more
    assert sorted(runs(studies)) == sorted(["prepare", "work_1", "work_2", "work_3", "post_1", "post_3",
                                            "work_2", "post_2", "report"])
    # the ledger keeps every attempt; status shows the latest and the count
    recorded = ledger_nodes(study)
    assert recorded.count("work_X.2") == 2 and recorded.count("work_X.1") == 1
    assert recorded.count("post_X.2") == 1 and recorded.count("report") == 1   # skipped nodes never started
    assert nodes["work_X.2"]["restarts"] == 1 and nodes["work_X.1"]["restarts"] == 0
    assert nodes["post_X.2"]["restarts"] == 0
    last_pid = [line.split("\t")[2] for line in (study / "jobs.tsv").read_text().splitlines()
                if line.split("\t")[1] == "work_X.2"][-1]
    assert nodes["work_X.2"]["job_id"] == dict(markers(study, nodes["work_X.2"]))["JOB_ID"]
    assert last_pid  # the runner records the pid it started

    # the previous attempt's files were moved aside, not lost; the new ones start clean
    work2 = study / "work" / "X.2"
    assert (work2 / "work_X.2.attempt-1.err").read_text() == old_err
    assert (work2 / "work_X.2.attempt-1.out").read_text() == "work 2 was here\n"
    assert "EXIT_CODE=4" in (work2 / "work_X.2.attempt-1.status").read_text()
    assert [k for k, _ in markers(study, nodes["work_X.2"])].count("START") == 1
    assert "EXIT_CODE=4" not in (work2 / "work_X.2.status").read_text()
    assert "SKIPPED" in (study / "post" / "X.2" / "post_X.2.attempt-1.status").read_text()
    assert not list((study / "work" / "X.1").glob("*.attempt-*"))

    # the script is kept, runs only once, and there is nothing left to resubmit
    script = study / ".maestro" / "resubmit-1.sh"
    assert os.access(script, os.X_OK)
    again = subprocess.run(["bash", str(script)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert again.returncode == 1 and "jobs.tsv changed" in again.stderr
    assert not list(work2.glob("*.attempt-2.*"))
    nothing = ok(resubmit(study))
    assert "nothing to resubmit" in nothing.stdout
    assert not (study / ".maestro" / "resubmit-2.sh").exists()
    assert not (study / ".maestro" / "resubmitting").exists()


def test_a_node_that_fails_again_gets_a_second_attempt(studies):
    study = run_failing(studies, "again", with_funnel=False)
    ok(resubmit(study, "-j", "1"))           # the cause is not fixed: it fails once more
    nodes = wait_for_end(study)
    assert nodes["work_X.2"]["state"] == "FAILED" and nodes["post_X.2"]["state"] == "CANCELLED"
    assert nodes["work_X.2"]["restarts"] == 1
    studies.release("ok-2")
    ok(resubmit(study))
    nodes = wait_for_end(study)
    assert nodes["work_X.2"]["state"] == "FINISHED" and nodes["work_X.2"]["restarts"] == 2
    work2 = study / "work" / "X.2"
    assert sorted(p.name for p in work2.glob("*.attempt-*.status")) == \
        ["work_X.2.attempt-1.status", "work_X.2.attempt-2.status"]
    assert ledger_nodes(study).count("work_X.2") == 3
    assert runs(studies).count("work_2") == 3 and runs(studies).count("work_1") == 1
    assert sorted(p.name for p in (study / ".maestro").glob("resubmit-*.sh")) == ["resubmit-1.sh", "resubmit-2.sh"]


# --------------------------------------------------------------------------- --only

def test_only_narrows_the_selection_to_steps_or_nodes(studies):
    study = run_failing(studies, "only", with_funnel=False, ok_for=(1,))
    assert states(study) == {"prepare": "FINISHED", "work_X.1": "FINISHED", "work_X.2": "FAILED",
                             "work_X.3": "FAILED", "post_X.1": "FINISHED", "post_X.2": "CANCELLED",
                             "post_X.3": "CANCELLED"}

    unknown = resubmit(study, "--only", "wrok")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert "--only wrok" in unknown.stderr and "'work'" in unknown.stderr    # a suggestion
    # post_X.3 alone would run without its parent work_X.3, which failed
    orphan = resubmit(study, "--only", "post_X.3")
    assert orphan.returncode == 1 and "work_X.3" in orphan.stderr and "Traceback" not in orphan.stderr

    studies.release("ok-2")
    dry = ok(resubmit(study, "--only", "work_X.2", "--dry"))
    assert "work_X.2" in dry.stdout and "post_X.2" in dry.stdout and "X.3" not in dry.stdout
    ok(resubmit(study, "--only", "work_X.2"))
    nodes = wait_for_end(study)
    # the others keep their state while (and after) the runner runs the selection
    assert {n: v["state"] for n, v in nodes.items()} == {
        "prepare": "FINISHED", "work_X.1": "FINISHED", "work_X.2": "FINISHED", "work_X.3": "FAILED",
        "post_X.1": "FINISHED", "post_X.2": "FINISHED", "post_X.3": "CANCELLED"}
    assert runs(studies).count("work_3") == 1

    # a step name selects that step's failed nodes (and their descendants)
    studies.release("ok-3")
    ok(resubmit(study, "--only", "work"))
    nodes = wait_for_end(study)
    assert all(node["state"] == "FINISHED" for node in nodes.values())
    assert runs(studies).count("work_2") == 2 and runs(studies).count("work_3") == 2
    assert runs(studies).count("post_1") == 1


# --------------------------------------------------------------------------- refusals

def test_refused_while_a_node_runs(studies):
    spec = studies.spec("busy", f"""
        study:
          - name: slow
            description: runs until the test releases it
            run:
              cmd: |
                {gated('release')}
                echo slow >> $(SPECROOT)/runs.txt
          - name: broken
            description: fails at once
            run:
              cmd: echo broken >> $(SPECROOT)/runs.txt; exit 1
        """)
    study = studies.compile(spec)
    ok(maestro("submit", study))
    wait_until(lambda: states(study) == {"slow": "RUNNING", "broken": "FAILED"}, "slow RUNNING, broken FAILED")
    for options in ((), ("--dry",)):
        refused = resubmit(study, *options)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "slow (RUNNING)" in refused.stderr and "still pending or running" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert not list((study / ".maestro").glob("resubmit-*"))
    assert not list((study / "broken").glob("*.attempt-*"))

    studies.release("release")
    wait_for_end(study)
    ok(resubmit(study))
    nodes = wait_for_end(study)
    assert nodes["broken"]["state"] == "FAILED" and nodes["broken"]["restarts"] == 1
    assert nodes["slow"]["state"] == "FINISHED" and runs(studies).count("slow") == 1


def test_refused_before_the_first_submit_and_during_another_resubmit(studies):
    spec = studies.spec("never", """
        study:
          - name: one
            description: never submitted
            run: {cmd: exit 1}
        """)
    study = studies.compile(spec)
    never = resubmit(study)
    assert never.returncode == 1 and "maestro submit" in never.stderr and "Traceback" not in never.stderr
    assert not (study / ".maestro").exists() or not list((study / ".maestro").glob("resubmit-*"))

    result = maestro("run", spec, "-o", studies.out("locked"), "--wait", "--poll", "0.1")
    assert result.returncode == 2
    locked = studies.root / "locked"
    (locked / ".maestro" / "resubmitting").write_text("1 2 host\n")
    refused = resubmit(locked)
    assert refused.returncode == 1 and "another resubmission" in refused.stderr
    (locked / ".maestro" / "resubmitting").unlink()
    ok(resubmit(locked))
    assert wait_for_end(locked)["one"]["restarts"] == 1


def test_a_cancelled_study_is_resubmitted_and_no_longer_counts_as_cancelled(studies):
    spec = studies.spec("cancelled", f"""
        study:
          - name: first
            description: runs until the test releases it, or is cancelled
            run:
              cmd: |
                echo first >> $(SPECROOT)/runs.txt
                {gated('release')}
          - name: second
            description: after first
            run:
              cmd: echo second >> $(SPECROOT)/runs.txt
              depends: [first]
        """)
    study = studies.compile(spec)
    ok(maestro("submit", study))
    wait_until(lambda: states(study)["first"] == "RUNNING", "first to run")
    ok(maestro("cancel", study))
    assert wait_for_end(study) and states(study) == {"first": "CANCELLED", "second": "CANCELLED"}

    studies.release("release")
    ok(resubmit(study))
    nodes = wait_for_end(study)
    assert {n: v["state"] for n, v in nodes.items()} == {"first": "FINISHED", "second": "FINISHED"}
    data = json.loads(ok(maestro("status", study, "--json")).stdout)
    assert data["cancelled"] is False
    assert len(list((study / ".maestro").glob("cancelled.*"))) == 1      # the record is kept
    assert runs(studies) == ["first", "first", "second"]
    # run by hand the runner's own way: a name the study does not have is refused
    bad = studies.root / "bad.nodes"
    bad.write_text("nosuchnode\n")
    out = subprocess.run(["bash", str(study / "submit.sh"), "--nodes", str(bad)], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=DEADLINE)
    assert out.returncode == 2 and "nosuchnode" in out.stderr


# --------------------------------------------------------------------------- scale

def wide_manifest(width: int):
    """prepare -> work_i (width of them) -> post_i -> report (a funnel over every post_i)."""
    nodes = {"prepare": {"step": "prepare", "workspace": "prepare", "depends": [], "log": "prepare/prepare",
                         "script": "prepare/prepare.slurm.sh", "params": {}}}
    for i in range(width):
        for step, parent in (("work", "prepare"), ("post", f"work_X.{i}")):
            name = f"{step}_X.{i}"
            nodes[name] = {"step": step, "workspace": f"{step}/X.{i}", "depends": [parent], "params": {"X": str(i)},
                           "log": f"{step}/X.{i}/{name}", "script": f"{step}/X.{i}/{name}.slurm.sh"}
    nodes["report"] = {"step": "report", "workspace": "report", "depends": [f"post_X.{i}" for i in range(width)],
                       "log": "report/report", "script": "report/report.slurm.sh", "params": {}}
    from maestro_compile.backends import BACKENDS
    from maestro_compile.studydir import parse_manifest
    return parse_manifest({"format": 1, "name": "wide", "backend": "slurm", "nodes": nodes}, "study.json", BACKENDS)


def test_selection_is_linear_for_a_30k_node_study():
    from maestro_compile.resubmit import select
    from maestro_compile.status import NodeStatus

    def timed(width: int) -> float:
        manifest = wide_manifest(width)
        # every other work node failed; its post node and the report were cancelled
        rows = [NodeStatus(name, info.step, info.workspace,
                           state="FAILED" if name.startswith("work") and int(name.split(".")[1]) % 2 else
                           "CANCELLED" if name == "report" or (name.startswith("post") and int(name.split(".")[1]) % 2)
                           else "FINISHED")
                for name, info in manifest.nodes.items()]
        started = time.perf_counter()
        selection = select(manifest, rows)
        took = time.perf_counter() - started
        assert len(selection.names) == width + 1 and selection.names[-1] == "report"
        assert selection.names[:2] == ["work_X.1", "post_X.1"]
        return took

    # linear: ~0.3 s here; a walk that is quadratic in the nodes (60k^2 steps) would take minutes.
    # No ratio against a small study: caches and the garbage collector make that ratio noisy.
    took = min(timed(30000) for _ in range(2))
    assert took < 3.0, f"selecting in a 60k-node study took {took:.2f}s"


def test_only_may_not_leave_out_a_parent_that_did_not_finish():
    from maestro_compile.errors import SubmitError
    from maestro_compile.resubmit import select
    from maestro_compile.status import NodeStatus
    manifest = wide_manifest(3)
    states = {"work_X.1": "FAILED", "work_X.2": "FAILED", "post_X.1": "CANCELLED", "post_X.2": "CANCELLED",
              "report": "CANCELLED"}
    rows = [NodeStatus(name, info.step, info.workspace, state=states.get(name, "FINISHED"))
            for name, info in manifest.nodes.items()]
    assert select(manifest, rows, ["work"]).names == ["work_X.1", "post_X.1", "work_X.2", "post_X.2", "report"]
    with pytest.raises(SubmitError, match=r"post_X.2 \(CANCELLED, parent of report\)"):
        select(manifest, rows, ["work_X.1"])


def test_a_funnel_over_too_many_resubmitted_parents_is_refused_before_anything_is_written(tmp_path):
    from maestro_compile.backends import get_backend
    from maestro_compile.errors import SubmitError
    from maestro_compile.studydir import StudyDir
    layout = {"study_name": "wide", "number": 1, "created": "now", "ledger_size": 0, "counts": "",
              "jobs_limit": 1}

    def render(width: int) -> str:
        manifest = wide_manifest(width)
        names = [name for name in manifest.nodes if name != "prepare"]
        return get_backend("slurm").render_resubmit(StudyDir(tmp_path, manifest), names,
                                                    dict(layout, node_count=len(names),
                                                         logs=[manifest.nodes[n].log for n in names]))

    text = render(2000)
    report = next(line for line in text.splitlines() if line.startswith("submit ") and " report " in line)
    assert '"--dependency=afterok:${J1}:${J3}:' in report and report.count("afterok") == 1
    with pytest.raises(SubmitError, match=r"node report would wait for 30000 resubmitted parents"):
        render(30000)
    assert list(tmp_path.iterdir()) == []
