"""Custom parameter generators (--pgen/--pargs), reference §4."""
from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

from maestro_compile.pipeline import Options, build_study
from maestro_compile.errors import SpecError
from maestro_compile.parameters import ParameterGenerator
from maestro_compile.pgen import parse_pargs

SPEC = """
description:
    name: pgen_study
    description: parameters from a generator
env:
    variables:
        TRIALS: 3
        SMIN: 10
study:
    - name: s
      description: d
      run:
          cmd: echo $(X)
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def build(tmp_path: Path, pgen_text: str, spec_text: str = SPEC, pargs=(), **options):
    spec = write(tmp_path / "spec.yaml", spec_text)
    pgen = write(tmp_path / "gen.py", pgen_text)
    return build_study(Options(spec_path=spec, out_dir=tmp_path / "study", pgen=pgen, pargs=list(pargs),
                               **options))


def names(study, step="s"):
    return [n.name for n in study.nodes if n.step == step]


# ------------------------------------------------------------------------------------------
# maestrowf-compatible imports
# ------------------------------------------------------------------------------------------

MAESTROWF_PGEN = """
from maestrowf.datastructures.core import ParameterGenerator


def get_custom_generator(env, **kwargs):
    p_gen = ParameterGenerator()
    p_gen.add_parameter("X", [1, 2, 3], "X.%%")
    return p_gen
"""


def test_maestrowf_import_works_without_maestrowf(tmp_path):
    assert importlib.util.find_spec("maestrowf") is None, "this test is about maestrowf being absent"
    study = build(tmp_path, MAESTROWF_PGEN)
    assert names(study) == ["s_X.1", "s_X.2", "s_X.3"]
    assert study.node("s_X.2").cmd == "echo 2"
    assert study.node("s_X.2").workspace == "s/X.2"


def test_the_stand_in_modules_do_not_leak(tmp_path):
    build(tmp_path, MAESTROWF_PGEN)
    assert not [name for name in sys.modules if name == "maestrowf" or name.startswith("maestrowf.")]
    assert importlib.util.find_spec("maestrowf") is None


def test_submodule_import_path(tmp_path):
    study = build(tmp_path, """
        from maestrowf.datastructures.core.parameters import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            p = ParameterGenerator()
            p.add_parameter("X", ["a", "b"])
            return p
        """)
    # label defaults to "<key>.%%"
    assert names(study) == ["s_X.a", "s_X.b"]


def test_pgen_replaces_global_parameters(tmp_path):
    spec = SPEC + textwrap.dedent("""
        global.parameters:
            X:
                values: [7, 8, 9, 10]
                label: X.%%
        """)
    study = build(tmp_path, MAESTROWF_PGEN, spec_text=spec)
    assert names(study) == ["s_X.1", "s_X.2", "s_X.3"]


def test_global_parameters_are_still_validated_with_pgen(tmp_path):
    spec = SPEC + textwrap.dedent("""
        global.parameters:
            X:
                values: 7
                label: X.%%
        """)
    with pytest.raises(SpecError) as info:
        build(tmp_path, MAESTROWF_PGEN, spec_text=spec)
    assert any("global.parameters.X.values" in p for p in info.value.problems)


# ------------------------------------------------------------------------------------------
# pargs, env.find, SPECROOT, OUTPUT_PATH
# ------------------------------------------------------------------------------------------

MONTECARLO = """
from maestrowf.datastructures.core import ParameterGenerator


def get_custom_generator(env, **kwargs):
    # like samples/parameterization/lulesh_montecarlo_args.py: pargs, else env fallbacks
    trials = int(kwargs.get("trials", env.find("TRIALS").value))
    smin = int(kwargs.get("smin", env.find("SMIN").value))
    missing = env.find("NOT_DEFINED")
    p_gen = ParameterGenerator()
    p_gen.add_parameter("X", [smin + i for i in range(trials)], "X.%%")
    p_gen.add_parameter("MISSING", [repr(missing)] * trials, "M")
    return p_gen
