"""Parameter expansion against the worked examples of maestro_reference.md §3.4 (A-D) and §2-§3.

Every expected value below is taken from the reference (or derived by hand from its rules),
not from the compiler's output. Specs are written into tmp_path; nothing is compiled to disk
except in the section on env values that name other tokens, which reads the rendered scripts.
"""
from __future__ import annotations

import datetime
import json
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from maestro_compile.backends import get_backend
from maestro_compile.pipeline import Options, build_study, compile_study
from maestro_compile.errors import SpecError
from maestro_compile.expand import make_safe


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def build(tmp_path: Path, text: str, **options):
    spec = write_spec(tmp_path, text)
    return build_study(Options(spec_path=spec, out_dir=tmp_path / "study", **options))


def names(study, step=None):
    return [n.name for n in study.nodes if step is None or n.step == step]


# --------------------------------------------------------------------------------------------
# A. samples/hello_world/hello_bye_parameterized.yaml
# --------------------------------------------------------------------------------------------

# the example of examples/hello_world, exactly as users get it
HELLO_BYE = (Path(__file__).resolve().parents[1] / "examples" / "hello_world" /
             "hello_bye_parameterized.yaml").read_text()

A_COMBOS = ["GREETING.Hello.NAME.Pam", "GREETING.Ciao.NAME.Jim", "GREETING.Hey.NAME.Michael",
            "GREETING.Hi.NAME.Dwight"]


@pytest.fixture
def example_a(tmp_path):
    return build(tmp_path, HELLO_BYE)


def test_a_eight_nodes_in_step_then_combination_order(example_a):
    assert names(example_a) == ([f"hello_world_{c}" for c in A_COMBOS] +
                                [f"bye_world_{c}" for c in A_COMBOS])


def test_a_greeting_sorts_before_name(example_a):
    # NAME is declared first, but labels are joined sorted by parameter key
    assert example_a.used_parameters["hello_world"] == ("GREETING", "NAME")
    assert all(".NAME." in n and n.split("_", 2)[-1].startswith("GREETING.") for n in names(example_a))


def test_a_workspaces_and_scripts(example_a):
    node = example_a.node("hello_world_GREETING.Hello.NAME.Pam")
    assert node.workspace == "hello_world/GREETING.Hello.NAME.Pam"
    assert node.script == "hello_world/GREETING.Hello.NAME.Pam/hello_world_GREETING.Hello.NAME.Pam.sh"
    assert node.job_name == "hello_world_GREETING.Hello.NAME.Pam"
    bye = example_a.node("bye_world_GREETING.Hi.NAME.Dwight")
    assert bye.workspace == "bye_world/GREETING.Hi.NAME.Dwight"
    assert bye.script == "bye_world/GREETING.Hi.NAME.Dwight/bye_world_GREETING.Hi.NAME.Dwight.sh"


def test_a_commands(example_a):
    expected = {"GREETING.Hello.NAME.Pam": 'echo "Hello, Pam!" > Hello_Pam.txt\n',
                "GREETING.Ciao.NAME.Jim": 'echo "Ciao, Jim!" > Ciao_Jim.txt\n',
                "GREETING.Hey.NAME.Michael": 'echo "Hey, Michael!" > Hey_Michael.txt\n',
                "GREETING.Hi.NAME.Dwight": 'echo "Hi, Dwight!" > Hi_Dwight.txt\n'}
    for combo, cmd in expected.items():
        assert example_a.node(f"hello_world_{combo}").cmd == cmd
        assert example_a.node(f"bye_world_{combo}").cmd == 'echo "Bye, World!" > bye.txt\n'


def test_a_rendered_script_runs_the_command(example_a):
    node = example_a.node("hello_world_GREETING.Hello.NAME.Pam")
    text = get_backend("local").render_step(example_a, node)
    assert text.startswith("#!/bin/bash\n")
    assert 'echo "Hello, Pam!" > Hello_Pam.txt\n' in text
    assert "$(GREETING)" not in text and "$(OUT_FORMAT)" not in text


def test_a_one_to_one_edges(example_a):
    for combo in A_COMBOS:
        assert example_a.node(f"hello_world_{combo}").depends == ()
        assert example_a.node(f"bye_world_{combo}").depends == (f"hello_world_{combo}",)


def test_a_bye_inherits_parameters_through_depends(example_a):
    assert example_a.used_parameters["bye_world"] == ("GREETING", "NAME")
    assert dict(example_a.node("bye_world_GREETING.Ciao.NAME.Jim").params) == {"NAME": "Jim",
                                                                              "GREETING": "Ciao"}


# --------------------------------------------------------------------------------------------
# B. samples/lulesh/lulesh_sample1_unix.yaml (local build step instead of the git dependency)
# --------------------------------------------------------------------------------------------

