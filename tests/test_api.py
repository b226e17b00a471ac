"""The Python API (docs/api.md): validate, compile (a file, YAML text, a dict), open, and a Study's
submit, status, summary, wait, cancel and resubmit, run for real on the local backend.

Steps that must stay running wait on a gate file (as in test_e2e_local.py) that the test opens."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import maestro_compile as mc
from maestro_compile.errors import Problem

GATE_SECONDS = 15


def spec_text(body: str, name: str = "api") -> str:
    return f"description:\n  name: {name}\n  description: a study for the API tests\n" + textwrap.dedent(body)


SWEEP = spec_text("""\
    study:
      - name: square
        description: one per X
        run:
          cmd: echo $(( $(X) * $(X) )) > square.txt
      - name: total
        description: the funnel
        run:
          cmd: cat $(square.workspace)/*/square.txt | paste -sd+ | bc > total.txt
          depends: [square_*]
    global.parameters:
      X:
        values: [1, 2, 3]
        label: X.%%
    """)

FAILING = spec_text("""\
    study:
      - name: work
        description: fails for X above 2 until fixed.txt exists beside the spec
        run:
          cmd: test $(X) -le 2 || test -e $(SPECROOT)/fixed.txt
      - name: post
        description: after work
        run:
          cmd: echo post > post.txt
          depends: [work]
    global.parameters:
      X:
        values: [1, 2, 3, 4]
        label: X.%%
    """)


def gated(gate: Path) -> str:
    return (f"for _ in $(seq {GATE_SECONDS * 20}); do [ -e {gate} ] && break; sleep 0.05; done; "
            f"[ -e {gate} ] || exit 1")


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The current directory is tmp_path; every study still running here at the end is cancelled."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    (tmp_path / "gate").touch()
    for runner in tmp_path.glob("*/.maestro/runner.pid"):
        study = mc.open(runner.parents[1])
        if not study.finished():
            study.cancel()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- validate

def test_validate_a_valid_file_returns_no_problem_and_what_it_compiles_to(work):
    problems = mc.validate(write(work / "sweep.yaml", SWEEP))
    assert problems == [] and not problems
    assert (problems.backend, problems.step_count, problems.node_count) == ("local", 2, 4)
    assert problems.warnings == []


def test_validate_reports_file_line_key_and_message(work):
    path = write(work / "bad.yaml", spec_text("""\
        study:
          - name: one
            description: no cmd
            run:
              walltime: "01:00:00"
          - name: two
            description: depends on nothing that exists
            run:
              cmd: echo two
              depends: [nothing]
        """))
    problems = mc.validate(path)
    assert len(problems) == 1
    problem = problems[0]
    assert isinstance(problem, Problem) and isinstance(problem, str)
    assert (problem.file, problem.line, problem.key) == (str(path), 7, "study[0].run")
    assert problem.message == "missing required key 'cmd'"
    assert str(problem) == f"{path}:7: study[0].run: missing required key 'cmd'"


def test_validate_yaml_text_gives_lines_within_the_text(work):
    text = spec_text("""\
        study:
          - name: one
            description: a step
            run:
              cmd: echo one
              nodes: many
        """)
    [problem] = mc.validate(text)
    assert (problem.file, problem.line, problem.key) == ("<text>", 9, "study[0].run.nodes")
    assert text.splitlines()[problem.line - 1].strip() == "nodes: many"
    assert "expected an integer >= 1" in problem.message


def test_validate_a_dict_gives_key_paths(work):
    spec = yaml.safe_load(SWEEP)
    spec["study"][1]["run"]["depends"] = ["sqaure_*"]
    del spec["description"]["description"]
    problems = mc.validate(spec)
    keys = {problem.key for problem in problems}
    assert keys == {"description"}, problems    # the name check waits for the schema's
    assert all(problem.file == "<dict>" and problem.line is None for problem in problems)
    spec["description"]["description"] = "back"
    [problem] = mc.validate(spec)
    assert problem.key == "study[1].run.depends[0]" and "did you mean 'square'" in problem.message


def test_validate_refuses_what_yaml_cannot_hold_with_its_key_path(work):
    spec = yaml.safe_load(SWEEP)
    spec["global.parameters"]["X"]["values"] = [1, object()]
    [problem] = mc.validate(spec)
    assert problem.key == "global.parameters.X.values[1]" and "plain data" in problem.message


def test_validate_missing_file_and_pgen_problems(work):
    [missing] = mc.validate("nowhere.yaml")
    assert (missing.file, missing.line, missing.message) == ("nowhere.yaml", None, "no such file")
    write(work / "sweep.yaml", SWEEP)
    [pgen] = mc.validate("sweep.yaml", pgen="no_such_gen.py")
    assert pgen.file is None and pgen.startswith("--pgen no_such_gen.py")


