"""Validation errors: each names the file, the line, the key path and what was expected/found.

Line numbers are computed from the spec text itself (``line_of``), never copied from output.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import List, Tuple

import pytest

from maestro_compile.pipeline import Options, build_study
from maestro_compile.errors import SpecError


def spec_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec_text(text), encoding="utf-8")
    return path


def line_of(text: str, marker: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``marker``."""
    hits = [i for i, line in enumerate(spec_text(text).splitlines(), 1) if marker in line]
    assert len(hits) >= occurrence, f"marker {marker!r} not found {occurrence} time(s)"
    return hits[occurrence - 1]


def errors(tmp_path: Path, text: str, **options) -> Tuple[Path, List[str]]:
    spec = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=spec, out_dir=tmp_path / "study", **options))
    return spec, info.value.problems


def one_error(problems: List[str], *needles: str) -> str:
    """The single problem containing every needle."""
    found = [p for p in problems if all(n in p for n in needles)]
    assert len(found) == 1, f"expected one problem with {needles}, got:\n" + "\n".join(problems)
    return found[0]


OK_STUDY = """
study:
    - name: s
      description: d
      run:
          cmd: echo hi
"""


# ------------------------------------------------------------------------------------------
# unknown keys, with did-you-mean
# ------------------------------------------------------------------------------------------

PATH_TYPO = """
description:
    name: typo
    description: singular path (maestrowf issue #230)
env:
    dependencies:
        path:
            - name: DATA
              path: data
study:
    - name: s
      description: d
      run:
          cmd: ls $(DATA)
"""


def test_singular_path_dependency_is_an_error_with_suggestion(tmp_path):
    spec, problems = errors(tmp_path, PATH_TYPO)
    line = line_of(PATH_TYPO, "path:")
    message = one_error(problems, "env.dependencies.path")
    assert message.startswith(f"{spec}:{line}: env.dependencies.path: ")
    assert "unknown key 'path'" in message
    assert "did you mean 'paths'?" in message


def test_unknown_step_key_with_suggestion(tmp_path):
    text = """
        description: {name: typo, description: d}
        study:
            - name: s
              descripton: d
              run:
                  cmd: echo
        """
    spec, problems = errors(tmp_path, text)
    typo = one_error(problems, "descripton")
    assert typo.startswith(f"{spec}:{line_of(text, 'descripton')}: study[0].descripton: ")
    assert "unknown key 'descripton'" in typo and "did you mean 'description'?" in typo
    missing = one_error(problems, "missing")
    assert missing.startswith(f"{spec}:{line_of(text, '- name: s')}: study[0]")
    assert "'description'" in missing


def test_unknown_run_key(tmp_path):
    text = """
        description: {name: k, description: d}
        study:
            - name: s
              description: d
              run:
                  cmd: echo
                  shell: /bin/zsh
                  dependss: [a]
        """
    spec, problems = errors(tmp_path, text)
    shell = one_error(problems, "'shell'")
    assert shell.startswith(f"{spec}:{line_of(text, 'shell:')}: study[0].run.shell: unknown key 'shell'")
    depends = one_error(problems, "'dependss'")
    assert depends.startswith(f"{spec}:{line_of(text, 'dependss:')}: study[0].run.dependss: ")
    assert "did you mean 'depends'?" in depends


def test_unknown_key_in_exclusive_mapping(tmp_path):
    text = """
        description: {name: k, description: d}
        study:
            - name: s
              description: d
              run:
                  cmd: echo
                  exclusive:
                      allocation: true
                      launch: true
        """
    spec, problems = errors(tmp_path, text)
    message = one_error(problems, "launch")
    assert message.startswith(f"{spec}:{line_of(text, 'launch: true')}: study[0].run.exclusive.launch: ")
    assert "did you mean 'launcher'?" in message


def test_unknown_env_key_and_parameter_key(tmp_path):
    text = """
        description: {name: k, description: d}
        env:
            variable:
                A: 1
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(P)
        global.parameters:
            P:
                values: [1]
                label: P.%%
                name: pp
        """
    spec, problems = errors(tmp_path, text)
    env = one_error(problems, "'variable'")
    assert env.startswith(f"{spec}:{line_of(text, 'variable:')}: env.variable: unknown key 'variable'")
    assert "did you mean 'variables'?" in env
    param = one_error(problems, "'name'")
    assert param.startswith(f"{spec}:{line_of(text, 'name: pp')}: global.parameters.P.name: unknown key")