LULESH = """
description:
    name: lulesh_sample1
    description: A sample LULESH study that builds and runs a parameter study.

env:
    variables:
        OUTPUT_PATH: ./sample_output/lulesh
    labels:
        outfile: $(SIZE.label).$(ITERATIONS.label).log

study:
    - name: make-lulesh
      description: Build the serial version of LULESH.
      run:
          cmd: |
            touch lulesh2.0
            chmod +x lulesh2.0
          depends: []

    - name: run-lulesh
      description: Run LULESH.
      run:
          cmd: |
            $(make-lulesh.workspace)/lulesh2.0 -s $(SIZE) -i $(ITERATIONS) -p > $(outfile)
          depends: [make-lulesh]

    - name: post-process-lulesh
      description: Post process all LULESH results.
      run:
          cmd: |
            echo "Unparameterized step with Parameter Independent dependencies." >> out.log
            echo $(run-lulesh.workspace) > out.log
            ls $(run-lulesh.workspace) > ls.log
          depends: [run-lulesh_*]

    - name: post-process-lulesh-trials
      description: Post process all LULESH results.
      run:
          cmd: |
            echo "Parameterized step that has Parameter Independent dependencies" >> out.log
            echo "TRIAL = $(TRIAL)" >> out.log
            echo $(run-lulesh.workspace) >> out.log
            ls $(run-lulesh.workspace) > out.log
          depends: [run-lulesh_*]

    - name: post-process-lulesh-size
      description: Post process all LULESH results.
      run:
          cmd: |
            echo "Parameterized step that has Parameter Independent dependencies" >> out.log
            echo "SIZE = $(SIZE)" >> out.log
            echo $(run-lulesh.workspace) >> out.log
            ls $(run-lulesh.workspace) | grep $(SIZE.label) >> out.log
          depends: [run-lulesh_*]

global.parameters:
    TRIAL:
        values  : [1, 2, 3, 4, 5, 6, 7, 8, 9]
        label   : TRIAL.%%
    SIZE:
        values  : [10, 10, 10, 20, 20, 20, 30, 30, 30]
        label   : SIZE.%%
    ITERATIONS:
        values  : [10, 20, 30, 10, 20, 30, 10, 20, 30]
        label   : ITER.%%
"""

RUN_LULESH = [f"run-lulesh_ITER.{i}.SIZE.{s}" for s in (10, 20, 30) for i in (10, 20, 30)]


@pytest.fixture
def example_b(tmp_path):
    return build(tmp_path, LULESH)


def test_b_23_nodes_in_order(example_b):
    assert names(example_b) == (["make-lulesh"] + RUN_LULESH + ["post-process-lulesh"] +
                                [f"post-process-lulesh-trials_TRIAL.{t}" for t in range(1, 10)] +
                                [f"post-process-lulesh-size_SIZE.{s}" for s in (10, 20, 30)])
    assert len(example_b.nodes) == 23


def test_b_used_parameters(example_b):
    assert dict(example_b.used_parameters) == {
        "make-lulesh": (), "run-lulesh": ("ITERATIONS", "SIZE"), "post-process-lulesh": (),
        "post-process-lulesh-trials": ("TRIAL",), "post-process-lulesh-size": ("SIZE",)}


def test_b_make_and_run(example_b, tmp_path):
    out = tmp_path / "study"
    make = example_b.node("make-lulesh")
    assert (make.workspace, make.depends, dict(make.params)) == ("make-lulesh", (), {})
    run = example_b.node("run-lulesh_ITER.10.SIZE.10")
    assert run.workspace == "run-lulesh/ITER.10.SIZE.10"
    assert run.depends == ("make-lulesh",)
    # the outfile label keeps its own text order (SIZE before ITER), unlike the node name
    assert run.cmd == f"{out}/make-lulesh/lulesh2.0 -s 10 -i 10 -p > SIZE.10.ITER.10.log\n"
    last = example_b.node("run-lulesh_ITER.30.SIZE.30")
    assert last.cmd == f"{out}/make-lulesh/lulesh2.0 -s 30 -i 30 -p > SIZE.30.ITER.30.log\n"
    assert dict(last.params) == {"SIZE": "30", "ITERATIONS": "30"}


def test_b_funnel_edges_and_step_root_workspace(example_b, tmp_path):
    out = tmp_path / "study"
    every_run = tuple(sorted(RUN_LULESH))
    post = example_b.node("post-process-lulesh")
    assert post.workspace == "post-process-lulesh"
    assert post.depends == every_run
    assert f"echo {out}/run-lulesh > out.log\n" in post.cmd
    assert f"ls {out}/run-lulesh > ls.log\n" in post.cmd
    for t in range(1, 10):
        trial = example_b.node(f"post-process-lulesh-trials_TRIAL.{t}")
        assert trial.depends == every_run
        assert trial.workspace == f"post-process-lulesh-trials/TRIAL.{t}"
        assert f'echo "TRIAL = {t}" >> out.log\n' in trial.cmd
        assert f"echo {out}/run-lulesh >> out.log\n" in trial.cmd


