"""Slurm backend pieces that need no cluster: directives, launcher, job grouping, sacct parsing."""
import textwrap

import pytest

from maestro_compile.backends.slurm import SlurmBackend, expand_array_ids, parse_job_table
from helpers import study_files
from maestro_compile.states import NO_MARKERS, NativeStatus, Runtime, State, Verdict
from maestro_compile.pipeline import Options, build_study
from maestro_compile.errors import CompileError
from maestro_compile.plan import group_jobs


def _study(tmp_path, body, **options):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(body))
    return build_study(Options(spec_path=spec, out_dir=tmp_path / "study", backend="slurm", **options))


STEP = """\
    description: {name: s, description: d}
    batch: {type: slurm, queue: pdebug, bank: science, host: quartz}
    study:
      - name: run
        description: |
          two "quoted"
          lines \\ here
        run:
          cmd: |
            #SBATCH --constraint=gpu
            $(LAUNCHER) ./app
            $(LAUNCHER)[1n, 2p] ./small
            $(LAUNCHER)[2, 3] ./legacy
          nodes: 2
          procs: 4
          cores per task: 2
          exclusive: $(EXCL)
          walltime: "01:00:00"
    global.parameters:
      EXCL: {values: ["False"], label: "E.%%"}
    """


def test_directives_launcher_and_user_directives(tmp_path):
    study = _study(tmp_path, STEP)
    node = study.nodes[0]
    text = SlurmBackend().render_step(study, node)
    header = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert header[:3] == ['#SBATCH --job-name="run_E.False"', "#SBATCH --output=run_E.False.out",
                          "#SBATCH --error=run_E.False.err"]
    assert "#SBATCH --nodes=2" in header and "#SBATCH --ntasks=4" in header  # --ntasks kept with nodes
    assert '#SBATCH --partition="pdebug"' in header and '#SBATCH --account="science"' in header
    assert f'#SBATCH --comment="maestro_compile:{study.identity} two \\"quoted\\" lines \\\\ here"' in header
    assert "#SBATCH --exclusive" not in header          # the string "False" means false
    assert header[-1] == "#SBATCH --constraint=gpu"       # moved from cmd into the header
    body = text.split("(\n", 1)[1]
    assert "#SBATCH" not in body
    assert "srun -n 4 -N 2 -c 2 ./app" in body
    assert "srun -n 2 -N 1 -c 2 ./small" in body
    assert "srun -n 3 -N 2 -c 2 ./legacy" in body         # no double space (Maestro bug)


def test_launcher_asking_for_more_than_the_step_is_an_error(tmp_path):
    study = _study(tmp_path, STEP.replace("[1n, 2p] ./small", "[3n, 2p] ./small"))
    with pytest.raises(CompileError, match=r"asks for 3 nodes but the step requests 2"):
        SlurmBackend().render_step(study, study.nodes[0])


GROUPS = """\
    description: {name: g, description: d}
    study:
      - name: build
        description: d
        run: {cmd: make}
      - name: sim
        description: d
        run: {cmd: "sim $(SIZE)", depends: [build]}
      - name: post
        description: d
        run: {cmd: "post $(SIZE)", depends: [sim]}
      - name: trial
        description: d
        run: {cmd: "t $(TRIAL)", depends: [sim]}
      - name: agg
        description: d
        run: {cmd: agg, depends: [post_*]}
    global.parameters:
      SIZE: {values: [10, 10, 20], label: "S.%%"}
      TRIAL: {values: [1, 2, 3], label: "T.%%"}
    """


def test_grouping_arrays_aftercorr_funnel_and_fallback(tmp_path):
    study = _study(tmp_path, GROUPS)
    jobs = group_jobs(study.nodes, 1000, lambda nodes: True)
    summary = [(j.step, j.array, len(j.nodes), [(d.job, d.kind, d.task) for d in j.depends]) for j in jobs]
    assert summary[0] == ("build", False, 1, [])
    assert summary[1] == ("sim", True, 2, [(0, "afterok", None)])     # SIZE 10,10,20 -> 2 nodes
    assert summary[2] == ("post", True, 2, [(1, "aftercorr", None)])
    # trial has 3 nodes but sim only 2: not one-to-one, so single jobs on single tasks
    assert [s for s in summary if s[0] == "trial"] == [
        ("trial", False, 1, [(1, "afterok", 0)]), ("trial", False, 1, [(1, "afterok", 0)]),
        ("trial", False, 1, [(1, "afterok", 1)])]
    assert summary[-1] == ("agg", False, 1, [(2, "afterok", None)])


