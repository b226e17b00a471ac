"""`maestro resubmit` of a study compiled with bundles (docs/big-sweeps.md): the chosen nodes of
bundles run in bundles again (their bundle script as a plain job, told its nodes through
MAESTRO_BUNDLE_NODES), so a resubmission fits the limit the study was compiled for."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from maestro_compile.backends.flux import FluxBackend
from maestro_compile.backends.lsf import LsfBackend
from maestro_compile.backends.pbs import PbsBackend
from maestro_compile.backends.slurm import SlurmBackend
from maestro_compile.errors import SubmitError
from maestro_compile.studydir import StudyDir
from test_bundles import compiled, markers, sweep

LAYOUT = {"study_name": "s", "number": 3, "created": "now", "ledger_size": 0, "node_count": 0, "counts": "",
          "jobs_limit": 1, "logs": []}
BACKENDS = {"slurm": SlurmBackend, "lsf": LsfBackend, "pbs": PbsBackend, "flux": FluxBackend}


def failed_and_below(study: StudyDir, xs) -> list:
    """simulate_X.x for x in xs, their analyze nodes and the funnel, in study order."""
    wanted = {f"{step}_X.{x}" for step in ("simulate", "analyze") for x in xs} | {"collect"}
    return [name for name in study.manifest.nodes if name in wanted]


def submit_lines(text: str) -> list:
    return [line for line in text.splitlines() if line.startswith("submit J")]


def test_bundled_nodes_are_resubmitted_in_bundles_of_at_most_the_step_s_size(tmp_path):
    # 31 nodes under a limit of 8: bundles of 5, 7 jobs; 19 nodes to resubmit would be 19 jobs one by one
    study = StudyDir.open(compiled(tmp_path, sweep(10), max_queued=8).directory)
    names = failed_and_below(study, range(9))
    text = SlurmBackend().render_resubmit(study, names, LAYOUT)
    lines = submit_lines(text)
    assert len(lines) == 5 <= study.manifest.get("max_queued")
    chosen = [re.search(r"MAESTRO_BUNDLE_NODES=([0-9:]+)", line).group(1) for line in lines]
    assert chosen == ["0:1:2:3:4", "5:6:7:8", "0:1:2:3:4", "5:6:7:8", "0"]
    assert [line.split()[1] for line in lines] == ["J0", "J1", "J2", "J3", "J4"]
    # the roots are held; a bundle waits for the bundles holding its nodes' parents (whole jobs)
    assert "--hold" in lines[0] and "--hold" in lines[1]
    assert '"--dependency=afterok:${J0}"' in lines[2] and '"--dependency=afterok:${J1}"' in lines[3]
    assert '"--dependency=afterok:${J2}:${J3}"' in lines[4]
    assert all("simulate.bundle.slurm.sh" in line for line in lines[:2]) and "--array" not in text
    assert "simulate.bundle.resubmit3-0.log" in lines[0]
    # every node of a bundle is recorded with its job's id
    assert 'record_nodes "${J1}" simulate_X.5 simulate_X.6 simulate_X.7 simulate_X.8' in text


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_bundle_backend_tells_the_plain_job_its_nodes(tmp_path, backend):
    study = StudyDir.open(compiled(tmp_path, sweep(10, backend), max_queued=8).directory)
    text = BACKENDS[backend]().render_resubmit(study, failed_and_below(study, (1, 2, 3)), LAYOUT)
    lines = submit_lines(text)
    assert len(lines) == 3   # simulate, analyze (3 nodes of one bundle each), collect
    assert all(re.search(r"MAESTRO_BUNDLE_NODES=1:2:3\b", line) for line in lines[:2])
    if backend == "lsf":      # a plain name wins over the script's array name
        assert "-J simulate -env 'all, MAESTRO_BUNDLE_NODES=1:2:3'" in lines[0]
    if backend == "pbs":      # a plain job: its own log instead of the array's ^array_index^ one
        assert "-J 0-" not in text and "-o " in lines[0] and "depend=afterany:${J0}" in lines[1]
    if backend == "flux":     # a bundle is a flux batch job, waiting with afterany
        assert "simulate/simulate.bundle.flux.sh batch --urgency=hold" in lines[0] and "--dependency=afterany:${J0}" in lines[1]


def test_a_resubmission_over_the_limit_is_refused_when_the_scripts_cannot_be_told_their_nodes(tmp_path):
    # a study compiled before bundles took MAESTRO_BUNDLE_NODES: each node a job of its own, as then
    directory = compiled(tmp_path, sweep(10), max_queued=8).directory
    for script in directory.glob("*/*.bundle*.slurm.sh"):
        script.write_text(script.read_text().replace("MAESTRO_BUNDLE_NODES", "OLD_SCRIPT"))
    study = StudyDir.open(directory)
    names = failed_and_below(study, range(9))
    with pytest.raises(SubmitError, match=r"resubmitting 19 node\(s\) would queue 19 job\(s\) \(each node a job "
                                          r"of its own\), more than the 8"):
        SlurmBackend().render_resubmit(study, names, LAYOUT)
    assert len(submit_lines(SlurmBackend().render_resubmit(study, names[:8], LAYOUT))) == 8


def test_unbundled_steps_keep_one_job_per_node_and_bundles_wait_for_them(tmp_path):
    # `bundle: 3` on analyze only: prepare and simulate stay plain, analyze and collect run in bundles
    body = sweep(6).replace("cmd: cat ../../simulate/X.$(X)/sim.txt > ana.txt",
                            "cmd: cat ../../simulate/X.$(X)/sim.txt > ana.txt\n              bundle: 3")
    study = StudyDir.open(compiled(tmp_path, body, max_queued=100).directory)
    assert set(study.manifest.get("bundles")) == {"analyze", "collect"}
    names = failed_and_below(study, (0, 4))
    lines = submit_lines(SlurmBackend().render_resubmit(study, names, LAYOUT))
    assert [line.split()[2] for line in lines] == ["simulate_X.0", "simulate_X.4", "analyze/analyze.bundle.slurm.sh",
                                                   "analyze/analyze.bundle1.slurm.sh",
                                                   "collect/collect.bundle.slurm.sh"]
    assert "MAESTRO_BUNDLE_NODES" not in lines[0] + lines[1]
    # analyze_X.0 is in the first bundle script's first bundle, analyze_X.4 in the second: one job each
    assert '"--dependency=afterok:${J0}"' in lines[2] and '"--dependency=afterok:${J1}"' in lines[3]


def run_nodes(script: Path, chosen: str) -> subprocess.CompletedProcess:
    """The bundle script as a plain Slurm job given MAESTRO_BUNDLE_NODES (no array task)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY")}
    env.update(MAESTRO_BUNDLE_NODES=chosen, SLURM_JOB_ID="91", SLURM_CPUS_ON_NODE="2", SLURM_JOB_NUM_NODES="1")
    return subprocess.run([str(script)], cwd=script.parent, env=env, capture_output=True, text=True, timeout=60)


