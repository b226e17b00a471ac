"""Faults injected into submissions on the real one-node Slurm cluster: kill -9 of the submitter,
a controller lost between two sbatch calls, cancel with the controller down, a full disk while
array ids are recorded, SIGINT/SIGTERM to `maestro`, two concurrent submits.

Each test checks the exit code and the message, then that the queue holds exactly the jobs of
the study's latest attempt (no orphan, found by the study's tag) and that the study runs to its end.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

from helpers import maestro, ok, states, wait_until
from test_slurm_e2e import DEADLINE, Studies, base_ids, ledger, run

pytestmark = pytest.mark.slurm

CLUSTER = Path(__file__).parent / "slurm" / "cluster.sh"
WIDTH = 30    # parameter values: 4 chained steps of single jobs -> 120 sbatch calls


def chain_spec(width: int = WIDTH) -> str:
    """4 steps chained one-to-one; a distinct walltime per value keeps every node a job of its own."""
    values = ", ".join(f'"00:{10 + i:02d}:00"' for i in range(width))
    lines = ["study:"]
    for index, name in enumerate(("a", "b", "c", "d")):
        lines += [f"  - name: {name}", f"    description: link {name}", "    run:",
                  f"      cmd: echo {name} $(WT)", "      walltime: $(WT)"]
        if index:
            lines.append(f"      depends: [{'abc'[index - 1]}]")
    lines += ["global.parameters:", "  WT:", f"    values: [{values}]", "    label: WT.%%"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def studies(tmp_path, slurm_cluster):
    registry = Studies(tmp_path)
    yield registry
    controller("ctld-start")      # a test that failed half-way must not leave the controller down
    registry.stop_all()


def controller(action: str) -> None:
    result = subprocess.run(["bash", str(CLUSTER), action], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def tag(study: Path) -> str:
    return "maestro_compile:" + json.loads((study / "study.json").read_text())["id"]


def queued_by_tag(study: Path) -> Set[str]:
    """Base ids of the queued jobs that carry the study's tag (what the scheduler itself says)."""
    listing = run(["squeue", "--me", "-h", "-t", "PD,R,S,CF", "-o", "%F|%k"]).stdout
    mark = tag(study)
    return {line.split("|")[0] for line in listing.splitlines()
            if line.split("|", 1)[-1] == mark or line.split("|", 1)[-1].startswith(mark + " ")}


def latest_attempt(study: Path) -> Set[str]:
    return set(base_ids(job_id for _, job_id in ledger(study)))