"""


def test_env_find_fallback(tmp_path):
    study = build(tmp_path, MONTECARLO)
    assert names(study) == ["s_X.10", "s_X.11", "s_X.12"]


def test_env_find_unknown_name_is_none(tmp_path):
    spec = SPEC.replace("cmd: echo $(X)", "cmd: echo $(X) $(MISSING)")
    study = build(tmp_path, MONTECARLO, spec_text=spec)
    assert study.node("s_M.X.10").cmd == "echo 10 None"


def test_pargs_override_env(tmp_path):
    study = build(tmp_path, MONTECARLO, pargs=["trials:2", " smin : 5 "])
    assert names(study) == ["s_X.5", "s_X.6"]


def test_pargs_split_on_first_colon_and_are_strings(tmp_path):
    study = build(tmp_path, """
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            p = ParameterGenerator()
            p.add_parameter("X", [kwargs["URL"]], ["url"])
            p.add_parameter("KIND", [type(kwargs["N"]).__name__], ["kind"])
            p.add_parameter("SPACED", [kwargs["X"]], ["spaced"])
            return p
        """, spec_text=SPEC.replace("cmd: echo $(X)", "cmd: echo $(X) $(KIND) $(SPACED)"),
        pargs=["URL:http://host:8080/x", "N:3", " X : y:z "])
    (node,) = study.nodes
    assert node.cmd == "echo http://host:8080/x str y:z"


def test_parse_pargs():
    assert parse_pargs([" X : y:z ", "A:", "B:1"]) == {"X": "y:z", "A": "", "B": "1"}
    with pytest.raises(SpecError):
        parse_pargs(["no-colon"])


def test_specroot_is_an_object_with_value_and_output_path_a_string(tmp_path):
    study = build(tmp_path, """
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            assert isinstance(kwargs["OUTPUT_PATH"], str)
            assert not isinstance(kwargs["SPECROOT"], str)
            p = ParameterGenerator()
            p.add_parameter("X", [kwargs["SPECROOT"].value], ["root"])
            p.add_parameter("OUT", [kwargs["OUTPUT_PATH"]], ["out"])
            return p
        """, spec_text=SPEC.replace("cmd: echo $(X)", "cmd: echo $(X) $(OUT)"))
    (node,) = study.nodes
    spec_dir = (tmp_path / "spec.yaml").resolve().parent
    assert node.cmd == f"echo {spec_dir} {tmp_path / 'study'}"


# ------------------------------------------------------------------------------------------
# labels and names
# ------------------------------------------------------------------------------------------

def test_label_lists_and_custom_names(tmp_path):
    study = build(tmp_path, """
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            p = ParameterGenerator()
            p.add_parameter("X", [1, 2, 3], ["one", "two", "three"], name="Ex")
            return p
        """, spec_text=SPEC.replace("cmd: echo $(X)", "cmd: echo $(X.name) $(X) $(X.label)"))
    assert names(study) == ["s_one", "s_two", "s_three"]
    node = study.node("s_two")
    assert node.workspace == "s/two"
    assert node.cmd == "echo Ex 2 two"


def test_itertools_product_pgen(tmp_path):
    study = build(tmp_path, """
        import itertools
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            sizes, iters = [10, 20], [5, 6]
            rows = list(itertools.product(sizes, iters))
            p = ParameterGenerator()
            p.add_parameter("SIZE", [r[0] for r in rows], "SIZE.%%")
            p.add_parameter("ITER", [r[1] for r in rows], "ITER.%%")
            return p
        """, spec_text=SPEC.replace("cmd: echo $(X)", "cmd: echo $(SIZE) $(ITER)"))
    # names: labels sorted by key (ITER < SIZE), rows in generator order
    assert names(study) == ["s_ITER.5.SIZE.10", "s_ITER.6.SIZE.10", "s_ITER.5.SIZE.20", "s_ITER.6.SIZE.20"]


# ------------------------------------------------------------------------------------------
# the ParameterGenerator API itself
# ------------------------------------------------------------------------------------------

def test_parameter_generator_api():
    p = ParameterGenerator()
    p.add_parameter("NAME", ["Pam", "Jim"], "NAME.%%")
    p.add_parameter("GREETING", ["Hello", "Ciao"])
    p.add_parameter("N", [1, 2], ["first", "second"], name="count")
    combos = list(p)
    assert len(combos) == 2
    # str(): every label in insertion order; get_param_string: labels sorted by key
    assert str(combos[0]) == "NAME.Pam.GREETING.Hello.first"
    assert combos[1].get_param_string({"NAME", "GREETING"}) == "GREETING.Ciao.NAME.Jim"
    assert combos[1].get_param_string(["N", "NAME"]) == "second.NAME.Jim"
    assert combos[0].apply("$(GREETING), $(NAME)! $(N.name)=$(N) [$(N.label)]") == "Hello, Pam! count=1 [first]"


def test_parameter_generator_length_mismatch():
    p = ParameterGenerator()
    p.add_parameter("A", [1, 2])
    with pytest.raises(ValueError):
        p.add_parameter("B", [1, 2, 3])


def test_parameter_generator_empty_is_falsy():
    assert not ParameterGenerator()


# ------------------------------------------------------------------------------------------
# broken pgen files: errors name the file and the line
# ------------------------------------------------------------------------------------------

def _pgen_error(tmp_path: Path, pgen_text: str, **kwargs) -> str:
    with pytest.raises(SpecError) as info:
        build(tmp_path, pgen_text, **kwargs)
    (message,) = info.value.problems
    return message


def test_error_inside_get_custom_generator(tmp_path):
    message = _pgen_error(tmp_path, """
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            p = ParameterGenerator()
            value = undefined_name + 1
            return p
        """)
    assert message.startswith(f"{tmp_path / 'gen.py'}:5: ")
    assert "NameError" in message and "undefined_name" in message


def test_error_at_import_time(tmp_path):
    message = _pgen_error(tmp_path, """
        import os

        raise RuntimeError("cannot read the CSV")
        """)
    assert message.startswith(f"{tmp_path / 'gen.py'}:3: ")
    assert "RuntimeError" in message and "cannot read the CSV" in message


def test_length_mismatch_in_pgen_points_at_the_call(tmp_path):
    message = _pgen_error(tmp_path, """
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs):
            p = ParameterGenerator()
            p.add_parameter("X", [1, 2])
            p.add_parameter("Y", [1, 2, 3])
            return p
        """)
    assert message.startswith(f"{tmp_path / 'gen.py'}:6: ")
    assert "ValueError" in message


def test_syntax_error_names_file_and_line(tmp_path):
    message = _pgen_error(tmp_path, """
        from maestrowf.datastructures.core import ParameterGenerator

        def get_custom_generator(env, **kwargs)
            return ParameterGenerator()
        """)
    assert "gen.py" in message and "SyntaxError" in message
    assert f"{tmp_path / 'gen.py'}:3" in message or "line 3" in message


def test_missing_factory(tmp_path):
    message = _pgen_error(tmp_path, "X = 1\n")
    assert "gen.py" in message and "get_custom_generator" in message


def test_factory_returns_something_else(tmp_path):
    message = _pgen_error(tmp_path, """
        def get_custom_generator(env, **kwargs):
            return {"X": [1, 2]}
        """)
    assert "gen.py" in message and "ParameterGenerator" in message and "dict" in message


def test_missing_pgen_file(tmp_path):
    spec = write(tmp_path / "spec.yaml", SPEC)
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=spec, out_dir=tmp_path / "study", pgen=tmp_path / "nope.py"))
    (message,) = info.value.problems
    assert "nope.py" in message


def test_system_exit_in_pgen_is_reported_not_raised(tmp_path):
    message = _pgen_error(tmp_path, """
        import sys

        def get_custom_generator(env, **kwargs):
            sys.exit("bad arguments")
        """)
    assert message.startswith(f"{tmp_path / 'gen.py'}:4: ")


def test_pargs_without_pgen(tmp_path):
    spec = write(tmp_path / "spec.yaml", SPEC)
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=spec, out_dir=tmp_path / "study", pargs=["trials:2"]))
    (message,) = info.value.problems
    assert "--pargs" in message and "--pgen" in message
