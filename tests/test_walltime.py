"""Walltime: one meaning on every backend (maestro_compile/walltime.py), read once per node at
expansion; errors name the file, the line, the key and the node, whatever the backend."""
from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maestro_compile import walltime
from maestro_compile.pipeline import Options, build_study
from maestro_compile.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("local", "slurm", "lsf", "flux")
EXPECTED = "(expected HH:MM:SS, HH:MM, D-HH:MM:SS or minutes)"


# ------------------------------------------------------------------------------------------
# parse
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, seconds", [
    ("01:30:00", 5400),
    ("01:30:30", 5430),
    ("05:30", 19800),           # HH:MM on every backend (Slurm alone would read MM:SS)
    ("00:05", 300),             # Maestro's Flux adapter reads 5 seconds
    ("00:60", 3600),            # fields after the first are not range-checked (Maestro's flux example)
    ("48:00:00", 172800),
    ("0:0:59", 59),
    ("1-00", 86400),            # D-HH
    ("2-03", 2 * 86400 + 3 * 3600),
    ("1-02:03", 86400 + 2 * 3600 + 3 * 60),
    ("1-02:03:04", 86400 + 2 * 3600 + 3 * 60 + 4),
    (90, 5400),                 # integers are minutes
    ("90", 5400),
    (" 90 ", 5400),
    (" 01:00:00\n", 3600),
    (1, 60),
    ("1.5", 90),                # numeric strings and floats are minutes too
    (1.5, 90),
    ("0.1", 6),                 # exact decimal: not 7 from 0.1 * 60 = 6.000000000000001
    (0.1, 6),
    ("0.01", 1),                # 0.6 s, rounded up to whole seconds
    (".5", 30),
    ("2.", 120),
    (None, None),               # absent, empty, infinite: no limit
    ("", None),
    ("   ", None),
    ("inf", None),
    ("INF", None),
    ("Infinity", None),
    ("infinite", None),
    ("unlimited", None),
    ("UNLIMITED", None),
    (math.inf, None),
    (0, None),                  # a zero limit is no limit (sbatch --time=0)
    ("0", None),
    ("00:00:00", None),
    ("0-00:00:00", None),
])
def test_parse(value, seconds):
    assert walltime.parse(value) == seconds


@pytest.mark.parametrize("value", [
    "abc", "soon", "1h", "90m", "5400s", "1:2:3:4", "01:30:", ":30", "1-", "-1", "1--2", "1-2-3",
    "1-2:3:4:5", "01: 30", "1 30", "-5", "+5", "1e3", "1_000", "nan", "0x10", "٣", "1,5",
    "$(WT)", -5, -0.5, math.nan, -math.inf, True, False, [], {}, ["01:00:00"],
])
def test_parse_rejects(value):
    with pytest.raises(ValueError, match=r"cannot read .* as a walltime \(expected HH:MM:SS, HH:MM, "
                                         r"D-HH:MM:SS or minutes\)"):
        walltime.parse(value)


def test_parse_error_message_quotes_the_text():
    with pytest.raises(ValueError) as info:
        walltime.parse("  abc ")
    assert str(info.value) == f"cannot read 'abc' as a walltime {EXPECTED}"
    with pytest.raises(ValueError) as info:
        walltime.parse(-5)
    assert str(info.value) == f"cannot read -5 as a walltime {EXPECTED}"


def test_every_positive_result_is_a_whole_number_of_seconds():
    for value in ("0.0001", "1.23456", 2.5, 7, "3-04:05:06"):
        seconds = walltime.parse(value)
        assert type(seconds) is int and seconds > 0


# ------------------------------------------------------------------------------------------
# formatters
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds, text", [
    (1, "00:00:01"),
    (59, "00:00:59"),
    (300, "00:05:00"),
    (5400, "01:30:00"),
    (19800, "05:30:00"),
    (86399, "23:59:59"),
    (86400, "1-00:00:00"),
    (90061, "1-01:01:01"),
    (10 * 86400 + 5, "10-00:00:05"),
])
def test_slurm_time(seconds, text):
    assert walltime.slurm_time(seconds) == text