def test_validate_strict_turns_unknown_tokens_into_problems(work):
    text = SWEEP.replace("square.txt\n", "square.txt; echo $(NOPE)\n", 1)
    relaxed = mc.validate(text)
    assert relaxed == [] and any("$(NOPE)" in warning for warning in relaxed.warnings)
    [strict] = mc.validate(text, strict=True)
    assert (strict.file, strict.line) == ("<text>", 8) and "unknown token $(NOPE) in run.cmd" in strict.message
    assert text.splitlines()[strict.line - 1].strip().startswith("cmd:")


def test_bad_option_values_are_usage_errors(work):
    for options in ({"throttle": -1}, {"retries": "2"}, {"workspace_layout": "tiled"}):
        with pytest.raises(mc.UsageError):
            mc.validate(SWEEP, **options)
    with pytest.raises(mc.UsageError, match="expected a file name, YAML text or a dict"):
        mc.compile(42)
    assert issubclass(mc.UsageError, mc.MaestroCompileError) and mc.UsageError.exit_code == 64


# --------------------------------------------------------------------------- compile

def test_compile_a_file_with_the_cli_options(work):
    write(work / "gen.py", textwrap.dedent("""\
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            count = int(kwargs.get("N", "2"))
            generator = ParameterGenerator()
            generator.add_parameter("X", list(range(1, count + 1)), "X.%%")
            return generator
        """))
    write(work / "sweep.yaml", SWEEP.split("global.parameters")[0])
    study = mc.compile("sweep.yaml", out_dir="run1", backend="slurm", pgen="gen.py", pargs={"N": "10"},
                       throttle=5, max_array_size=1000)
    assert isinstance(study, mc.Study)
    assert study.path == work / "run1" and study.path.is_absolute()
    assert (study.backend, study.steps, study.node_count, study.name) == ("slurm", ("square", "total"), 11, "api")
    assert "--array=0-9%5" in (study.path / "submit.sh").read_text()
    assert (study.path / "sweep.yaml").read_text() == (work / "sweep.yaml").read_text()
    assert (study.path / "gen.py").is_file()
    reopened = mc.open("run1")
    assert (reopened.path, reopened.backend, reopened.steps, reopened.node_count) == \
        (study.path, "slurm", ("square", "total"), 11)


def test_compile_a_dict_resolves_relative_paths_against_the_current_directory(work):
    (work / "data").mkdir()
    write(work / "data" / "input.txt", "from the current directory\n")
    spec = yaml.safe_load(spec_text("""\
        env:
          dependencies:
            paths:
              - name: INPUT
                path: data/input.txt
        study:
          - name: copy
            description: reads a path dependency given relative
            run:
              cmd: cp $(INPUT) copied.txt
        """))
    study = mc.compile(spec, out_dir=Path("run2"))
    assert (study.path / "spec.yaml").is_file()
    assert json.loads((study.path / "study.json").read_text())["spec"] == "spec.yaml"
    # the copy is the spec: compiling it again gives the same nodes
    assert yaml.safe_load((study.path / "spec.yaml").read_text()) == spec
    script = (study.path / "copy" / "copy.sh").read_text()
    assert f"cp {work / 'data' / 'input.txt'} copied.txt" in script
    study.submit()
    summary = study.wait(poll=0.1)
    assert summary.succeeded
    assert (study.path / "copy" / "copied.txt").read_text() == "from the current directory\n"


def test_compile_yaml_text_and_its_errors(work):
    study = mc.compile(SWEEP, out_dir="run3")
    assert (study.path / "spec.yaml").read_text() == SWEEP
    broken = SWEEP.replace("label: X.%%", "label: [X.1, X.2]")
    with pytest.raises(mc.SpecError) as caught:
        mc.compile(broken, out_dir="run4")
    [problem] = caught.value.problems
    assert (problem.file, problem.key) == ("<text>", "global.parameters.X.label")
    assert broken.splitlines()[problem.line - 1].strip().startswith("label:")
    assert not (work / "run4").exists()
    assert pickle.loads(pickle.dumps(caught.value)).problems[0].key == "global.parameters.X.label"


def test_compile_never_overwrites(work):
    mc.compile(SWEEP, out_dir="run5")
    with pytest.raises(mc.OutputExistsError):
        mc.compile(SWEEP, out_dir="run5")


def test_open_refuses_what_is_not_a_study_directory(work):
    write(work / "sweep.yaml", SWEEP)
    with pytest.raises(mc.StudyDirError, match=r"study specification, not a study directory.*maestro run"):
        mc.open("sweep.yaml")
    with pytest.raises(mc.StudyDirError, match="no such directory"):
        mc.open("nowhere")


# --------------------------------------------------------------------------- running

