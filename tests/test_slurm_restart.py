"""Restart on timeout and in-job retries on the real Slurm cluster (slow: Slurm delays a
requeued job by about two minutes)."""
import json
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SPEC = textwrap.dedent("""\
    description: {name: restart, description: timeout then restart}
    batch: {type: slurm}
    study:
      - name: long
        description: runs out of time, then finishes with its restart command
        run:
          cmd: |
            echo first > first.txt
            sleep 600
          restart: |
            echo restarted > restarted.txt
          walltime: "00:01:00"
      - name: child
        description: waits for long through the requeue
        run:
          cmd: cat $(long.workspace)/restarted.txt > seen.txt
          depends: [long]
      - name: flaky
        description: fails on its first attempt only
        run:
          cmd: |
            if [ ! -f tried ]; then touch tried; exit 5; fi
            echo ok > ok.txt
    """)


def _maestro(*args, cwd):
    return subprocess.run([sys.executable, "-m", "maestro_compile", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_timeout_requeues_and_runs_the_restart_command(slurm_cluster, tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    result = _maestro("run", "spec.yaml", "-o", "study", "--retries", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    deadline = time.time() + 420
    while time.time() < deadline:
        status = {n["name"]: n for n in json.loads(_maestro("status", "study", "--json", cwd=tmp_path).stdout)["nodes"]}
        if all(n["state"] in ("FINISHED", "FAILED", "TIMEDOUT", "CANCELLED") for n in status.values()):
            break
        time.sleep(3)
    study = tmp_path / "study"
    assert {name: n["state"] for name, n in status.items()} == {"long": "FINISHED", "child": "FINISHED",
                                                               "flaky": "FINISHED"}
    assert status["long"]["restarts"] == 1
    assert (study / "long" / "first.txt").exists() and (study / "long" / "restarted.txt").exists()
    assert (study / "child" / "seen.txt").read_text() == "restarted\n"
    # the job kept its id through the requeue, so the child's afterok held
    ids = [line.split("\t")[2] for line in (study / "jobs.tsv").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 3
    assert "RETRY=1 after exit code 5" in (study / "flaky" / "flaky.status").read_text()