@pytest.mark.parametrize("seconds, text", [
    (1, "00:01"),               # rounded up to whole minutes
    (60, "00:01"),
    (61, "00:02"),
    (300, "00:05"),
    (5400, "01:30"),
    (5430, "01:31"),            # Maestro's LSF adapter rounds 01:30:30 up the same way
    (19800, "05:30"),
    (86400, "24:00"),
    (360000, "100:00"),
])
def test_lsf_limit(seconds, text):
    assert walltime.lsf_limit(seconds) == text


@pytest.mark.parametrize("seconds, text", [(1, "1s"), (300, "300s"), (5430, "5430s"), (86400, "86400s")])
def test_flux_duration(seconds, text):
    assert walltime.flux_duration(seconds) == text


@pytest.mark.parametrize("formatter", [walltime.slurm_time, walltime.lsf_limit, walltime.flux_duration])
@pytest.mark.parametrize("bad", [-1, 1.5, "60", None, True])
def test_formatters_take_whole_seconds_only(formatter, bad):
    with pytest.raises(ValueError):
        formatter(bad)


@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 3599, 3600, 5430, 86399, 86400, 90061, 1000000])
def test_slurm_time_reads_back_as_the_same_seconds(seconds):
    """What sbatch gets is always HH:MM:SS or D-HH:MM:SS, which Slurm and parse() read alike:
    never two fields, where Slurm's MM:SS and our HH:MM differ."""
    text = walltime.slurm_time(seconds)
    assert re.fullmatch(r"(\d+-)?\d\d:\d\d:\d\d", text)
    assert walltime.parse(text) == seconds


@pytest.mark.parametrize("value, slurm, lsf, flux", [
    ("05:30", "05:30:00", "05:30", "19800s"),
    ("00:05", "00:05:00", "00:05", "300s"),
    (90, "01:30:00", "01:30", "5400s"),
    ("01:30:30", "01:30:30", "01:31", "5430s"),
    ("1-12", "1-12:00:00", "36:00", "129600s"),
])
def test_one_meaning_on_every_scheduler(value, slurm, lsf, flux):
    seconds = walltime.parse(value)
    assert (walltime.slurm_time(seconds), walltime.lsf_limit(seconds), walltime.flux_duration(seconds)) \
        == (slurm, lsf, flux)


# ------------------------------------------------------------------------------------------
# read once per node, at expansion
# ------------------------------------------------------------------------------------------
def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, marker: str) -> int:
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


PARAMETERIZED = """
description: {name: wt, description: d}
global.parameters:
    WT: {values: ["01:00", "abc", "2-03"], label: "WT.%%"}
study:
    - name: fixed
      description: d
      run: {cmd: echo, walltime: "00:05"}
    - name: none
      description: d
      run: {cmd: echo}
    - name: sweep
      description: d
      run:
          cmd: echo $(WT)
          walltime: $(WT)
"""


def test_node_walltime_is_read_once_per_node(tmp_path):
    spec = write_spec(tmp_path, PARAMETERIZED.replace('"abc"', '"90"'))
    study = build_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    seconds = {node.name: node.walltime for node in study.nodes}
    assert seconds == {"fixed": 300, "none": None, "sweep_WT.01:00": 3600, "sweep_WT.90": 5400,
                       "sweep_WT.2-03": 2 * 86400 + 3 * 3600}
    # the text stays in resources as written (substituted)
    assert study.node("fixed").resources["walltime"] == "00:05"


def test_node_walltime_does_not_depend_on_the_backend(tmp_path):
    spec = write_spec(tmp_path, PARAMETERIZED.replace('"abc"', '"90"'))
    found = set()
    for backend in BACKENDS:
        study = build_study(Options(spec_path=spec, out_dir=tmp_path / "study", backend=backend))
        found.add(tuple((node.name, node.walltime) for node in study.nodes))
    assert len(found) == 1


def test_parameterized_walltime_with_one_bad_value_names_that_node(tmp_path):
    spec = write_spec(tmp_path, PARAMETERIZED)
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    line = line_of(spec, "walltime: $(WT)")
    assert info.value.problems == [
        f"{spec}:{line}: study[2].run.walltime: node 'sweep_WT.abc': cannot read 'abc' as a walltime {EXPECTED}"]


