"""PBS backend pieces that need no server: directives, launcher, job names, quoting, restart,
the submit script's words, batch.launcher validation."""
import re
import subprocess
import textwrap

import pytest

from helpers import study_files
from maestro_compile.backends.pbs import PbsBackend, job_name
from maestro_compile.cli import main
from maestro_compile.pipeline import Options, build_study, plan_study
from maestro_compile import walltime


def _study(tmp_path, body, **options):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(body))
    return build_study(Options(spec_path=spec, out_dir=tmp_path / "study", backend="pbs", **options))


def header(text):
    return [line for line in text.splitlines() if line.startswith("#PBS")]


STEP = """\
    description: {name: s, description: d}
    batch: {type: pbs, queue: debug, bank: "it's science", host: h}
    study:
      - name: run
        description: d
        run:
          cmd: |
            #PBS -l mem=4gb
            #PBS -m n
            $(LAUNCHER) ./app
            $(LAUNCHER)[1n, 2p] ./small
          nodes: 2
          procs: 6
          cores per task: 2
          gpus: 4
          exclusive: $(EXCL)
          walltime: "1-01:00:00"
    global.parameters:
      EXCL: {values: ["True", "False"], label: "E.%%"}
    """


def test_directives_launcher_and_user_directives(tmp_path):
    study = _study(tmp_path, STEP)
    excl, shared = (PbsBackend().render_step(study, node) for node in study.nodes)
    lines = header(excl)
    assert lines[:4] == ["#PBS -N mc_run_E.True", f"#PBS -P maestro_compile_{study.identity}",
                         "#PBS -o run_E.True.out", "#PBS -e run_E.True.err"]
    # 2 chunks (one per node) of 3 MPI processes with 2 cores each, 2 gpus each
    assert "#PBS -l select=2:ncpus=6:mpiprocs=3:ngpus=2" in lines
    assert '#PBS -q "debug"' in lines and '#PBS -A "it\'s science"' in lines
    assert "#PBS -l walltime=25:00:00" in lines                 # no days field: hours go on
    assert "#PBS -l place=excl" in lines and "#PBS -l place=excl" not in header(shared)   # "False" is false
    assert lines[-2:] == ["#PBS -l mem=4gb", "#PBS -m n"]       # moved from cmd into the header
    body = excl.split("(\n", 1)[1]
    assert "#PBS" not in body
    assert "mpiexec -n 6 --ppn 3 ./app" in body
    assert "mpiexec -n 2 --ppn 2 ./small" in body


@pytest.mark.parametrize("resources, select", [
    ("procs: 4", "select=4:ncpus=1:mpiprocs=1"),                         # no nodes: PBS places the processes
    ("nodes: 3", "select=3:ncpus=1:mpiprocs=1"),
    ("{nodes: 2, procs: 5}", "select=2:ncpus=3:mpiprocs=3"),              # rounded up per node
    ("'cores per task': 8", "select=1:ncpus=8:mpiprocs=1"),
    ("{procs: 2, gpus: 1}", "select=2:ncpus=1:mpiprocs=1:ngpus=1"),
    ("{}", None),
])
def test_select(tmp_path, resources, select):
    study = _study(tmp_path, f"""\
        description: {{name: s, description: d}}
        batch: {{type: pbs}}
        study:
          - name: a
            description: d
            run: {{cmd: echo, {resources.strip('{}')}}}
        """)
    lines = header(PbsBackend().render_step(study, study.nodes[0]))
    found = [line.split()[-1] for line in lines if line.startswith("#PBS -l select=")]
    assert found == ([select] if select else [])


def test_mpirun_launcher_and_reservation_is_a_queue(tmp_path):
    study = _study(tmp_path, """\
        description: {name: s, description: d}
        batch: {type: pbs, queue: workq, reservation: R42, launcher: mpirun}
        study:
          - name: a
            description: d
            run: {cmd: "$(LAUNCHER) ./x", procs: 3}
        """)
    text = PbsBackend().render_step(study, study.nodes[0])
    assert "mpirun -np 3 ./x" in text
    assert [line for line in header(text) if line.startswith("#PBS -q")] == ['#PBS -q "R42"']   # submit into the reservation