def test_arrays_split_at_the_size_limit(tmp_path):
    study = _study(tmp_path, GROUPS)
    jobs = group_jobs(study.nodes, 1, lambda nodes: True)
    sims = [j for j in jobs if j.step == "sim"]
    posts = [j for j in jobs if j.step == "post"]
    assert [len(j.nodes) for j in sims] == [1, 1]
    assert [d.job for p in posts for d in p.depends] == [s.index for s in sims]


def test_submit_script_chains_and_holds(tmp_path):
    study = _study(tmp_path, GROUPS, throttle=2)
    text = study_files(SlurmBackend(), study)["submit.sh"].text
    lines = [line for line in text.splitlines() if line.startswith("submit J")]
    assert lines[0].startswith("submit J0 build --hold -D ")
    assert '"--dependency=afterok:${J0}" --kill-on-invalid-dep=yes --array=0-1%2' in lines[1]
    assert '"--dependency=aftercorr:${J1}"' in lines[2]
    assert '"--dependency=afterok:${J1}_1"' in lines[-2]


SACCT = """\
101|COMPLETED|None|0:0
102_0|FAILED|NonZeroExitCode|1:0
102_[1-3%2]|PENDING|JobArrayTaskLimit|0:0
103|CANCELLED by 0|None|0:15
104|PENDING|DependencyNeverSatisfied|0:0
"""


def test_parse_sacct_parsable_output():
    table = parse_job_table(SACCT)
    assert table["101"] == NativeStatus("COMPLETED", "None", "0:0")
    assert table["102_0"].state == "FAILED"
    assert [table[f"102_{i}"].state for i in (1, 2, 3)] == ["PENDING"] * 3
    assert SlurmBackend().native_state(table["103"]) == "CANCELLED"


def test_state_names_and_ids():
    backend = SlurmBackend()
    assert [backend.native_state(NativeStatus(s, "None", "0:0")) for s in ("COMPLETED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                                              "CANCELLED by 1000", "REQUEUED", "WEIRD")] == \
        ["FINISHED", "TIMEDOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "PENDING", "UNKNOWN"]
    assert expand_array_ids("7_[0-2,5]") == ["7_0", "7_1", "7_2", "7_5"]
    assert expand_array_ids("7_3") == ["7_3"]


def test_launcher_error_names_file_line_and_key_and_validate_catches_it(tmp_path, capsys):
    from maestro_compile.cli import main
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(STEP).replace("[1n, 2p] ./small", "[3n, 2p] ./small"))
    assert main(["validate", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spec}:9: study[0].run.cmd: node 'run_E.False': $(LAUNCHER)[3n, 2p] asks for 3")
    assert "Traceback" not in err
    assert main(["compile", str(spec), "-o", str(tmp_path / "study")]) == 1
    assert not (tmp_path / "study").exists()


def test_unknown_batch_type_points_at_its_line(tmp_path, capsys):
    from maestro_compile.cli import main
    spec = tmp_path / "spec.yaml"
    spec.write_text("description: {name: n, description: d}\nbatch:\n  type: sge\n"
                    "study: [{name: a, description: d, run: {cmd: echo}}]\n")
    assert main(["validate", str(spec)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {spec}:3: batch.type: unknown scheduler 'sge'")


def test_cancelled_reason_names_an_ancestor_failed_by_its_markers_before_accounting_knows():
    """Accounting can record a dependent's cancellation before its parent's failure; the reason
    must follow the parent's state as status shows it (from its markers)."""
    backend = SlurmBackend()
    runtime = Runtime(submitted_at=1.0,
                      jobs={"work": NativeStatus("RUNNING", "None", "0:0"),
                            "report": NativeStatus("CANCELLED", "None", "0:0")},
                      parents={"work": (), "report": ("work",)})
    assert backend.judge("report", NO_MARKERS, True, runtime) == Verdict(State.CANCELLED, "")
    runtime.shown["work"] = State.FAILED
    assert backend.judge("report", NO_MARKERS, True, runtime) == Verdict(State.CANCELLED, "ancestor work failed")


def test_a_directive_value_that_is_not_text_is_written_as_its_text():
    from maestro_compile.backends.scheduled import directive_value
    assert directive_value(["a", 1]) == "['a', 1]"      # not hashable: the cache takes its text
    assert directive_value('say "hi"\nthere\\') == 'say \\"hi\\" there\\\\'
    assert directive_value(7) == "7"