def test_b_size_is_deduplicated(example_b, tmp_path):
    out = tmp_path / "study"
    sizes = [n for n in example_b.nodes if n.step == "post-process-lulesh-size"]
    assert [n.name for n in sizes] == ["post-process-lulesh-size_SIZE.10", "post-process-lulesh-size_SIZE.20",
                                       "post-process-lulesh-size_SIZE.30"]
    for node, size in zip(sizes, (10, 20, 30)):
        assert node.depends == tuple(sorted(RUN_LULESH))
        assert dict(node.params) == {"SIZE": str(size)}
        assert node.workspace == f"post-process-lulesh-size/SIZE.{size}"
        assert f"ls {out}/run-lulesh | grep SIZE.{size} >> out.log\n" in node.cmd


# --------------------------------------------------------------------------------------------
# C. funnels edge probe
# --------------------------------------------------------------------------------------------

FUNNELS = """
description:
    name: funnel_test
    description: funnels and workspaces

study:
    - name: hello
      description: say hello
      run:
          cmd: |
            echo "$(GREETING), $(NAME)!" > $(GREETING)_$(NAME).txt
            echo ws=$(WORKSPACE) root=$(SPECROOT) pname=$(NAME.name) unknown=$(NOPE) now=$(date)

    - name: bye
      description: say bye
      run:
          cmd: cat $(hello.workspace)/*.txt
          depends: [hello]

    - name: collect
      description: funnel everything
      run:
          cmd: ls $(hello.workspace) $(bye.workspace)
          depends: [hello_*, bye_*]

    - name: after_collect
      description: size sweep after the funnel
      run:
          cmd: echo $(SIZE)
          depends: [collect]

    - name: plain
      description: no parameters
      run:
          cmd: echo plain

    - name: after_plain
      description: still no parameters
      run:
          cmd: echo after
          depends: [plain]

global.parameters:
    NAME:
        values: [Pam, Jim]
        label: NAME.%%
    GREETING:
        values: [Hello, Ciao]
        label: GREETING.%%
    SIZE:
        values: [10, 20]
        label: SIZE.%%
"""


@pytest.fixture
def example_c(tmp_path):
    return build(tmp_path, FUNNELS)


def test_c_nodes(example_c):
    assert names(example_c) == [
        "hello_GREETING.Hello.NAME.Pam", "hello_GREETING.Ciao.NAME.Jim",
        "bye_GREETING.Hello.NAME.Pam", "bye_GREETING.Ciao.NAME.Jim",
        "collect",
        "after_collect_SIZE.10", "after_collect_SIZE.20",
        "plain", "after_plain"]


def test_c_workspace_of_parent_resolves_to_matching_combination(example_c, tmp_path):
    out = tmp_path / "study"
    bye = example_c.node("bye_GREETING.Hello.NAME.Pam")
    assert bye.depends == ("hello_GREETING.Hello.NAME.Pam",)
    assert bye.cmd == f"cat {out}/hello/GREETING.Hello.NAME.Pam/*.txt"
    assert example_c.node("bye_GREETING.Ciao.NAME.Jim").cmd == f"cat {out}/hello/GREETING.Ciao.NAME.Jim/*.txt"


def test_c_funnel_waits_for_every_instance_and_gets_step_roots(example_c, tmp_path):
    out = tmp_path / "study"
    collect = example_c.node("collect")
    assert collect.depends == tuple(sorted(["hello_GREETING.Hello.NAME.Pam", "hello_GREETING.Ciao.NAME.Jim",
                                            "bye_GREETING.Hello.NAME.Pam", "bye_GREETING.Ciao.NAME.Jim"]))
    assert collect.workspace == "collect"
    assert dict(collect.params) == {}
    assert collect.cmd == f"ls {out}/hello {out}/bye"


def test_c_funnel_resets_the_parameter_space(example_c):
    assert example_c.used_parameters["after_collect"] == ("SIZE",)
    for size in (10, 20):
        node = example_c.node(f"after_collect_SIZE.{size}")
        assert node.depends == ("collect",)
        assert dict(node.params) == {"SIZE": str(size)}
        assert node.workspace == f"after_collect/SIZE.{size}"
        assert node.cmd == f"echo {size}"


def test_c_unparameterized_chain(example_c):
    assert example_c.node("plain").depends == ()
    assert example_c.node("plain").workspace == "plain"
    assert example_c.node("after_plain").depends == ("plain",)
    assert example_c.node("after_plain").script == "after_plain/after_plain.sh"


def test_c_builtin_tokens_and_unknown_token(example_c, tmp_path):
    out = tmp_path / "study"
    spec_dir = (tmp_path / "spec.yaml").resolve().parent
    node = example_c.node("hello_GREETING.Hello.NAME.Pam")
    assert node.cmd == ('echo "Hello, Pam!" > Hello_Pam.txt\n'
                        f"echo ws={out}/hello/GREETING.Hello.NAME.Pam root={spec_dir} pname=NAME "
                        "unknown=$(NOPE) now=$(date)\n")
    # $(NOPE) is left as is but reported (deliberate deviation); lower-case $(date) is bash
    nope = [w for w in example_c.warnings if "$(NOPE)" in w]
    assert len(nope) == 1 and "'hello'" in nope[0]
    assert not [w for w in example_c.warnings if "date" in w]