def test_a_bundle_script_told_its_nodes_runs_only_them_and_checks_their_parents(tmp_path):
    result = compiled(tmp_path, sweep(4), bundle=4, max_queued=1000)
    study = result.directory
    (tmp_path / "spec" / "fail.3").write_text("")
    assert run_nodes(study / "prepare/prepare.bundle.slurm.sh", "0:1:2:3").returncode == 0
    done = run_nodes(study / "simulate/simulate.bundle.slurm.sh", "1:3")
    assert done.returncode == 0, done.stderr
    assert markers(study, "simulate/X.0", "simulate_X.0") is None      # not chosen: not run
    assert markers(study, "simulate/X.1", "simulate_X.1")["EXIT_CODE"] == "0"
    assert markers(study, "simulate/X.3", "simulate_X.3")["JOB_ID"] == "91"
    done = run_nodes(study / "analyze/analyze.bundle.slurm.sh", "1:3")
    assert "skipped analyze_X.3: ancestor simulate_X.3 failed" in done.stdout
    assert (study / "analyze/X.1/ana.txt").read_text() == "prep 1\n"
    for bad in ("4", "1:x"):
        done = run_nodes(study / "analyze/analyze.bundle.slurm.sh", bad)
        assert done.returncode == 1 and "no node" in done.stderr


# --- LSF, against the command double of tests/doubles/lsf (it runs the jobs for real) ---

def test_lsf_a_sweep_with_most_nodes_failed_is_resubmitted_in_bundles_within_the_limit(tmp_path):
    from test_doubles_e2e import Scheduler, ledger
    # the double's pending threshold is the limit: compile reads it from busers, bsub refuses past it
    lsf = Scheduler("lsf", tmp_path, LSF_DOUBLE_MAX_PEND_JOBS="10", LSB_NTRIES="1")
    try:
        points = 30
        failing = [x for x in range(points) if x % 3]          # 20 of the 30 simulations fail
        spec = lsf.spec("many", sweep(points).replace("$(SPECROOT)/fail", str(tmp_path / "fail")))
        for x in failing:
            (tmp_path / f"fail.{x}").write_text("")
        study = lsf.compile(spec)
        assert json.loads((study / "study.json").read_text())["max_queued"] == 10
        lsf.submit(study)
        expected = {f"{step}_X.{x}": "FINISHED" for step in ("prepare", "simulate", "analyze") for x in range(points)}
        expected.update({f"simulate_X.{x}": "FAILED" for x in failing})
        expected.update({f"analyze_X.{x}": "CANCELLED" for x in failing} | {"collect": "CANCELLED"})
        lsf.wait_for(study, expected)
        kept = {x: (study / f"simulate/X.{x}/simulate_X.{x}.status").read_text() for x in range(0, points, 3)}
        before = len(ledger(study))
        for x in failing:
            (tmp_path / f"fail.{x}").unlink()
        dry = lsf.ok("resubmit", study, "--dry")
        assert "would queue 5 job(s), 5 of them bundles (the study was compiled to fit 10)" in dry.stdout, dry.stdout
        assert not list((study / ".maestro").glob("resubmit-*"))
        done = lsf.ok("resubmit", study)
        assert "resubmitting 41 node(s)" in done.stdout and "as 5 LSF job(s)" in done.stdout
        nodes = lsf.wait_for(study, dict.fromkeys(expected, "FINISHED"))
        assert (study / "collect/count.txt").read_text().strip() == str(points)
        # only the failed nodes and their descendants ran again: the finished ones kept their one attempt
        for x, text in kept.items():
            assert (study / f"simulate/X.{x}/simulate_X.{x}.status").read_text() == text
            assert not list((study / f"simulate/X.{x}").glob("*.attempt-*"))
        assert all((study / f"simulate/X.{x}/simulate_X.{x}.attempt-1.status").exists() for x in failing)
        # 41 ledger lines, 5 jobs (20 simulations in bundles of 10, the same for analyze, the funnel)
        new = ledger(study)[before:]
        assert len(new) == 41 and len({job for _, job in new}) == 5
        assert len({nodes[f"simulate_X.{x}"]["job_id"] for x in failing}) == 2
    finally:
        lsf.stop()
