"""The command line: exit codes, error lines, no tracebacks, atomic output, study.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maestro_compile.cli import main

# the example of examples/hello_world, exactly as users get it
HELLO_BYE = (Path(__file__).resolve().parents[1] / "examples" / "hello_world" /
             "hello_bye_parameterized.yaml").read_text()

BAD = """
description:
    name: bad
    description: two problems
study:
    - name: s
      description: d
      run:
          cmd: ""
          nodes: two
"""

UNKNOWN_TOKEN = """
description:
    name: tokens
    description: a typo in a token
study:
    - name: hello
      description: d
      run:
          cmd: echo $(NOPE) $(date)
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def tree(root: Path):
    """Every path under root (hidden ones included), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "maestro_compile", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=120)


def assert_error_lines(stderr: str, every_line: bool = True):
    """stderr holds "error: " lines (a tool's multi-line output may continue the first one)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "expected an error message on stderr"
    assert lines[0].startswith("error: "), stderr
    if every_line:
        assert all(line.startswith("error: ") for line in lines), stderr
    assert "Traceback" not in stderr
    assert "internal error" not in stderr


# ------------------------------------------------------------------------------------------
# exit codes via main()
# ------------------------------------------------------------------------------------------

def test_compile_ok(tmp_path, capsys):
    spec = write(tmp_path / "spec.yaml", HELLO_BYE)
    out = tmp_path / "study"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "8 node(s)" in captured.out
    assert "Traceback" not in captured.err
    script = out / "hello_world" / "GREETING.Hello.NAME.Pam" / "hello_world_GREETING.Hello.NAME.Pam.sh"
    assert script.is_file() and os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert 'echo "Hello, Pam!" > Hello_Pam.txt\n' in text
    assert (out / "spec.yaml").read_text() == (tmp_path / "spec.yaml").read_text()  # spec copied


def test_spec_error_exit_1_with_every_problem(tmp_path, capsys):
    spec = write(tmp_path / "bad.yaml", BAD)
    out = tmp_path / "study"
    assert main(["compile", str(spec), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert_error_lines(captured.err)
    assert f"error: {spec}:8: study[0].run.cmd: " in captured.err
    assert f"error: {spec}:9: study[0].run.nodes: " in captured.err
    assert not out.exists()
    assert tree(tmp_path) == ["bad.yaml"]


def test_validate_ok_writes_nothing(tmp_path, capsys, monkeypatch):
    spec = write(tmp_path / "spec.yaml", HELLO_BYE)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    assert main(["validate", str(spec)]) == 0
    captured = capsys.readouterr()
    assert "valid" in captured.out and "8 node(s)" in captured.out
    assert tree(tmp_path) == before   # not even OUTPUT_PATH's sample_output/


def test_validate_error(tmp_path, capsys):
    spec = write(tmp_path / "bad.yaml", BAD)
    assert main(["validate", str(spec)]) == 1
    assert_error_lines(capsys.readouterr().err)
    assert tree(tmp_path) == ["bad.yaml"]


@pytest.mark.parametrize("argv", [
    ["compile"],                       # missing spec
    ["bogus"],                         # unknown command
    ["compile", "x.yaml", "--nope"],   # unknown option
    ["validate", "x.yaml", "-o", "d"],  # validate has no -o
])
def test_usage_errors_exit_64(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 64   # EX_USAGE: 2 is `run --wait`'s FAILURE
    assert "usage:" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage:" in capsys.readouterr().out


def test_pargs_without_pgen(tmp_path, capsys):
    spec = write(tmp_path / "spec.yaml", HELLO_BYE)
    assert main(["validate", str(spec), "--pargs", "K:V"]) == 1
    err = capsys.readouterr().err
    assert_error_lines(err)
    assert "--pgen" in err


# ------------------------------------------------------------------------------------------
# the output directory
# ------------------------------------------------------------------------------------------

def test_existing_output_directory_is_refused_and_untouched(tmp_path, capsys):
    spec = write(tmp_path / "spec.yaml", HELLO_BYE)
    out = tmp_path / "study"
    out.mkdir()
    (out / "notes.txt").write_text("my precious data\n")
    assert main(["compile", str(spec), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert_error_lines(err)
    assert str(out) in err and "exists" in err
    assert tree(out) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "my precious data\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml", "study"]


def test_existing_empty_output_directory_is_refused(tmp_path, capsys):
    spec = write(tmp_path / "spec.yaml", HELLO_BYE)
    out = tmp_path / "study"
    out.mkdir()
    assert main(["compile", str(spec), "-o", str(out)]) == 1
    assert list(out.iterdir()) == []


def test_failing_compile_leaves_nothing_behind(tmp_path, capsys):
    # the failure happens while the study directory is being staged (git clone fails)
    spec = write(tmp_path / "spec.yaml", f"""
        description:
            name: gitfail
            description: a git dependency that cannot be cloned
        env:
            dependencies:
                git:
                    - name: REPO
                      path: $(OUTPUT_PATH)/deps
                      url: file://{tmp_path / 'no-such-repository'}
        study:
            - name: s
              description: d
              run:
                  cmd: ls $(REPO)
        """)
    out = tmp_path / "study"
    env_before = dict(os.environ)
    rc = main(["compile", str(spec), "-o", str(out)])
    assert dict(os.environ) == env_before
    assert rc == 1
    err = capsys.readouterr().err
    assert_error_lines(err, every_line=False)
    assert "REPO" in err and f"{spec}:" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]   # no hidden .partial dir


def test_default_directory_is_under_output_path_next_to_the_spec(tmp_path):
    spec = write(tmp_path / "project" / "spec.yaml", HELLO_BYE)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_cli("compile", spec, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert list(cwd.iterdir()) == []
    parent = tmp_path / "project" / "sample_output" / "hello_world"
    (study,) = list(parent.iterdir())
    assert study.name.startswith("hello_bye_world_")
    assert (study / "study.json").is_file()


# ------------------------------------------------------------------------------------------
# --strict
# ------------------------------------------------------------------------------------------

def test_unknown_token_is_a_warning(tmp_path, capsys):
    spec = write(tmp_path / "spec.yaml", UNKNOWN_TOKEN)
    out = tmp_path / "study"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1
    assert "'hello'" in warnings[0] and "$(NOPE)" in warnings[0] and f"{spec}:8" in warnings[0]
    assert "date" not in err
    script = out / "hello" / "hello.sh"
    assert "echo $(NOPE) $(date)" in script.read_text()


def test_strict_turns_the_warning_into_an_error(tmp_path, capsys):
    spec = write(tmp_path / "spec.yaml", UNKNOWN_TOKEN)
    out = tmp_path / "study"
    assert main(["compile", str(spec), "-o", str(out), "--strict"]) == 1
    err = capsys.readouterr().err
    assert_error_lines(err)
    assert "'hello'" in err and "$(NOPE)" in err
    assert not out.exists()
    assert main(["validate", str(spec), "--strict"]) == 1


# ------------------------------------------------------------------------------------------
# study.json
# ------------------------------------------------------------------------------------------

def test_study_json(tmp_path, capsys):
    spec = write(tmp_path / "spec.yaml", HELLO_BYE)
    out = tmp_path / "study"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    manifest = json.loads((out / "study.json").read_text())
    assert manifest["format"] == 1
    assert manifest["name"] == "hello_bye_world"
    assert manifest["backend"] == "local"
    combos = ["GREETING.Hello.NAME.Pam", "GREETING.Ciao.NAME.Jim", "GREETING.Hey.NAME.Michael",
              "GREETING.Hi.NAME.Dwight"]
    assert list(manifest["nodes"]) == [f"hello_world_{c}" for c in combos] + [f"bye_world_{c}" for c in combos]
    for node in manifest["nodes"].values():
        assert set(node) == {"step", "workspace", "params", "depends", "script", "log"}
        assert (out / node["script"]).is_file()
    bye = manifest["nodes"]["bye_world_GREETING.Ciao.NAME.Jim"]
    assert bye["step"] == "bye_world"
    assert bye["workspace"] == "bye_world/GREETING.Ciao.NAME.Jim"
    assert bye["params"] == {"NAME": "Jim", "GREETING": "Ciao"}
    assert bye["depends"] == ["hello_world_GREETING.Ciao.NAME.Jim"]
    assert bye["script"] == "bye_world/GREETING.Ciao.NAME.Jim/bye_world_GREETING.Ciao.NAME.Jim.sh"
    assert manifest["nodes"]["hello_world_GREETING.Hi.NAME.Dwight"]["depends"] == []


def test_pgen_file_is_copied_into_the_study(tmp_path, capsys):
    spec = write(tmp_path / "spec.yaml", """
        description: {name: p, description: d}
        study:
            - name: s
              description: d
              run: {cmd: echo $(X)}
        """)
    pgen = write(tmp_path / "gen.py", """
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            p = ParameterGenerator()
            p.add_parameter("X", kwargs["VALUES"].split(","))
            return p
        """)
    out = tmp_path / "study"
    assert main(["compile", str(spec), "-o", str(out), "--pgen", str(pgen), "--pargs", "VALUES:a,b"]) == 0
    assert (out / "gen.py").read_text() == pgen.read_text()
    assert sorted(json.loads((out / "study.json").read_text())["nodes"]) == ["s_X.a", "s_X.b"]


# ------------------------------------------------------------------------------------------
# through a subprocess: no traceback, whatever the input
# ------------------------------------------------------------------------------------------

def test_subprocess_ok(tmp_path):
    spec = write(tmp_path / "spec.yaml", HELLO_BYE)
    result = run_cli("compile", spec, "-o", tmp_path / "study")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "study" / "study.json").is_file()


def test_subprocess_spec_error(tmp_path):
    spec = write(tmp_path / "bad.yaml", BAD)
    result = run_cli("compile", spec, "-o", tmp_path / "study")
    assert result.returncode == 1
    assert_error_lines(result.stderr)
    assert len(result.stderr.strip().splitlines()) == 2
    assert not (tmp_path / "study").exists()


def test_subprocess_usage_error(tmp_path):
    result = run_cli("compile")
    assert result.returncode == 64
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name, content", [
    ("empty.yaml", b""),
    ("binary.yaml", b"\xff\xfe\x00\x01garbage"),
    ("list.yaml", b"- a\n- b\n"),
    ("syntax.yaml", b"description: {name: a\nstudy: [\n"),
    ("tab.yaml", b"description:\n\tname: a\n"),
    ("types.yaml", b"description: 5\nstudy: 5\nenv: 5\n"),
    ("deep.yaml", b"description: {name: a, description: b}\nstudy:\n  - name: s\n    description: d\n"
                  b"    run: {cmd: [1, 2], nodes: {a: 1}, depends: [{x: 1}]}\n"),
    ("keys.yaml", b"? [a]\n: 1\n"),
    ("anchor.yaml", b"description: &d {name: a, description: b}\nstudy: *d\n"),
])
def test_subprocess_bad_input_never_shows_a_traceback(tmp_path, name, content):
    spec = tmp_path / name
    spec.write_bytes(content)
    result = run_cli("compile", spec, "-o", tmp_path / "study")
    assert result.returncode == 1, result.stderr
    assert_error_lines(result.stderr)
    assert str(spec) in result.stderr
    assert not (tmp_path / "study").exists()


def test_subprocess_missing_spec_and_directory(tmp_path):
    for target in (tmp_path / "missing.yaml", tmp_path):
        result = run_cli("validate", target)
        assert result.returncode == 1
        assert_error_lines(result.stderr)


def test_subprocess_broken_pgen(tmp_path):
    spec = write(tmp_path / "spec.yaml", """
        description: {name: p, description: d}
        study:
            - name: s
              description: d
              run: {cmd: echo $(X)}
        """)
    pgen = write(tmp_path / "gen.py", """
        def get_custom_generator(env, **kwargs):
            return 1 / 0
        """)
    result = run_cli("compile", spec, "-o", tmp_path / "study", "--pgen", pgen)
    assert result.returncode == 1
    assert_error_lines(result.stderr)
    assert f"{pgen}:2:" in result.stderr and "ZeroDivisionError" in result.stderr
    assert not (tmp_path / "study").exists()


def test_subprocess_pargs_without_pgen(tmp_path):
    spec = write(tmp_path / "spec.yaml", HELLO_BYE)
    result = run_cli("validate", spec, "--pargs", "A:B")
    assert result.returncode == 1
    assert_error_lines(result.stderr)


def test_subprocess_cartesian_with_unequal_lengths(tmp_path):
    spec = write(tmp_path / "spec.yaml", """
        description: {name: c, description: d}
        global.combine: cartesian
        study:
            - name: s
              description: d
              run: {cmd: echo $(X) $(Y)}
        global.parameters:
            X: {values: [1, 2], label: X.%%}
            Y: {values: [a, b, c], label: Y.%%}
        """)
    result = run_cli("validate", spec)
    assert result.returncode == 0, result.stderr
    assert "6 node(s)" in result.stdout