def test_unknown_top_level_key_is_only_a_warning(tmp_path):
    # Maestro ignores unknown top-level keys; we keep them legal but say so
    spec = write_spec(tmp_path, "description: {name: k, description: d}\nstudyy: 1\n" + spec_text(OK_STUDY))
    study = build_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    assert [n.name for n in study.nodes] == ["s"]
    assert any(w.startswith(f"{spec}:2:") and "studyy" in w and "did you mean 'study'?" in w
               for w in study.warnings)


# ------------------------------------------------------------------------------------------
# wrong types and empty strings
# ------------------------------------------------------------------------------------------

TYPES = """
description:
    name: types
    description: wrong types
env:
    variables:
        FLAG: true
        LIST: [1, 2]
study:
    - name: s
      description: d
      run:
          cmd: 5
          nodes: two
          procs: 0
          gpus: "2"
          walltime: []
          exclusive: maybe
          nested: "yes"
          priority: urgent
          depends: a
global.parameters:
    P:
        values: 3
        label: [a, b]
"""


@pytest.mark.parametrize("marker, path, found", [
    ("FLAG: true", "env.variables.FLAG", "true"),
    ("LIST:", "env.variables.LIST", "list"),
    ("cmd: 5", "study[0].run.cmd", "5"),
    ("nodes: two", "study[0].run.nodes", "'two'"),
    ("procs: 0", "study[0].run.procs", "0"),
    ('gpus: "2"', "study[0].run.gpus", "'2'"),
    ("walltime: []", "study[0].run.walltime", "list"),
    ("exclusive: maybe", "study[0].run.exclusive", "'maybe'"),
    ('nested: "yes"', "study[0].run.nested", "'yes'"),
    ("priority: urgent", "study[0].run.priority", "'urgent'"),
    ("depends: a", "study[0].run.depends", "'a'"),
    ("values: 3", "global.parameters.P.values", "3"),
    ("label: [a, b]", "global.parameters.P.label", "list"),
])
def test_wrong_types(tmp_path, marker, path, found):
    spec, problems = errors(tmp_path, TYPES)
    message = one_error(problems, f" {path}: ")
    assert message.startswith(f"{spec}:{line_of(TYPES, marker)}: {path}: expected ")
    assert f"found {found}" in message or (found in ("list",) and "found a list" in message)


def test_all_schema_problems_are_reported_at_once_in_line_order(tmp_path):
    spec, problems = errors(tmp_path, TYPES)
    assert len(problems) == 13
    lines = [int(p[len(str(spec)) + 1:].split(":", 1)[0]) for p in problems]
    assert lines == sorted(lines)


def test_expected_values_are_explained(tmp_path):
    spec, problems = errors(tmp_path, TYPES)
    assert "an integer >= 1 or a single $(TOKEN)" in one_error(problems, "run.nodes")
    assert "a non-empty string" in one_error(problems, "run.cmd")


def test_top_level_blocks_of_the_wrong_type(tmp_path):
    text = """
        description: 5
        env: [a]
        batch: text
        study: {s: 1}
        global.parameters: 7
        """
    spec, problems = errors(tmp_path, text)
    assert len(problems) == 5
    for marker, key in [("description: 5", "description"), ("env: [a]", "env"), ("batch: text", "batch"),
                        ("study: {s: 1}", "study"), ("global.parameters: 7", "global.parameters")]:
        message = one_error(problems, f" {key}: expected ")
        assert message.startswith(f"{spec}:{line_of(text, marker)}: {key}: expected ")


@pytest.mark.parametrize("marker, path", [
    ('name: ""', "description.name"),
    ('cmd: ""', "study[0].run.cmd"),
    ('V: ""', "env.variables.V"),
    ('label: ""', "global.parameters.P.label"),
    ('restart: "  "', "study[0].run.restart"),
])
def test_empty_strings(tmp_path, marker, path):
    text = """
        description:
            name: ""
            description: d
        env:
            variables:
                V: ""
        study:
            - name: s
              description: d
              run:
                  cmd: ""
                  restart: "  "
        global.parameters:
            P:
                values: [1]
                label: ""
        """
    spec, problems = errors(tmp_path, text)
    assert len(problems) == 5
    message = one_error(problems, f" {path}: ")
    assert message.startswith(f"{spec}:{line_of(text, marker)}: {path}: expected a non-empty string")


def test_missing_required_keys(tmp_path):
    text = """
        description:
            name: n
        study:
            - name: s
              run:
                  restart: echo
        """
    spec, problems = errors(tmp_path, text)
    desc = one_error(problems, "'description'", "description:")
    assert desc.startswith(f"{spec}:{line_of(text, 'description:')}: description: missing required key")
    step = one_error(problems, "study[0]", "'description'")
    assert step.startswith(f"{spec}:{line_of(text, '- name: s')}:")
    cmd = one_error(problems, "'cmd'")
    assert cmd.startswith(f"{spec}:{line_of(text, 'run:')}: study[0].run: missing required key 'cmd'")