# --------------------------------------------------------------------------------------------
# D. duplicate values
# --------------------------------------------------------------------------------------------

DUPLICATES = """
description:
    name: dups
    description: duplicate parameter values

study:
    - name: sz
      description: size only
      run:
          cmd: echo $(SIZE)
    - name: tr
      description: trials after sizes
      run:
          cmd: echo $(TRIAL)
          depends: [sz]

global.parameters:
    SIZE:
        values: [10, 10, 20]
        label: SIZE.%%
    TRIAL:
        values: [1, 2, 3]
        label: TRIAL.%%
"""


def test_d_duplicate_values(tmp_path):
    study = build(tmp_path, DUPLICATES)
    assert names(study) == ["sz_SIZE.10", "sz_SIZE.20",
                            "tr_SIZE.10.TRIAL.1", "tr_SIZE.10.TRIAL.2", "tr_SIZE.20.TRIAL.3"]
    assert study.node("tr_SIZE.10.TRIAL.1").depends == ("sz_SIZE.10",)
    assert study.node("tr_SIZE.10.TRIAL.2").depends == ("sz_SIZE.10",)
    assert study.node("tr_SIZE.20.TRIAL.3").depends == ("sz_SIZE.20",)
    assert study.node("tr_SIZE.10.TRIAL.2").cmd == "echo 2"
    assert dict(study.node("sz_SIZE.10").params) == {"SIZE": "10"}


# --------------------------------------------------------------------------------------------
# Sanitising (§3.3)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, safe", [
    ("W=a/b c", "Wab_c"),
    ("N.1.P.2.W.00:05:00", "N.1.P.2.W.000500"),
    ("a-b_c.d(e) f", "a-b_c.d(e)_f"),
    ("x$*&|é~", "x"),
    ("GREETING.Hello.NAME.Pam", "GREETING.Hello.NAME.Pam"),
])
def test_make_safe(text, safe):
    assert make_safe(text) == safe


def test_label_with_slash_and_space(tmp_path):
    study = build(tmp_path, """
        description: {name: t4, description: sanitising}
        study:
            - name: eq
              description: d
              run:
                  cmd: echo "$(W)"
        global.parameters:
            W:
                values: ["a/b c"]
                label: W=%%
        """)
    (node,) = study.nodes
    assert node.name == "eq_W=a/b c"          # node names are not sanitised
    assert node.job_name == "eq_W=a/b c"
    assert node.workspace == "eq/Wab_c"
    assert node.script == "eq/Wab_c/eq_Wab_c.sh"
    assert node.cmd == 'echo "a/b c"'


def test_label_with_colons(tmp_path):
    study = build(tmp_path, """
        description: {name: t4, description: sanitising}
        study:
            - name: par
              description: d
              run:
                  cmd: echo $(N) $(P) $(W)
        global.parameters:
            N: {values: [1], label: N.%%}
            P: {values: [2], label: P.%%}
            W: {values: ["00:05:00"], label: W.%%}
        """)
    (node,) = study.nodes
    assert node.name == "par_N.1.P.2.W.00:05:00"
    assert node.job_name == "par_N.1.P.2.W.00:05:00"
    assert node.workspace == "par/N.1.P.2.W.000500"
    assert node.script == "par/N.1.P.2.W.000500/par_N.1.P.2.W.000500.sh"


# --------------------------------------------------------------------------------------------
# --hashws (§3.3): <step>_instance_<i>, zero-padded to len(str(count - 1))
# --------------------------------------------------------------------------------------------

def _sweep(count, values=None):
    values = values or list(range(1, count + 1))
    return f"""
        description: {{name: hws, description: hashed workspaces}}
        study:
            - name: hello
              description: d
              run:
                  cmd: echo $(P) > $(WORKSPACE)/out
            - name: bye
              description: d
              run:
                  cmd: cat $(hello.workspace)/out
                  depends: [hello]
            - name: plain
              description: d
              run:
                  cmd: echo plain
        global.parameters:
            P:
                values: {values}
                label: P.%%
        """


def test_hashws_single_digit(tmp_path):
    out = tmp_path / "study"
    study = build(tmp_path, _sweep(4), hashws=True)
    hello = [n for n in study.nodes if n.step == "hello"]
    assert [n.name for n in hello] == ["hello_P.1", "hello_P.2", "hello_P.3", "hello_P.4"]
    assert [n.job_name for n in hello] == [f"hello_instance_{i}" for i in range(4)]
    assert [n.workspace for n in hello] == [f"hello/hello_instance_{i}" for i in range(4)]
    assert [n.script for n in hello] == [f"hello/hello_instance_{i}/hello_instance_{i}.sh" for i in range(4)]
    assert hello[0].cmd == f"echo 1 > {out}/hello/hello_instance_0/out"
    bye = study.node("bye_P.3")
    assert bye.job_name == "bye_instance_2"
    assert bye.depends == ("hello_P.3",)
    assert bye.cmd == f"cat {out}/hello/hello_instance_2/out"
    plain = study.node("plain")
    assert (plain.job_name, plain.workspace, plain.script) == ("plain", "plain", "plain/plain.sh")


