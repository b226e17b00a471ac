"""Values from the spec (descriptions, parameter values, labels) must not break the scripts."""
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
