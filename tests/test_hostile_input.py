"""Values from the spec (descriptions, parameter values, labels) must not break the scripts."""
import re
import subprocess
import sys
import textwrap

import pytest

HOSTILE_SPEC = textwrap.dedent('''\
    description:
      name: "hostile study: quotes ' \\" $HOME and \\\\ backslash"
      description: |
        two lines
        rm -rf / # must stay a comment
    env:
      variables:
        GREETING: "it's \\"quoted\\" $(echo) and $HOME"
    study:
      - name: say
        description: "desc with\\nnewline and `backticks`"
        run:
          cmd: |
            printf '%s\\n' '$(WORD)' > word.txt
            cat > greeting.txt <<'END'
            $(GREETING)
            END
      - name: after
        description: after
        run:
          cmd: cat "$(say.workspace)"/*/word.txt > all.txt
          depends: [say_*]
    global.parameters:
      WORD:
        values: ["two words", "semi;colon", "dollar$sign", "ünïcode"]
        label: "W=%%"
    ''')


def _maestro(*args, cwd):
    return subprocess.run([sys.executable, "-m", "maestro_compile", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def compiled(tmp_path):
    (tmp_path / "hostile.yaml").write_text(HOSTILE_SPEC)
    result = _maestro("compile", "hostile.yaml", "-o", "study dir", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "study dir"


def test_every_generated_script_is_valid_bash(compiled):
    scripts = [compiled / "submit.sh", *compiled.rglob("*.sh")]
    for script in scripts:
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, f"{script}: {check.stderr}"


def test_spec_text_cannot_add_commands_to_comments(compiled):
    for script in compiled.rglob("*.sh"):
        for line in script.read_text().splitlines():
            assert "rm -rf /" not in line or line.lstrip().startswith("#")
            assert not line.startswith("newline and")


def test_hostile_values_run_verbatim(compiled, tmp_path):
    result = _maestro("submit", "study dir", "--jobs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import json
    import time
    deadline = time.time() + 60
    while time.time() < deadline:
        status = json.loads(_maestro("status", "study dir", "--json", cwd=tmp_path).stdout)
        if all(node["state"] in ("FINISHED", "FAILED", "CANCELLED") for node in status["nodes"]):
            break
        time.sleep(0.2)
    assert [node["state"] for node in status["nodes"]] == ["FINISHED"] * 5
    words = sorted((compiled / "after" / "all.txt").read_text().splitlines())
    assert words == sorted(["two words", "semi;colon", "dollar$sign", "ünïcode"])
    greeting = next(compiled.glob("say/*/greeting.txt")).read_text()
    assert greeting == "it's \"quoted\" $(echo) and $HOME\n"
    # workspaces are sanitised exactly like Maestro's make_safe_path
    # (non-ASCII letters are dropped, as Maestro does)
    assert sorted(p.name for p in (compiled / "say").iterdir()) == ["Wdollarsign", "Wncode", "Wsemicolon",
                                                                   "Wtwo_words"]


# --- values that would reach the scheduler's header or the file system ---

def _validate(tmp_path, text, *options):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(text))
    result = subprocess.run([sys.executable, "-m", "maestro_compile", "validate", str(spec), *options],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    return spec, result


INJECTED = '''\
    description: {name: inj, description: d}
    env:
      variables:
        NOTE: "hello\\n%s --partition=evil"
        MEM: 4G
    study:
      - name: work
        description: d
        run:
          cmd: |
            %s --mem=$(MEM)
            # note: $(NOTE)
            echo work
    '''


@pytest.mark.parametrize("backend,prefix", [("slurm", "#SBATCH"), ("lsf", "#BSUB"), ("flux", "# flux:")])
def test_a_value_cannot_add_a_directive_line(tmp_path, backend, prefix):
    spec, result = _validate(tmp_path, INJECTED % (prefix, prefix), "--backend", backend)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{spec}:10: study[0].run.cmd: node 'work': a substituted value adds a '{prefix}' line" in result.stderr
    assert "Traceback" not in result.stderr
    compiled = subprocess.run([sys.executable, "-m", "maestro_compile", "compile", str(spec), "--backend", backend,
                               "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 1 and not (tmp_path / "out").exists()


def test_a_directive_written_in_the_spec_may_use_a_token(tmp_path):
    spec, result = _validate(tmp_path, (INJECTED % ("#SBATCH", "#SBATCH")).replace("hello\\n#SBATCH", "hello"),
                             "--backend", "slurm")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "maestro_compile", "compile", str(spec), "--backend", "slurm", "-o",
                    str(out)], check=True, capture_output=True, timeout=120)
    assert "#SBATCH --mem=4G" in (out / "work" / "work.slurm.sh").read_text()


def test_a_parameter_value_too_long_for_a_file_name_is_a_validate_error_with_a_short_message(tmp_path):
    big = "x" * 100_000
    spec, result = _validate(tmp_path, f'''\
        description: {{name: big, description: d}}
        study:
          - name: work
            description: d
            run: {{cmd: echo $(P)}}
        global.parameters:
          P: {{values: ["{big}", "small"], label: "P.%%"}}
        ''')
    assert result.returncode == 1
    assert re.search(r"is 1000\d\d bytes, more than the 255 a file system allows", result.stderr)
    assert "--hashws" in result.stderr and len(result.stderr) < 2000
    assert _validate(tmp_path, spec.read_text(), "--hashws")[1].returncode == 0   # the way out works


def test_a_step_name_with_a_newline_is_one_error_about_the_step(tmp_path):
    spec, result = _validate(tmp_path, '''\
        description: {name: nl, description: d}
        study:
          - name: "wo\\nrk"
            description: d
            run: {cmd: echo $(P)}
        global.parameters:
          P: {values: [1, 2, 3], label: "P.%%"}
        ''')
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {spec}:3: study[0].name: 'wo\\nrk' cannot be used")