def test_hashws_ten_instances_need_one_digit(tmp_path):
    study = build(tmp_path, _sweep(10), hashws=True)
    assert [n.job_name for n in study.nodes if n.step == "hello"] == [f"hello_instance_{i}" for i in range(10)]


def test_hashws_zero_padded(tmp_path):
    study = build(tmp_path, _sweep(11), hashws=True)
    hello = [n for n in study.nodes if n.step == "hello"]
    assert [n.job_name for n in hello] == [f"hello_instance_{i:02d}" for i in range(11)]
    assert hello[0].workspace == "hello/hello_instance_00"
    assert hello[10].script == "hello/hello_instance_10/hello_instance_10.sh"
    assert hello[10].name == "hello_P.11"


def test_hashws_counts_distinct_combinations(tmp_path):
    study = build(tmp_path, _sweep(3, values=[10, 10, 20]), hashws=True)
    hello = [n for n in study.nodes if n.step == "hello"]
    assert [(n.name, n.job_name) for n in hello] == [("hello_P.10", "hello_instance_0"),
                                                    ("hello_P.20", "hello_instance_1")]


# --------------------------------------------------------------------------------------------
# Token substitution order (§2.2)
# --------------------------------------------------------------------------------------------

def test_env_is_substituted_before_parameters(tmp_path):
    # a parameter hidden in an env label makes the step parameterized; a $(V) inside a
    # parameter *value* arrives after the env pass and stays literal
    study = build(tmp_path, """
        description: {name: order, description: env before params}
        env:
            variables:
                V: from-env
            labels:
                HIDDEN: $(P)-$(V)
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(HIDDEN) $(Q)
        global.parameters:
            P: {values: [p1], label: P.%%}
            Q: {values: ["$(V)"], label: Q.q}
        """)
    (node,) = study.nodes
    assert node.name == "s_P.p1.Q.q"
    assert node.cmd == "echo p1-from-env $(V)"


def test_parameter_label_then_value_then_name(tmp_path):
    # Combination.apply: every $(X.label), then every $(X), then every $(X.name).
    # P's value contains $(Q.label): labels were already replaced, so it stays literal.
    # N's value contains $(Q.name): names come last, so it is replaced.
    study = build(tmp_path, """
        description: {name: order, description: label value name}
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(P) $(N) $(Q) $(Q.label) $(Q.name)
        global.parameters:
            P: {values: ["$(Q.label)"], label: P.one}
            Q: {values: [q], label: Q.%%}
            N: {values: ["$(Q.name)"], label: N.one}
        """)
    (node,) = study.nodes
    assert node.cmd == "echo $(Q.label) Q q Q.q Q"


def test_parameter_name_token(tmp_path):
    study = build(tmp_path, """
        description: {name: names, description: P.name}
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(P.name)=$(P) [$(P.label)]
        global.parameters:
            P: {values: [1, 2], label: P-%%}
        """)
    assert names(study) == ["s_P-1", "s_P-2"]
    assert study.node("s_P-2").cmd == "echo P=2 [P-2]"


def test_yaml_types_are_stringified(tmp_path):
    study = build(tmp_path, """
        description: {name: types, description: stringified values}
        env:
            variables:
                N: 10
                F: 0.5
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(N) $(F) $(B)
        global.parameters:
            B: {values: [true, 1.5], label: B.%%}
        """)
    assert names(study) == ["s_B.True", "s_B.1.5"]
    assert study.node("s_B.True").cmd == "echo 10 0.5 True"
    assert dict(study.node("s_B.1.5").params) == {"B": "1.5"}


def test_parameter_in_description_parameterizes_step(tmp_path):
    study = build(tmp_path, """
        description: {name: desc, description: d}
        study:
            - name: s
              description: run with $(P)
              run:
                  cmd: echo hi
        global.parameters:
            P: {values: [1, 2], label: P.%%}
        """)
    assert names(study) == ["s_P.1", "s_P.2"]
    assert study.node("s_P.2").description == "run with 2"


def test_labels_resolve_to_a_fixed_point_in_any_order(tmp_path):
    # deliberate deviation: Maestro leaves $(L1) literal in L2 because L1 is defined before L2
    study = build(tmp_path, """
        description: {name: labels, description: fixed point}
        env:
            variables:
                V1: v1
            labels:
                L1: $(V1)-L1
                L2: $(L1)+L2
                L4: $(L5)
                L5: $(V1)-L5
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(L2) $(L4)
        """)
    assert study.node("s").cmd == "echo v1-L1+L2 v1-L5"