def test_missing_description_block_and_empty_study(tmp_path):
    spec, problems = errors(tmp_path, "study: []\n")
    assert any(p.startswith(f"{spec}") and "'description'" in p for p in problems)
    assert any(p.startswith(f"{spec}:1: study:") and "at least one step" in p for p in problems)


def test_unknown_batch_type(tmp_path):
    text = "description: {name: b, description: d}\nbatch:\n    type: slurmm\n" + spec_text(OK_STUDY)
    spec, problems = errors(tmp_path, text)
    message = one_error(problems, "batch.type")
    assert message.startswith(f"{spec}:3: batch.type: ")
    assert "'slurmm'" in message and "did you mean 'slurm'?" in message


# ------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------

def test_unequal_parameter_lengths(tmp_path):
    text = """
        description: {name: p, description: d}
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(P) $(Q)
        global.parameters:
            P:
                values: [1, 2]
                label: P.%%
            Q:
                values: [1, 2, 3]
                label: Q.%%
        """
    spec, problems = errors(tmp_path, text)
    message = one_error(problems, "global.parameters.Q")
    assert message.startswith(f"{spec}:{line_of(text, 'values: [1, 2, 3]')}: global.parameters.Q.values: ")
    assert "3" in message and "P" in message and "2" in message


# ------------------------------------------------------------------------------------------
# names: env and steps
# ------------------------------------------------------------------------------------------

def test_duplicate_env_names(tmp_path):
    (tmp_path / "data").mkdir()
    text = """
        description: {name: dup, description: d}
        env:
            variables:
                A: one
            labels:
                A: two
            dependencies:
                paths:
                    - name: A
                      path: data
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(A)
        """
    spec, problems = errors(tmp_path, text)
    label = one_error(problems, "env.labels.A")
    assert label.startswith(f"{spec}:{line_of(text, 'A: two')}: env.labels.A: ")
    assert "'A'" in label and f"line {line_of(text, 'A: one')}" in label
    path = one_error(problems, "env.dependencies.paths[0]")
    assert path.startswith(f"{spec}:{line_of(text, '- name: A')}: env.dependencies.paths[0].name: ")


def test_duplicate_step_names(tmp_path):
    text = """
        description: {name: dup, description: d}
        study:
            - name: s
              description: first
              run:
                  cmd: echo 1
            - name: s
              description: second
              run:
                  cmd: echo 2
        """
    spec, problems = errors(tmp_path, text)
    message = one_error(problems, "duplicate")
    assert message.startswith(f"{spec}:{line_of(text, '- name: s', 2)}: study[1].name: ")
    assert "'s'" in message and f"line {line_of(text, '- name: s')}" in message


def test_duplicate_depends_entries(tmp_path):
    text = """
        description: {name: dup, description: d}
        study:
            - name: a
              description: d
              run: {cmd: echo}
            - name: s
              description: d
              run:
                  cmd: echo
                  depends: [a, a]
        """
    spec, problems = errors(tmp_path, text)
    message = one_error(problems, "run.depends")
    assert message.startswith(f"{spec}:{line_of(text, 'depends: [a, a]')}: study[1].run.depends: ")
    assert "a" in message.split("run.depends:", 1)[1]


# ------------------------------------------------------------------------------------------
# depends: unknown, later-defined, self (cycle)
# ------------------------------------------------------------------------------------------

DEPENDS = """
description: {name: deps, description: d}
study:
    - name: build
      description: d
      run:
          cmd: echo
          depends: [build]
    - name: run
      description: d
      run:
          cmd: echo
          depends: [post, biuld, nope_*]
    - name: post
      description: d
      run:
          cmd: echo
"""


def test_self_dependency_is_a_cycle(tmp_path):
    spec, problems = errors(tmp_path, DEPENDS)
    message = one_error(problems, "itself")
    assert message.startswith(f"{spec}:{line_of(DEPENDS, 'depends: [build]')}: study[0].run.depends[0]: ")
    assert "'build'" in message and "cycle" in message


def test_depends_on_later_step(tmp_path):
    spec, problems = errors(tmp_path, DEPENDS)
    message = one_error(problems, "'post'")
    assert message.startswith(f"{spec}:{line_of(DEPENDS, 'depends: [post')}: study[1].run.depends[0]: ")
    assert "later" in message