@pytest.mark.parametrize("name, expected", [
    ("nan", "mc_nan"), ("1e5", "mc_1e5"), ("123", "mc_123"),
    ("a b/c:d\"e", "mc_a_b_c_d_e"), ("x" * 300, "mc_" + "x" * 227),
])
def test_job_names_start_with_a_letter_and_never_read_as_numbers(name, expected):
    assert job_name(name) == expected
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.+-]{0,229}", job_name(name))


def test_spec_values_cannot_add_header_lines(tmp_path):
    study = _study(tmp_path, """\
        description: {name: s, description: d}
        batch: {type: pbs, queue: "q1\\n#PBS -l select=100"}
        study:
          - name: a
            description: d
            run: {cmd: echo}
        """)
    lines = header(PbsBackend().render_step(study, study.nodes[0]))
    assert '#PBS -q "q1 #PBS -l select=100"' in lines and not any(line.startswith("#PBS -l select") for line in lines)


def test_a_double_quote_in_a_directive_value_is_a_clear_error(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text('description: {name: s, description: d}\nbatch:\n  type: pbs\n  bank: \'a"b\'\n'
                    'study: [{name: a, description: d, run: {cmd: echo}}]\n')
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:4: batch.bank: PBS cannot read a double quote" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind, launcher, ok", [
    ("pbs", "mpiexec", True), ("pbs", "mpirun", True), ("pbs", "jsrun", False),
    ("lsf", "mpiexec", False), ("lsf", "lrun", True), ("slurm", "mpirun", True), ("slurm", "bogus", False),
])
def test_batch_launcher_is_checked_against_the_backend(tmp_path, capsys, kind, launcher, ok):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"description: {{name: n, description: d}}\nbatch:\n  type: {kind}\n  launcher: {launcher}\n"
                    "study: [{name: a, description: d, run: {cmd: echo}}]\n")
    assert main(["validate", str(spec)]) == (0 if ok else 1)
    err = capsys.readouterr().err
    if not ok:
        assert f"{spec}:4: batch.launcher: expected" in err and launcher in err
    if kind == "pbs" and not ok:
        assert "expected mpiexec or mpirun (PBS)" in err


def test_submit_words_hold_roots_and_chain_with_afterok(tmp_path):
    study = _study(tmp_path, """\
        description: {name: s, description: d}
        batch: {type: pbs}
        study:
          - {name: a, description: d, run: {cmd: echo $(X)}}
          - {name: b, description: d, run: {cmd: echo, depends: [a_*]}}
        global.parameters:
          X: {values: [1, 2], label: X.%%}
        """)
    backend = PbsBackend()
    plan = plan_study(study, backend)
    assert plan.array_count == 0 and len(plan.jobs) == 3     # no arrays on PBS: one job per node
    submit = study_files(backend, study)["submit.sh"].text
    lines = [line for line in submit.splitlines() if line.startswith("submit ")]
    assert lines[0].split()[4] == "-h" and lines[1].split()[4] == "-h"
    assert lines[2].split()[4:6] == ["-W", '"depend=afterok:${J0}:${J1}"']
    assert lines[0].split()[3] == str(study.directory / "a" / "X.1")     # qsub runs in the workspace
    assert 'qrls "${ROOTS[@]}"' in submit and "qdel" in submit
    assert subprocess.run(["bash", "-n"], input=submit, text=True).returncode == 0


def test_restart_runs_inside_the_job_with_room_for_every_attempt(tmp_path):
    study = _study(tmp_path, """\
        description: {name: s, description: d}
        batch: {type: pbs}
        study:
          - name: a
            description: d
            run: {cmd: "sleep 100", restart: "echo again", walltime: "00:01:00"}
        """, rlimit=2)
    text = PbsBackend().render_step(study, study.nodes[0])
    assert "#PBS -l walltime=00:04:00" in header(text)         # 3 attempts of 60 s + 60 s
    assert "timeout --kill-after=10 60" in text and "_mc_mark RESTART" in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


@pytest.mark.parametrize("seconds, text", [(0, "00:00:00"), (59, "00:00:59"), (3600, "01:00:00"),
                                           (90061, "25:01:01"), (360000, "100:00:00")])
def test_pbs_walltime(seconds, text):
    assert walltime.pbs_walltime(seconds) == text