def test_env_tokens_in_depends_are_substituted(tmp_path):
    # §2.1: env tokens are substituted in every string of the step, depends items included
    study = build(tmp_path, """
        description: {name: deps, description: token in depends}
        env:
            variables:
                PREV: first
        study:
            - name: first
              description: d
              run:
                  cmd: echo 1
            - name: second
              description: d
              run:
                  cmd: echo 2
                  depends: [$(PREV)]
        """)
    assert study.node("second").depends == ("first",)


def test_output_path_and_specroot_tokens(tmp_path):
    study = build(tmp_path, """
        description: {name: tokens, description: d}
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(OUTPUT_PATH) $(SPECROOT)
        """)
    spec_dir = (tmp_path / "spec.yaml").resolve().parent
    assert study.node("s").cmd == f"echo {tmp_path / 'study'} {spec_dir}"


def test_default_directory_under_output_path_relative_to_spec(tmp_path, monkeypatch):
    # deliberate deviation: OUTPUT_PATH is relative to the spec's directory and may use $(VAR)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = write_spec(tmp_path, """
        description: {name: my study, description: d}
        env:
            variables:
                BASE: results
                OUTPUT_PATH: ./$(BASE)/out
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(OUTPUT_PATH)
        """, name="specdir/spec.yaml")
    now = datetime.datetime(2024, 1, 2, 3, 4, 5)
    study = build_study(Options(spec_path=spec), now=now)
    expected = (tmp_path / "specdir").resolve() / "results" / "out" / "my_study_20240102-030405"
    assert Path(study.directory).resolve() == expected
    assert study.node("s").cmd == f"echo {study.directory}"


# --------------------------------------------------------------------------------------------
# An env value that names a parameter, a workspace, a label or itself (§2.2): each pass
# replaces what it defines and leaves the rest for the next one. Every expectation here was
# also produced by maestrowf 1.2.1's `maestro run --dry` on the same spec. These tests compile
# to disk and read the rendered step scripts.
# --------------------------------------------------------------------------------------------

def compile_scripts(tmp_path: Path, text: str, **options) -> Tuple[Path, Dict[str, List[str]], List[str]]:
    """Compile the spec into tmp_path/study: (study dir, node -> lines of its script, warnings)."""
    out = tmp_path / "study"
    result = compile_study(Options(spec_path=write_spec(tmp_path, text), out_dir=out, **options))
    manifest = json.loads((out / "study.json").read_text())
    scripts = {name: (out / node["script"]).read_text().splitlines() for name, node in manifest["nodes"].items()}
    return out, scripts, result.warnings


def test_variable_named_after_its_parameter_leaves_the_token_to_the_parameter(tmp_path):
    # OBJECTIVE is the first variable (Maestro stores it as a plain substitution), WRAP and PREF
    # come later (stored as labels): either way the variable's own token is left for the parameter
    _, scripts, warnings = compile_scripts(tmp_path, """
        description: {name: self_param, description: d}
        env:
            variables:
                OBJECTIVE: $(OBJECTIVE)
                WRAP: pre_$(WRAP)_post
            labels:
                PREF: $(PREF)/bin
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(OBJECTIVE) $(WRAP) $(PREF) $(OBJECTIVE.label)
        global.parameters:
            OBJECTIVE: {values: [a, b], label: O.%%}
            WRAP: {values: [x, y], label: W.%%}
            PREF: {values: [p, q], label: P.%%}
        """)
    assert sorted(scripts) == ["s_O.a.P.p.W.x", "s_O.b.P.q.W.y"]
    assert "echo a pre_x_post p/bin O.a" in scripts["s_O.a.P.p.W.x"]
    assert "echo b pre_y_post q/bin O.b" in scripts["s_O.b.P.q.W.y"]
    assert warnings == []


def test_variable_named_after_a_pgen_parameter(tmp_path):
    # the shape found in published specs: the variable documents a parameter a pgen provides
    pgen = tmp_path / "objectives.py"
    pgen.write_text(textwrap.dedent("""
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            generator = ParameterGenerator()
            generator.add_parameter("OBJECTIVE", ["rosen", "ackley"], "OBJ.%%")
            return generator
        """))
    _, scripts, warnings = compile_scripts(tmp_path, """
        description: {name: pgen_self, description: d}
        env:
            variables:
                OUT: out
                OBJECTIVE: $(OBJECTIVE)
        study:
            - name: s
              description: d
              run:
                  cmd: echo run $(OBJECTIVE) > $(OBJECTIVE.label).txt
        """, pgen=pgen)
    assert sorted(scripts) == ["s_OBJ.ackley", "s_OBJ.rosen"]
    assert "echo run rosen > OBJ.rosen.txt" in scripts["s_OBJ.rosen"]
    assert "echo run ackley > OBJ.ackley.txt" in scripts["s_OBJ.ackley"]
    assert warnings == []


def test_variables_naming_a_parameter_a_workspace_and_a_label(tmp_path):
    out, scripts, warnings = compile_scripts(tmp_path, """
        description: {name: family, description: d}
        env:
            variables:
                V0: plain
                TOP: $(P)-top
                DATA: $(prep.workspace)/data
                LREF: $(LAB)
            labels:
                LAB: lab_$(V0)
        study:
            - name: prep
              description: d
              run:
                  cmd: echo prep
            - name: s
              description: d
              run:
                  cmd: echo $(TOP) $(DATA) $(LREF)
                  depends: [prep]
        global.parameters:
            P: {values: [1, 2], label: P.%%}
        """)
    assert sorted(scripts) == ["prep", "s_P.1", "s_P.2"]
    for p in (1, 2):
        assert f"echo {p}-top {out}/prep/data lab_plain" in scripts[f"s_P.{p}"]
    assert warnings == []


def test_variable_naming_the_workspace_of_a_parameterized_step(tmp_path):
    # the workspace token arrives through the variable and still brings prep's parameters along;
    # after a funnel (run_*) a step's workspace is its root
    out, scripts, _ = compile_scripts(tmp_path, """
        description: {name: wsparam, description: d}
        env:
            variables:
                DATA: $(prep.workspace)/data
                RUN: $(run.workspace)
        study:
            - name: prep
              description: d
              run:
                  cmd: echo prep $(P) > data
            - name: run
              description: d
              run:
                  cmd: cat $(DATA)
                  depends: [prep]
            - name: report
              description: d
              run:
                  cmd: ls $(RUN) $(DATA)
                  depends: [run_*]
        global.parameters:
            P: {values: [1, 2], label: P.%%}
        """)
    assert sorted(scripts) == ["prep_P.1", "prep_P.2", "report_P.1", "report_P.2", "run_P.1", "run_P.2"]
    for p in (1, 2):
        assert f"cat {out}/prep/P.{p}/data" in scripts[f"run_P.{p}"]
        assert f"ls {out}/run {out}/prep/P.{p}/data" in scripts[f"report_P.{p}"]


def test_label_that_uses_a_parameter_and_a_label_named_after_its_parameter(tmp_path):
    # USE comes before the label it names (Maestro replaces labels in order, which works this way round)
    _, scripts, warnings = compile_scripts(tmp_path, """
        description: {name: labparam, description: d}
        env:
            variables:
                V0: plain
                USE: $(RUNLAB)/in
            labels:
                RUNLAB: run_$(P)_$(P.label)
                P: $(P)
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(USE) $(RUNLAB) $(P)
        global.parameters:
            P: {values: [1, 2], label: P.%%}
        """)
    assert sorted(scripts) == ["s_P.1", "s_P.2"]
    for p in (1, 2):
        assert f"echo run_{p}_P.{p}/in run_{p}_P.{p} {p}" in scripts[f"s_P.{p}"]
    assert warnings == []


def test_variable_naming_itself_without_a_parameter_is_left_and_reported(tmp_path):
    # Maestro leaves $(NOPROV) in the script (bash then runs a command NOPROV); so do we, with
    # a warning that says where the token came from, also for a lower-case name
    spec_text = """
        description: {name: noprov, description: d}
        env:
            variables:
                NOPROV: $(NOPROV)
                lower: $(lower)
        study:
            - name: s
              description: d
              run:
                  cmd: echo $(NOPROV) $(lower) $(date)
        """
    _, scripts, warnings = compile_scripts(tmp_path, spec_text)
    assert "echo $(NOPROV) $(lower) $(date)" in scripts["s"]
    assert len(warnings) == 2
    for name in ("NOPROV", "lower"):
        (warning,) = [w for w in warnings if f"$({name})" in w]
        assert f"env.variables.{name} is its own token" in warning and "'s'" in warning
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=tmp_path / "spec.yaml", out_dir=tmp_path / "strict", strict=True))
    assert len(info.value.problems) == 2


@pytest.mark.parametrize("block, chain, expected", [
    ("variables", {"A": "$(B)", "B": "$(A)"}, "A -> B -> A"),
    ("labels", {"A": "x_$(B)", "B": "$(C)/y", "C": "$(A)"}, "A -> B -> C -> A"),
    ("labels", {"A": "$(A)_$(B)", "B": "$(A)"}, "A -> B -> A"),   # A's own token is no excuse
])
def test_variables_naming_each_other_are_a_cycle(tmp_path, block, chain, expected):
    lines = "\n".join(f"        {name}: {value}" for name, value in chain.items())
    text = (f"description: {{name: cycle, description: d}}\nenv:\n    {block}:\n{lines}\n"
            "study:\n    - name: s\n      description: d\n      run:\n          cmd: echo $(A)\n"
            "global.parameters:\n    A: {values: [1], label: A.%%}\n")
    spec = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as info:
        compile_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    (problem,) = info.value.problems
    first_line = next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith("A:"))
    assert problem == (f"{spec}:{first_line}: env.{block}.A: variables refer to each other in a cycle: "
                       f"{expected}")
    assert not (tmp_path / "study").exists()


# --------------------------------------------------------------------------------------------
# Inheritance through $(x.workspace) (§3.2): parameters but no edge
# --------------------------------------------------------------------------------------------

def test_parameters_inherited_through_workspace_reference(tmp_path):
    out = tmp_path / "study"
    study = build(tmp_path, """
        description: {name: wsref, description: d}
        study:
            - name: a
              description: d
              run:
                  cmd: echo $(P) > x
            - name: mid
              description: funnel, no parameters
              run:
                  cmd: echo mid
                  depends: [a_*]
            - name: last
              description: uses a's workspace
              run:
                  cmd: cat $(a.workspace)/x
                  depends: [mid]
        global.parameters:
            P: {values: [1, 2], label: P.%%}
        """)
    assert names(study) == ["a_P.1", "a_P.2", "mid", "last_P.1", "last_P.2"]
    assert study.used_parameters["mid"] == ()
    assert study.used_parameters["last"] == ("P",)
    assert study.node("mid").depends == ("a_P.1", "a_P.2")
    for p in (1, 2):
        last = study.node(f"last_P.{p}")
        assert last.depends == ("mid",)            # the reference adds parameters, not an edge
        assert last.cmd == f"cat {out}/a/P.{p}/x"
        assert dict(last.params) == {"P": str(p)}


def test_parameters_inherited_transitively(tmp_path):
    study = build(tmp_path, """
        description: {name: chain, description: d}
        study:
            - name: a
              description: d
              run: {cmd: echo $(P)}
            - name: b
              description: d
              run: {cmd: echo b, depends: [a]}
            - name: c
              description: d
              run: {cmd: echo $(Q), depends: [b]}
        global.parameters:
            P: {values: [1, 2], label: P.%%}
            Q: {values: [x, y], label: Q.%%}
        """)
    assert names(study, "b") == ["b_P.1", "b_P.2"]
    assert names(study, "c") == ["c_P.1.Q.x", "c_P.2.Q.y"]
    assert study.node("c_P.2.Q.y").depends == ("b_P.2",)


# --------------------------------------------------------------------------------------------
# global.combine: cartesian / --cartesian
# --------------------------------------------------------------------------------------------

CARTESIAN_STEPS = """
    study:
        - name: s
          description: d
          run:
              cmd: echo $(X) $(Y)
        - name: t
          description: d
          run:
              cmd: echo $(X)
              depends: [s]
    global.parameters:
        X: {values: [1, 2], label: X.%%}
        Y: {values: [a, b, c], label: Y.%%}