def test_depends_on_unknown_step_with_suggestion(tmp_path):
    spec, problems = errors(tmp_path, DEPENDS)
    message = one_error(problems, "'biuld'")
    assert message.startswith(f"{spec}:{line_of(DEPENDS, 'depends: [post')}: study[1].run.depends[1]: ")
    assert "unknown step 'biuld'" in message and "did you mean 'build'?" in message
    funnel = one_error(problems, "'nope'")
    assert funnel.startswith(f"{spec}:{line_of(DEPENDS, 'depends: [post')}: study[1].run.depends[2]: ")


def test_all_depends_problems_at_once(tmp_path):
    spec, problems = errors(tmp_path, DEPENDS)
    assert len(problems) == 4


# ------------------------------------------------------------------------------------------
# $(x.workspace)
# ------------------------------------------------------------------------------------------

def test_workspace_of_non_ancestor(tmp_path):
    text = """
        description: {name: ws, description: d}
        study:
            - name: a
              description: d
              run: {cmd: echo a}
            - name: b
              description: d
              run: {cmd: echo b}
            - name: c
              description: d
              run:
                  cmd: cat $(b.workspace)/x
                  depends: [a]
        """
    spec, problems = errors(tmp_path, text)
    message = one_error(problems, "$(b.workspace)")
    assert message.startswith(f"{spec}:{line_of(text, 'cat $(b.workspace)')}: study[2].run.cmd: ")
    assert "not an ancestor" in message and "'c'" in message


def test_workspace_of_later_step(tmp_path):
    text = """
        description: {name: ws, description: d}
        study:
            - name: c
              description: d
              run:
                  cmd: cat $(z.workspace)/x
            - name: z
              description: d
              run: {cmd: echo z}
        """
    spec, problems = errors(tmp_path, text)
    message = one_error(problems, "$(z.workspace)")
    assert message.startswith(f"{spec}:{line_of(text, 'cat $(z.workspace)')}: study[0].run.cmd: ")


def test_workspace_of_self_and_of_unknown_step(tmp_path):
    text = """
        description: {name: ws, description: d}
        study:
            - name: a
              description: d
              run:
                  cmd: |
                      echo $(a.workspace)
                      echo $(zz.workspace)
        """
    spec, problems = errors(tmp_path, text)
    own = one_error(problems, "$(a.workspace)")
    assert own.startswith(f"{spec}:{line_of(text, 'cmd: |')}: study[0].run.cmd: ")
    assert "$(WORKSPACE)" in own
    unknown = one_error(problems, "$(zz.workspace)")
    assert "'zz'" in unknown


def test_workspace_of_ancestor_is_fine(tmp_path):
    spec = write_spec(tmp_path, """
        description: {name: ws, description: d}
        study:
            - name: a
              description: d
              run: {cmd: echo a}
            - name: b
              description: d
              run: {cmd: echo b, depends: [a]}
            - name: c
              description: d
              run:
                  cmd: cat $(a.workspace)/x
                  depends: [b]
        """)
    study = build_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    assert study.node("c").cmd == f"cat {tmp_path / 'study' / 'a'}/x"


# ------------------------------------------------------------------------------------------
# path dependencies (relative to the spec's directory)
# ------------------------------------------------------------------------------------------

PATHS = """
description: {name: paths, description: d}
env:
    dependencies:
        paths:
            - name: INPUT
              path: inputs/mesh
study:
    - name: s
      description: d
      run:
          cmd: ls $(INPUT)
"""


def test_missing_path_dependency(tmp_path):
    spec, problems = errors(tmp_path, PATHS)
    message = one_error(problems, "INPUT")
    assert message.startswith(f"{spec}:{line_of(PATHS, 'path: inputs/mesh')}: env.dependencies.paths[0].path: ")
    assert "'inputs/mesh'" in message and "does not exist" in message


def test_path_dependency_relative_to_the_spec_not_the_cwd(tmp_path, monkeypatch):
    spec = write_spec(tmp_path, PATHS, name="project/spec.yaml")
    (tmp_path / "project" / "inputs" / "mesh").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    study = build_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    assert study.node("s").cmd == f"ls {(tmp_path / 'project' / 'inputs' / 'mesh').resolve()}"


# ------------------------------------------------------------------------------------------
# env cycles, colliding workspaces
# ------------------------------------------------------------------------------------------

def test_label_cycle(tmp_path):
    text = """
        description: {name: cyc, description: d}
        env:
            labels:
                L1: $(L2)
                L2: $(L1)
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(L1)
        """
    spec, problems = errors(tmp_path, text)
    message = one_error(problems, "cycle")
    assert "L1 -> L2 -> L1" in message
    # the error points at a variable of the cycle, not just the env block
    assert (message.startswith(f"{spec}:{line_of(text, 'L1: $(L2)')}: env.labels.L1")
            or message.startswith(f"{spec}:{line_of(text, 'L2: $(L1)')}: env.labels.L2"))