def test_submit_wait_and_read_every_node(work):
    study = mc.compile(SWEEP, out_dir="sweep")
    assert [node.state for node in study.status()] == [mc.State.INITIALIZED] * 4
    with pytest.raises(mc.StudyDirError, match="not been submitted"):
        study.wait(poll=0.1)
    message = study.submit(jobs=2)
    assert "started 4 step(s)" in message
    summary = study.wait(poll=0.1)
    assert isinstance(summary, mc.Summary) and summary.finished and summary.succeeded
    assert summary.counts == {mc.State.FINISHED: 4} and summary.total == 4
    assert summary.steps == {"square": {mc.State.FINISHED: 3}, "total": {mc.State.FINISHED: 1}}
    assert str(summary) == "4 node(s): 4 FINISHED"
    nodes = study.status()
    assert [node.name for node in nodes] == ["square_X.1", "square_X.2", "square_X.3", "total"]
    for node in nodes:
        assert isinstance(node, mc.NodeStatus)
        assert node.state is mc.State.FINISHED and node.state == "FINISHED" and node.reason == ""
        assert node.workspace.is_absolute() and node.workspace.is_dir()
        assert node.start <= node.end and node.restarts == 0 and node.exit_code == 0
        assert node.job_id.isdigit()
    squares = {node.params["X"]: (node.workspace / "square.txt").read_text() for node in nodes[:3]}
    assert squares == {"1": "1\n", "2": "4\n", "3": "9\n"}
    assert (nodes[3].workspace / "total.txt").read_text() == "14\n"
    with pytest.raises(AttributeError):
        nodes[0].state = mc.State.FAILED      # records are immutable
    assert study.finished()


def test_failures_filters_and_resubmit(work):
    write(work / "failing.yaml", FAILING)
    study = mc.compile("failing.yaml", out_dir="failing")
    study.submit()
    summary = study.wait(poll=0.1)
    assert not summary.succeeded and not summary.cancelled
    assert summary.steps == {"work": {mc.State.FINISHED: 2, mc.State.FAILED: 2},
                             "post": {mc.State.FINISHED: 2, mc.State.CANCELLED: 2}}
    assert [node.name for node in summary.failed["work"]] == ["work_X.3", "work_X.4"]
    assert [node.reason for node in summary.failed["post"]] == ["ancestor work_X.3 failed", "ancestor work_X.4 failed"]
    failed = study.status(state="failed")
    assert [(node.name, node.reason) for node in failed] == [("work_X.3", "exit code 1"), ("work_X.4", "exit code 1")]
    assert [node.name for node in study.status(step="post", state=["Cancelled", mc.State.FINISHED])] == \
        ["post_X.1", "post_X.2", "post_X.3", "post_X.4"]
    assert study.summary(step="work").counts == {mc.State.FINISHED: 2, mc.State.FAILED: 2}
    with pytest.raises(mc.UsageError, match="no step 'wrok' in this study; its steps: work, post"):
        study.status(step="wrok")
    with pytest.raises(mc.UsageError, match="unknown state 'broken'"):
        study.status(state="broken")
    assert "work_X.3" in study.resubmit(dry=True)
    write(work / "fixed.txt", "")
    study.resubmit(only=["work"])
    summary = study.wait(poll=0.1)
    assert summary.succeeded
    again = {node.name: node for node in study.status()}
    assert again["work_X.3"].restarts == 1 and again["work_X.1"].restarts == 0
    assert (again["post_X.4"].workspace / "post.txt").read_text() == "post\n"


def test_cancel_and_a_wait_that_times_out(work):
    study = mc.compile(spec_text(f"""\
        study:
          - name: slow
            description: waits for the gate
            run:
              cmd: {gated(work / "gate")}
          - name: after
            description: never starts
            run:
              cmd: echo after
              depends: [slow]
        """), out_dir="gated")
    study.submit()
    with pytest.raises(mc.WaitTimeoutError, match="still running after 0.3 s"):
        study.wait(poll=0.1, timeout=0.3)
    assert not study.finished()
    assert "cancelled the study" in study.cancel()
    summary = study.wait(poll=0.1)
    assert summary.cancelled and not summary.succeeded
    assert summary.counts == {mc.State.CANCELLED: 2}


# --------------------------------------------------------------------------- the package

def test_import_is_cheap_and_the_names_are_the_api():
    code = ("import sys, maestro_compile as mc; heavy = [m for m in ('yaml', 'jinja2', 'voluptuous', "
            "'maestro_compile.pipeline') if m in sys.modules]; print(heavy); "
            "import maestro_compile.pipeline; print(callable(mc.compile), mc.compile.__module__, mc.open.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(mc.__file__).resolve().parents[1])))
    assert result.stdout.split("\n")[:2] == ["[]", "True maestro_compile.api maestro_compile.api"]
    for name in ("validate", "compile", "open", "Study", "NodeStatus", "Summary", "State", "MaestroCompileError",
                 "SpecError", "UsageError", "WaitTimeoutError"):
        assert name in mc.__all__ and getattr(mc, name) is not None