"""

PRODUCT = {f"s_X.{x}.Y.{y}" for x in (1, 2) for y in "abc"}


def test_cartesian_from_spec(tmp_path):
    study = build(tmp_path, "description: {name: cart, description: d}\nglobal.combine: cartesian\n"
                  + textwrap.dedent(CARTESIAN_STEPS))
    assert len(names(study, "s")) == 6
    assert set(names(study, "s")) == PRODUCT
    # t inherits X and Y from s: one t per s node, 1:1
    assert len(names(study, "t")) == 6
    for node in study.nodes:
        if node.step == "t":
            assert node.depends == ("s_" + node.name[2:],)
            assert node.cmd == f"echo {node.params['X']}"


def test_cartesian_from_option(tmp_path):
    study = build(tmp_path, "description: {name: cart, description: d}\n" + textwrap.dedent(CARTESIAN_STEPS),
                  cartesian=True)
    assert set(names(study, "s")) == PRODUCT
    assert study.node("s_X.2.Y.b").cmd == "echo 2 b"


def test_zip_is_the_default(tmp_path):
    study = build(tmp_path, """
        description: {name: zip, description: d}
        study:
            - name: s
              description: d
              run: {cmd: echo $(X) $(Y)}
        global.parameters:
            X: {values: [1, 2], label: X.%%}
            Y: {values: [a, b], label: Y.%%}
        """)
    assert names(study) == ["s_X.1.Y.a", "s_X.2.Y.b"]


def test_unused_parameters_do_not_expand(tmp_path):
    study = build(tmp_path, """
        description: {name: unused, description: d}
        study:
            - name: s
              description: d
              run: {cmd: echo $(NAME)}
        global.parameters:
            NAME: {values: [Pam, Jim], label: NAME.%%}
            N: {values: [1, 2], label: N.%%}
        """)
    # 1.2.1 regex: $(NAME) does not count as a use of N
    assert names(study) == ["s_NAME.Pam", "s_NAME.Jim"]
    assert study.used_parameters["s"] == ("NAME",)


def test_spec_errors_are_spec_errors(tmp_path):
    with pytest.raises(SpecError):
        build(tmp_path, """
            description: {name: bad, description: d}
            study:
                - name: s
                  description: d
                  run: {cmd: echo, depends: [nope]}
            """)