def start_submit(study: Path, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """`maestro submit` in a session of its own, so that a test can kill it and its submit.sh."""
    return subprocess.Popen([sys.executable, "-m", "maestro_compile", "submit", str(study)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)


def sbatch_wrapped(tmp_path: Path, before: str) -> Dict[str, str]:
    """An environment whose sbatch runs the bash line `before` first, with $n the call's number."""
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    counter = tmp_path / "sbatch-calls"
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    (wrappers / "sbatch").write_text(f"""#!/bin/bash
n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}
{before}
exec {real} "$@"
""")
    (wrappers / "sbatch").chmod(0o755)
    return dict(os.environ, PATH=f"{wrappers}:{os.environ['PATH']}")


def sbatch_slowed_after(calls: int, tmp_path: Path) -> Dict[str, str]:
    """sbatch takes a second per call after the first `calls`, so that a test can interrupt a
    submission part-way however fast the cluster answers."""
    return sbatch_wrapped(tmp_path, f"(( n > {calls} )) && sleep 1")


def ledger_lines(study: Path) -> int:
    path = study / "jobs.tsv"
    return path.read_text().count("\n") if path.exists() else 0


def expect_runs_to_the_end(study: Path, nodes: int) -> None:
    """The queue holds exactly the latest attempt's jobs, and every node finishes."""
    assert queued_by_tag(study) <= latest_attempt(study), "a job of an earlier attempt is still queued"
    assert len(ledger(study)) == nodes
    wait_until(lambda: set(states(study).values()) == {"FINISHED"}, "every node to finish", DEADLINE * 2,
               interval=2.0, detail=lambda: str(sorted(set(states(study).values()))))
    assert not queued_by_tag(study)


def test_kill_9_of_the_submitter_then_submit_recovers(studies, tmp_path):
    study = studies.compile(studies.spec("killed", chain_spec()))
    point = random.randint(5, 100)
    child = start_submit(study, sbatch_slowed_after(point, tmp_path))
    wait_until(lambda: ledger_lines(study) >= point or child.poll() is not None, f"{point} jobs recorded", 60)
    os.killpg(child.pid, signal.SIGKILL)          # maestro and its submit.sh, no rollback
    child.wait()
    killed = latest_attempt(study)
    assert killed and len(killed) < 4 * WIDTH, f"killed after {len(killed)} job(s): the test needs a partial one"
    assert not (study / ".maestro" / "queued").exists()
    shown = json.loads(ok(maestro("status", study, "--json")).stdout)["nodes"]
    assert any("interrupted" in node["reason"] for node in shown), shown[:3]

    again = maestro("submit", study)
    assert again.returncode == 0, again.stderr
    assert "recovered the interrupted submission" in again.stdout
    assert killed.isdisjoint(latest_attempt(study)), "an id of the killed attempt was adopted"
    assert not killed & queued_by_tag(study), "a job of the killed attempt is still queued"
    expect_runs_to_the_end(study, 4 * WIDTH)


def test_controller_lost_between_two_sbatch_calls(studies, tmp_path):
    study = studies.compile(studies.spec("lost", chain_spec(5)))
    env = sbatch_wrapped(tmp_path, f"(( n == 4 )) && bash {CLUSTER} ctld-stop >/dev/null 2>&1")
    started = time.monotonic()
    failed = subprocess.run([sys.executable, "-m", "maestro_compile", "submit", str(study)], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, env=env, timeout=300)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "could not confirm that these job(s) are cancelled" in failed.stderr
    assert "nothing of this study is queued" not in failed.stderr        # no false claim
    unconfirmed = (study / ".maestro" / "rollback.incomplete").read_text().split()
    assert len(unconfirmed) == 3 and (study / "jobs.tsv").exists()      # kept on record
    assert time.monotonic() - started < 200

    controller("ctld-start")
    assert set(unconfirmed) <= queued_by_tag(study)    # the held jobs came back with the controller
    again = ok(maestro("submit", study))
    assert "recovered the interrupted submission" in again.stdout
    assert not set(unconfirmed) & queued_by_tag(study)
    expect_runs_to_the_end(study, 20)


def test_cancel_with_the_controller_down_says_so(studies):
    study = studies.compile(studies.spec("cancel_down", """
        study:
          - name: wait
            description: sleeps until cancelled
            run:
              cmd: sleep 600
        """))
    ok(maestro("submit", study))
    controller("ctld-stop")
    started = time.monotonic()
    refused = maestro("cancel", study, timeout=200)
    assert refused.returncode == 69, refused.stdout + refused.stderr
    assert "controller" in refused.stderr.lower() and "Traceback" not in refused.stderr
    assert not (study / ".maestro" / "cancelled").exists()
    assert time.monotonic() - started < 120
    controller("ctld-start")
    done = ok(maestro("cancel", study))
    assert "cancelled 1 queued or running job(s)" in done.stdout
    assert (study / ".maestro" / "cancelled").exists() and not queued_by_tag(study)


def test_disk_full_while_array_ids_are_recorded(studies, tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    assert run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)]).returncode == 0
    try:
        spec = studies.spec("full", """
            study:
              - name: sweep
                description: one array of many tasks
                run:
                  cmd: echo $(X)
            global.parameters:
              X:
                values: [%s]
                label: X.%%%%
            """ % ", ".join(str(i) for i in range(600)))
        study = disk / "study"
        studies.dirs.append(study)
        ok(maestro("compile", spec, "--backend", "slurm", "-o", study))
        filler = disk / "filler"
        run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"])          # fills the disk
        filler.write_bytes(filler.read_bytes()[:-(8 * 1024)])        # room for the lock, not for 600 ids
        failed = maestro("submit", study)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "cannot write" in failed.stderr and "nothing of this study is queued any more" in failed.stderr
        assert not queued_by_tag(study) and not (study / "jobs.tsv").exists()
        filler.unlink()
        ok(maestro("submit", study))
        wait_until(lambda: set(states(study).values()) == {"FINISHED"}, "the sweep to finish", DEADLINE * 3,
                   interval=3.0)
    finally:
        run(["umount", "-l", str(disk)])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_maestro_rolls_back_and_shows_it(studies, signum, tmp_path):
    study = studies.compile(studies.spec(f"signal{int(signum)}", chain_spec()))
    child = start_submit(study, sbatch_slowed_after(10, tmp_path))
    wait_until(lambda: ledger_lines(study) >= 10, "10 jobs recorded", 60)
    child.send_signal(signum)                     # to maestro only: it must pass it on and wait
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, out + err
    assert "interrupted by" in err and "cancelling the" in err and "nothing of this study is queued" in err
    assert not queued_by_tag(study) and not (study / ".maestro" / "submitted").exists()
    ok(maestro("submit", study))
    expect_runs_to_the_end(study, 4 * WIDTH)


def test_two_concurrent_submits_queue_the_study_once(studies):
    study = studies.compile(studies.spec("twice", chain_spec(5)))
    first, second = start_submit(study), start_submit(study)
    results: List[subprocess.CompletedProcess] = []
    for child in (first, second):
        out, err = child.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(child.args, child.returncode, out, err))
    codes = sorted(result.returncode for result in results)
    assert codes == [0, 1], [(r.returncode, r.stderr) for r in results]
    loser = next(result for result in results if result.returncode == 1)
    assert "already submitted" in loser.stderr or "in progress" in loser.stderr
    expect_runs_to_the_end(study, 20)