def test_colliding_sanitised_workspaces(tmp_path):
    text = """
        description: {name: col, description: d}
        study:
            - name: eq
              description: d
              run:
                  cmd: echo $(W)
        global.parameters:
            W:
                values: ["a/b", "ab"]
                label: W=%%
        """
    spec, problems = errors(tmp_path, text)
    message = one_error(problems, "eq/Wab")
    assert str(spec) in message
    assert "'eq_W=a/b'" in message and "'eq_W=ab'" in message


# ------------------------------------------------------------------------------------------
# YAML itself
# ------------------------------------------------------------------------------------------

def test_duplicate_yaml_keys(tmp_path):
    text = """
        description: {name: dup, description: d}
        study:
            - name: s
              description: d
              run:
                  cmd: echo 1
                  cmd: echo 2
        """
    spec, problems = errors(tmp_path, text)
    (message,) = problems
    first, second = line_of(text, "cmd: echo 1"), line_of(text, "cmd: echo 2")
    assert message.startswith(f"{spec}:{second}: study[0].run.cmd: ")
    assert "'cmd'" in message and f"line {first}" in message


def test_duplicate_top_level_key(tmp_path):
    text = "description: {name: a, description: d}\n" + spec_text(OK_STUDY) + spec_text(OK_STUDY)
    spec, problems = errors(tmp_path, text)
    (message,) = problems
    assert message.startswith(f"{spec}:{line_of(text, 'study:', 2)}: study: ")
    assert f"line {line_of(text, 'study:')}" in message


def test_duplicate_parameter_key(tmp_path):
    text = """
        description: {name: dup, description: d}
        study:
            - name: s
              description: d
              run: {cmd: echo $(P)}
        global.parameters:
            P: {values: [1], label: P.%%}
            P: {values: [2], label: P.%%}
        """
    spec, problems = errors(tmp_path, text)
    (message,) = problems
    assert message.startswith(f"{spec}:{line_of(text, 'P: {values: [2]')}: global.parameters.P: ")


def test_invalid_yaml_syntax(tmp_path):
    text = """
        description: {name: bad, description: d}
        study:
            - name: s
              description: d
               run:
                  cmd: echo
        """
    spec, problems = errors(tmp_path, text)
    (message,) = problems
    assert message.startswith(f"{spec}:{line_of(text, '   run:')}:")
    assert "not valid YAML" in message


def test_unclosed_flow_sequence(tmp_path):
    text = "description: {name: bad, description: d}\nstudy: [\n"
    spec, problems = errors(tmp_path, text)
    (message,) = problems
    assert message.startswith(f"{spec}:")
    assert "not valid YAML" in message


@pytest.mark.parametrize("content, needle", [
    ("", "empty"),
    ("- a\n- b\n", "mapping"),
])
def test_not_a_spec(tmp_path, content, needle):
    spec = tmp_path / "spec.yaml"
    spec.write_text(content)
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    (message,) = info.value.problems
    assert message.startswith(str(spec)) and needle in message


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=tmp_path / "nope.yaml", out_dir=tmp_path / "study"))
    assert str(tmp_path / "nope.yaml") in info.value.problems[0]


# ------------------------------------------------------------------------------------------
# --pargs
# ------------------------------------------------------------------------------------------

PGEN = """
from maestrowf.datastructures.core import ParameterGenerator

def get_custom_generator(env, **kwargs):
    p = ParameterGenerator()
    p.add_parameter("X", [1])
    return p
"""


@pytest.mark.parametrize("parg", ["NOCOLON", ":value", "  : x"])
def test_bad_pargs(tmp_path, parg):
    spec = write_spec(tmp_path, "description: {name: p, description: d}\n" + spec_text(OK_STUDY))
    pgen = tmp_path / "gen.py"
    pgen.write_text(textwrap.dedent(PGEN))
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=spec, out_dir=tmp_path / "study", pgen=pgen, pargs=[parg]))
    (message,) = info.value.problems
    assert "--pargs" in message and repr(parg) in message


def test_pargs_without_pgen(tmp_path):
    spec = write_spec(tmp_path, "description: {name: p, description: d}\n" + spec_text(OK_STUDY))
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=spec, out_dir=tmp_path / "study", pargs=["K:V"]))
    (message,) = info.value.problems
    assert "--pargs" in message and "--pgen" in message