def test_every_walltime_problem_is_reported_at_once_with_the_count_problems(tmp_path):
    spec = write_spec(tmp_path, """
        description: {name: wt, description: d}
        global.parameters:
            N: {values: [1, 2, 3, 4], label: "N.%%"}
            W: {values: ["x", "x", "x", "1:2:3:4"], label: "W.%%"}
        study:
            - name: a
              description: d
              run: {cmd: echo, walltime: soon}
            - name: b
              description: d
              run:
                  cmd: echo $(N) $(W)
                  nodes: $(W)
                  walltime: $(W)
        """)
    with pytest.raises(SpecError) as info:
        build_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    problems = info.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith(f"{spec}:{line_of(spec, 'nodes: $(W)')}: study[1].run.nodes: became 'x'")
    assert problems[1:] == [
        f"{spec}:{line_of(spec, 'walltime: soon')}: study[0].run.walltime: node 'a': "
        f"cannot read 'soon' as a walltime {EXPECTED}",
        f"{spec}:{line_of(spec, 'walltime: $(W)')}: study[1].run.walltime: node 'b_N.1.W.x' "
        f"(and 2 other nodes of step 'b'): cannot read 'x' as a walltime {EXPECTED}",
        f"{spec}:{line_of(spec, 'walltime: $(W)')}: study[1].run.walltime: node 'b_N.4.W.1:2:3:4': "
        f"cannot read '1:2:3:4' as a walltime {EXPECTED}",
    ]


def test_walltime_from_an_env_variable_is_read_after_substitution(tmp_path):
    spec = write_spec(tmp_path, """
        description: {name: wt, description: d}
        env:
            variables: {LIMIT: "2-00"}
        study:
            - name: a
              description: d
              run: {cmd: echo, walltime: $(LIMIT)}
        """)
    study = build_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    assert study.node("a").walltime == 2 * 86400


# ------------------------------------------------------------------------------------------
# end to end: `maestro validate`, for every backend
# ------------------------------------------------------------------------------------------
def validate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maestro_compile", "validate", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=120)


BAD = """
description: {name: wt, description: d}
study:
    - name: a
      description: d
      run:
          cmd: echo
          walltime: "abc"
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_validate_reports_an_unreadable_walltime_on_every_backend(tmp_path, backend):
    spec = write_spec(tmp_path, BAD)
    result = validate(spec, "--backend", backend, "--max-array-size", "1000")
    assert result.returncode == 1, result
    line = line_of(spec, 'walltime: "abc"')
    assert result.stderr.splitlines() == [
        f"error: {spec}:{line}: study[0].run.walltime: node 'a': cannot read 'abc' as a walltime {EXPECTED}"]
    assert "Traceback" not in result.stderr


def test_validate_without_a_backend_option_uses_local_and_still_reports_it(tmp_path):
    spec = write_spec(tmp_path, BAD)
    result = validate(spec)
    assert result.returncode == 1
    assert f"{spec}:{line_of(spec, 'walltime')}: study[0].run.walltime: node 'a': cannot read 'abc'" in result.stderr


def test_validate_reports_the_bad_parameter_value_of_a_sweep(tmp_path):
    spec = write_spec(tmp_path, PARAMETERIZED)
    result = validate(spec)
    assert result.returncode == 1
    line = line_of(spec, "walltime: $(WT)")
    assert f"error: {spec}:{line}: study[2].run.walltime: node 'sweep_WT.abc': cannot read 'abc'" in result.stderr
    assert "sweep_WT.01:00" not in result.stderr and "2-03" not in result.stderr


def test_validate_accepts_every_form(tmp_path):
    forms = ["01:30:00", "05:30", "1-02", "1-02:03", "1-02:03:04", "90", "1.5", "inf", "unlimited", ""]
    steps = "".join(f"    - name: s{i}\n      description: d\n      run: {{cmd: echo, walltime: \"{form}\"}}\n"
                    for i, form in enumerate(forms) if form)
    steps += "    - name: int\n      description: d\n      run: {cmd: echo, walltime: 90}\n"
    spec = tmp_path / "spec.yaml"
    spec.write_text("description: {name: wt, description: d}\nstudy:\n" + steps)
    for backend in BACKENDS:
        result = validate(spec, "--backend", backend, "--max-array-size", "1000")
        assert result.returncode == 0, (backend, result.stderr)
