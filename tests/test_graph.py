"""`maestro graph`: DOT and Mermaid text, images through Graphviz, status colours, errors.

Graphviz is optional at runtime. In CI (CI=true, as root with apt) the Debian package graphviz
is installed, as the Slurm tests install Slurm, and a missing `dot` fails the tests that feed it
our DOT; elsewhere those tests skip when it is missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from maestro_compile import graph as graph_module
from maestro_compile.cli import main
from test_cli import BAD   # a spec with two problems

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HELLO_BYE = EXAMPLES / "hello_world" / "hello_bye_parameterized.yaml"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _graphviz_installed() -> bool:
    if not shutil.which("dot") and IN_CI and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "graphviz"]):
            subprocess.run(argv, env=env, capture_output=True, timeout=900)
    return shutil.which("dot") is not None


HAS_DOT = _graphviz_installed()
needs_dot = pytest.mark.skipif(not HAS_DOT and not IN_CI, reason="Graphviz's dot is not installed (package graphviz)")

HELLO_NODES = [f"{step}_GREETING.{greeting}.NAME.{name}" for step in ("hello_world", "bye_world")
               for greeting, name in (("Hello", "Pam"), ("Ciao", "Jim"), ("Hey", "Michael"), ("Hi", "Dwight"))]

# one node of `sim` fails: its `post` descendant and the `agg` funnel never run
FAILING = """
description:
    name: failing
    description: one node fails
study:
    - name: prepare
      description: fine
      run:
          cmd: echo ready
    - name: sim
      description: X=3 fails
      run:
          cmd: |
            if [ "$(X)" = "3" ]; then exit 3; fi
            echo done
          depends: [prepare]
    - name: post
      description: after sim
      run:
          cmd: echo post
          depends: [sim]
    - name: agg
      description: funnel over every post
      run:
          cmd: echo agg
          depends: [post_*]
global.parameters:
    X:
        values: [1, 2, 3]
        label: X.%%
"""

# parameter values that end up in node names: DOT and Mermaid syntax characters
HOSTILE_VALUES = ['a"b', 'c\\d', 'e:f#g', '<h>&i', 'end', 'back\\', 'x`y`; z -->', 'sp ace', 'a.b', 'a_b']
HOSTILE = """
description:
    name: hostile "names" \\ here
    description: names with quotes, backslashes and Mermaid syntax
study:
    - name: make
      description: d
      run:
          cmd: echo $(V)
    - name: use
      description: d
      run:
          cmd: echo use
          depends: [make]
global.parameters:
    V:
        values: [VALUES]
        label: V.%%
""".replace("VALUES", ", ".join(json.dumps(v) for v in HOSTILE_VALUES))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def graph(capsys, *args) -> str:
    code = main(["graph", *map(str, args)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    return captured.out


def run_cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maestro_compile", *map(str, args)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, env=env, cwd=cwd or str(ROOT))


def snapshot(root: Path) -> Dict[str, Tuple[int, int]]:
    """Every path under root (hidden ones too) with its size and modification time."""
    result = {}
    for path in root.rglob("*"):
        info = path.lstat()
        result[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return result


# ------------------------------------------------------------------------------------------
# a small reader of the DOT we write: quoted ids, label/fillcolor attributes, a -> b edges
# ------------------------------------------------------------------------------------------

QUOTED = r'"(?:[^"\\]|\\.)*"'
VERTEX = re.compile(rf'^\s*({QUOTED}) \[(.*)\];$')
EDGE = re.compile(rf'^\s*({QUOTED}) -> ({QUOTED});$')
ATTR = re.compile(rf'(\w+)=({QUOTED})')


def unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def label_lines(text: str) -> List[str]:
    decoded = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text[1:-1])
    return [line.replace("&amp;", "&") for line in decoded.split("\n")]


def parse_dot(text: str):
    """(vertices: id -> {"label": [lines], "fillcolor": ...}, edges: [(a, b)]) of our DOT output."""
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    vertices, edges = {}, []
    for line in text.splitlines():
        edge = EDGE.match(line)
        if edge:
            edges.append((unquote(edge.group(1)), unquote(edge.group(2))))
            continue
        vertex = VERTEX.match(line)
        if vertex and not line.strip().startswith(("node ", "edge ")):
            attrs = {key: value for key, value in ATTR.findall(vertex.group(2))}
            assert unquote(vertex.group(1)) not in vertices, f"vertex twice: {line}"
            vertices[unquote(vertex.group(1))] = {"label": label_lines(attrs["label"]),
                                                  "fillcolor": unquote(attrs["fillcolor"])
                                                  if "fillcolor" in attrs else None}
    return vertices, edges


# ------------------------------------------------------------------------------------------
# a small reader of the Mermaid we write, checking the syntax rules it relies on
# ------------------------------------------------------------------------------------------

MERMAID_ID = r"[A-Za-z0-9_]+"
MERMAID_VERTEX = re.compile(rf'^\s+({MERMAID_ID})\["([^"]*)"\]$')
MERMAID_EDGE = re.compile(rf"^\s+({MERMAID_ID}) --> ({MERMAID_ID})$")
MERMAID_CLASS = re.compile(rf"^\s+class ({MERMAID_ID}(?:,{MERMAID_ID})*) ({MERMAID_ID})$")


def parse_mermaid(text: str):
    """(vertices: id -> label lines, edges, classes: id -> class); fails on any unexpected line."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    vertices, edges, classes, depth = {}, [], {}, 0
    for line in lines[1:]:
        if line.strip().startswith("%%") or re.match(rf"^\s+classDef {MERMAID_ID} fill:#[0-9a-f]{{6}},", line):
            continue
        if re.match(rf'^\s+subgraph {MERMAID_ID} \["[^"]*"\]$', line):
            depth += 1
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0
        elif MERMAID_VERTEX.match(line):
            ident, label = MERMAID_VERTEX.match(line).groups()
            assert ident not in vertices and ident.lower() != "end"
            vertices[ident] = [html_decode(part) for part in label.split("<br>")]
        elif MERMAID_EDGE.match(line):
            edges.append(MERMAID_EDGE.match(line).groups())
        elif MERMAID_CLASS.match(line):
            names, css = MERMAID_CLASS.match(line).groups()
            for ident in names.split(","):
                classes[ident] = css
        else:
            raise AssertionError(f"unexpected Mermaid line: {line!r}")
    assert depth == 0, "unbalanced subgraph/end"
    for a, b in edges:
        assert a in vertices and b in vertices, (a, b)
    return vertices, edges, classes


def html_decode(text: str) -> str:
    """Mermaid's entity codes (#34; ...) back to characters; no raw syntax character may remain."""
    assert not re.search(r'[<>"`]', text), text
    assert not re.search(r"#(?!\d+;)", text), text
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text)


# ------------------------------------------------------------------------------------------
# specs: DOT
# ------------------------------------------------------------------------------------------

def test_collapsed_dot_has_one_vertex_per_step_and_the_step_edge(capsys):
    vertices, edges = parse_dot(graph(capsys, HELLO_BYE))
    assert vertices == {
        "hello_world": {"label": ["hello_world", "4 × GREETING, NAME"], "fillcolor": None},
        "bye_world": {"label": ["bye_world", "4 × GREETING, NAME"], "fillcolor": None},
    }
    assert edges == [("hello_world", "bye_world")]


def test_nodes_dot_has_every_node_and_its_own_edges(capsys):
    vertices, edges = parse_dot(graph(capsys, HELLO_BYE, "--nodes"))
    assert sorted(vertices) == sorted(HELLO_NODES)
    assert all(v["label"] == [name] for name, v in vertices.items())
    # bye_world inherits both parameters: each bye node waits for its own hello node only
    expected = [(name, name.replace("hello_world_", "bye_world_", 1)) for name in HELLO_NODES[:4]]
    assert sorted(edges) == sorted(expected)


@pytest.mark.parametrize("spec, steps, step_edges, nodes", [
    ("hello_world/hello_world.yaml", {"hello_world": ["hello_world"]}, [], 1),
    ("hello_world/hello_world_single.yaml", {"say_hi": ["say_hi", "4 × NAME"]}, [], 4),
    ("build_archive/build_archive.yaml",
     {"generate": ["generate"], "build": ["build"], "compress": ["compress", "2 × COPT"]},
     [("generate", "build"), ("build", "compress")], 4),
    ("size_sweep/size_sweep.yaml",
     {"run_simulation": ["run_simulation", "3 × SIZE"], "aggregate_results": ["aggregate_results"]},
     [("run_simulation", "aggregate_results")], 4),
])
def test_examples(capsys, spec, steps, step_edges, nodes):
    vertices, edges = parse_dot(graph(capsys, EXAMPLES / spec))
    assert {name: v["label"] for name, v in vertices.items()} == steps
    assert edges == step_edges
    vertices, edges = parse_dot(graph(capsys, EXAMPLES / spec, "--nodes"))
    assert len(vertices) == nodes
    assert all(a in vertices and b in vertices for a, b in edges)


def test_funnel_edges_per_node(capsys):
    vertices, edges = parse_dot(graph(capsys, EXAMPLES / "size_sweep" / "size_sweep.yaml", "--nodes"))
    sims = [f"run_simulation_SIZE.{size}" for size in (10, 100, 1000)]
    assert sorted(vertices) == sorted(sims + ["aggregate_results"])
    assert sorted(edges) == sorted((sim, "aggregate_results") for sim in sims)


def test_hostile_names_dot(tmp_path, capsys):
    spec = write(tmp_path / "hostile.yaml", HOSTILE)
    names = [f"{step}_V.{value}" for step in ("make", "use") for value in HOSTILE_VALUES]
    vertices, edges = parse_dot(graph(capsys, spec, "--nodes"))
    assert sorted(vertices) == sorted(names)
    assert all(v["label"] == [name] for name, v in vertices.items())
    assert sorted(edges) == sorted((f"make_V.{v}", f"use_V.{v}") for v in HOSTILE_VALUES)


# ------------------------------------------------------------------------------------------
# Graphviz reads what we write
# ------------------------------------------------------------------------------------------

def dot_svg_texts(text: str) -> List[str]:
    result = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(result.stdout)
    return [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]


@needs_dot
@pytest.mark.parametrize("spec", sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.glob("*/*.yaml")))
@pytest.mark.parametrize("view", [[], ["--nodes"]])
def test_dot_parses_every_example(capsys, spec, view):
    text = graph(capsys, EXAMPLES / spec, *view)
    vertices, _ = parse_dot(text)
    texts = dot_svg_texts(text)
    for vertex in vertices.values():
        for line in vertex["label"]:
            assert line in texts


@needs_dot
def test_dot_draws_hostile_names_exactly(tmp_path, capsys):
    spec = write(tmp_path / "hostile.yaml", HOSTILE)
    text = graph(capsys, spec, "--nodes")
    texts = dot_svg_texts(text)
    for value in HOSTILE_VALUES:
        assert f"make_V.{value}" in texts and f"use_V.{value}" in texts
    # and Graphviz sees the same edges: every edge joins make_V.<v> to use_V.<v>
    result = subprocess.run(["dot", "-Tjson"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    shown = {obj["_gvid"]: obj["label"].replace("\\\\", "\\").replace("&amp;", "&")
             for obj in data["objects"] if "nodes" not in obj}
    joined = sorted((shown[e["tail"]], shown[e["head"]]) for e in data["edges"])
    assert joined == sorted((f"make_V.{v}", f"use_V.{v}") for v in HOSTILE_VALUES)
    assert len(shown) == 2 * len(HOSTILE_VALUES)


@needs_dot
@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_image_output(tmp_path, capsys, suffix, magic):
    out = tmp_path / f"study{suffix}"
    assert main(["graph", str(HELLO_BYE), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert out.read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]     # no temporary left
    if suffix == ".svg":
        assert "bye_world" in out.read_text()


def test_failing_dot_leaves_no_file(tmp_path, capsys, monkeypatch):
    """A `dot` that writes half an image and fails: the error is reported, nothing is left."""
    fake = write(tmp_path / "bin" / "dot", """
        #!/bin/sh
        for last; do :; done
        echo partial > "$last"
        echo "dot: out of memory" >&2
        exit 2
        """)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    out = tmp_path / "old.svg"
    out.write_text("previous")
    assert main(["graph", str(HELLO_BYE), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Graphviz's dot exited 2: dot: out of memory")
    assert out.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "old.svg"]


# ------------------------------------------------------------------------------------------
# Mermaid
# ------------------------------------------------------------------------------------------

def test_mermaid_collapsed(capsys):
    vertices, edges, classes = parse_mermaid(graph(capsys, HELLO_BYE, "--format", "mermaid"))
    assert sorted(vertices.values()) == [["bye_world", "4 × GREETING, NAME"],
                                         ["hello_world", "4 × GREETING, NAME"]]
    label = {ident: lines[0] for ident, lines in vertices.items()}
    assert [(label[a], label[b]) for a, b in edges] == [("hello_world", "bye_world")]
    assert classes == {}


def test_mermaid_nodes(capsys):
    text = graph(capsys, HELLO_BYE, "--nodes", "--format", "mermaid")
    vertices, edges, _ = parse_mermaid(text)
    label = {ident: lines[0] for ident, lines in vertices.items()}
    assert sorted(label.values()) == sorted(HELLO_NODES)
    expected = [(name, name.replace("hello_world_", "bye_world_", 1)) for name in HELLO_NODES[:4]]
    assert sorted((label[a], label[b]) for a, b in edges) == sorted(expected)
    assert text.count("subgraph ") == 2


def test_mermaid_hostile_names_unique_ids(tmp_path, capsys):
    spec = write(tmp_path / "hostile.yaml", HOSTILE)
    vertices, edges, _ = parse_mermaid(graph(capsys, spec, "--nodes", "--format", "mermaid"))
    # "a.b" and "a_b" sanitise to the same word: the ids must still differ
    assert sorted(lines[0] for lines in vertices.values()) == sorted(
        f"{step}_V.{value}" for step in ("make", "use") for value in HOSTILE_VALUES)
    label = {ident: lines[0] for ident, lines in vertices.items()}
    assert sorted((label[a], label[b]) for a, b in edges) == sorted(
        (f"make_V.{v}", f"use_V.{v}") for v in HOSTILE_VALUES)


@pytest.mark.parametrize("suffix, fenced", [(".mmd", False), (".md", True)])
def test_mermaid_files(tmp_path, capsys, suffix, fenced):
    out = tmp_path / f"graph{suffix}"
    assert main(["graph", str(HELLO_BYE), "-o", str(out)]) == 0
    text = out.read_text()
    if fenced:
        assert text.startswith("```mermaid\nflowchart TD\n") and text.endswith("\n```\n")
        text = text[len("```mermaid\n"):-len("```\n")]
    parse_mermaid(text)
    assert capsys.readouterr().out.startswith(f"wrote {out}")


def test_dot_files(tmp_path, capsys):
    for name in ("g.dot", "g.gv"):
        assert main(["graph", str(HELLO_BYE), "-o", str(tmp_path / name)]) == 0
        assert parse_dot((tmp_path / name).read_text())[1] == [("hello_world", "bye_world")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot", "g.gv"]


# ------------------------------------------------------------------------------------------
# study directories
# ------------------------------------------------------------------------------------------

def test_compiled_directory_matches_the_spec_and_is_untouched(tmp_path, capsys):
    study = tmp_path / "study"
    assert main(["compile", str(HELLO_BYE), "-o", str(study)]) == 0
    capsys.readouterr()
    before = snapshot(study)
    for view in ([], ["--nodes"]):
        for fmt in ("dot", "mermaid"):
            from_dir = graph(capsys, study, "--format", fmt, *view)
            assert from_dir == graph(capsys, HELLO_BYE, "--format", fmt, *view)
    vertices, _ = parse_dot(graph(capsys, study))        # never submitted: no states to show
    assert [v["fillcolor"] for v in vertices.values()] == [None, None]
    assert snapshot(study) == before


@pytest.fixture(scope="module")
def ran_study(tmp_path_factory):
    """A study run to its end with the local backend: FINISHED, FAILED and never-run nodes."""
    root = tmp_path_factory.mktemp("ran")
    spec = write(root / "failing.yaml", FAILING)
    study = root / "study"
    result = run_cli("run", spec, "-o", study, "--wait", "--poll", "0.1")
    assert result.returncode == 2, result.stdout + result.stderr          # some step failed
    deadline = time.time() + 30
    while not (study / ".maestro" / "runner.done").exists():             # nothing more will be written
        assert time.time() < deadline, "the local runner did not finish"
        time.sleep(0.05)
    states = {node["name"]: node["state"] for node in json.loads(run_cli("status", study, "--json").stdout)["nodes"]}
    assert states == {"prepare": "FINISHED", "sim_X.1": "FINISHED", "sim_X.2": "FINISHED", "sim_X.3": "FAILED",
                      "post_X.1": "FINISHED", "post_X.2": "FINISHED", "post_X.3": "CANCELLED",
                      "agg": "CANCELLED"}
    return study, states


def test_status_colours_collapsed(ran_study, capsys):
    study, _ = ran_study
    before = snapshot(study)
    vertices, edges = parse_dot(graph(capsys, study))
    assert vertices == {
        "prepare": {"label": ["prepare", "1 FINISHED"], "fillcolor": graph_module.COLORS["FINISHED"]},
        "sim": {"label": ["sim", "3 × X", "2 FINISHED, 1 FAILED"], "fillcolor": graph_module.COLORS["FAILED"]},
        "post": {"label": ["post", "3 × X", "2 FINISHED, 1 CANCELLED"],
                 "fillcolor": graph_module.COLORS["CANCELLED"]},
        "agg": {"label": ["agg", "1 CANCELLED"], "fillcolor": graph_module.COLORS["CANCELLED"]},
    }
    assert edges == [("prepare", "sim"), ("sim", "post"), ("post", "agg")]
    assert len({graph_module.COLORS[s] for s in ("FINISHED", "FAILED", "CANCELLED")}) == 3
    assert snapshot(study) == before


def test_status_colours_per_node(ran_study, capsys):
    study, states = ran_study
    before = snapshot(study)
    vertices, edges = parse_dot(graph(capsys, study, "--nodes"))
    assert {name: v["fillcolor"] for name, v in vertices.items()} == {
        name: graph_module.COLORS[state] for name, state in states.items()}
    assert {name: v["label"] for name, v in vertices.items()} == {
        name: [name, state] for name, state in states.items()}
    assert ("sim_X.3", "post_X.3") in edges and ("post_X.3", "agg") in edges and len(edges) == 9

    mermaid_vertices, _, classes = parse_mermaid(graph(capsys, study, "--nodes", "--format", "mermaid"))
    by_name = {lines[0]: ident for ident, lines in mermaid_vertices.items()}
    assert {name: classes[by_name[name]] for name in states} == {
        name: "st_" + state.lower() for name, state in states.items()}
    assert snapshot(study) == before


def test_no_status(ran_study, capsys):
    study, _ = ran_study
    vertices, _ = parse_dot(graph(capsys, study, "--no-status"))
    assert all(v["fillcolor"] is None for v in vertices.values())
    assert vertices["sim"]["label"] == ["sim", "3 × X"]


@needs_dot
def test_status_image(ran_study, tmp_path, capsys):
    study, _ = ran_study
    out = tmp_path / "status.svg"
    assert main(["graph", str(study), "-o", str(out)]) == 0
    svg = out.read_text()
    assert graph_module.COLORS["FAILED"] in svg and "2 FINISHED, 1 FAILED" in svg


# ------------------------------------------------------------------------------------------
# errors: one line, non-zero exit, no traceback, nothing written
# ------------------------------------------------------------------------------------------

def assert_clean_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode != 0
    assert result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_missing_graphviz_in_process(tmp_path, capsys, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "dot" else real_which(name, *a, **k))
    out = tmp_path / "study.png"
    assert main(["graph", str(HELLO_BYE), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {graph_module.NO_GRAPHVIZ}\n"
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_missing_graphviz_without_dot_on_path(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "study.svg"
    result = run_cli("graph", HELLO_BYE, "-o", out, env={**os.environ, "PATH": str(empty)})
    assert_clean_error(result, "Graphviz's `dot` is not installed; install the graphviz package or use "
                               "-o FILE.dot / --format mermaid")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]
    # the text outputs need no Graphviz
    result = run_cli("graph", HELLO_BYE, "-o", tmp_path / "study.dot", env={**os.environ, "PATH": str(empty)})
    assert result.returncode == 0, result.stderr


def test_spec_error(tmp_path):
    spec = write(tmp_path / "bad.yaml", BAD)
    result = run_cli("graph", spec)
    assert_clean_error(result, f"{spec}:8: study[0].run.cmd: ")
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize("args, message", [
    (["{dir}", "--pgen", "gen.py", "--hashws"], "is a study directory: --pgen, --hashws apply only to a spec"),
    (["{spec}", "-o", "{tmp}/graph.txt"], "cannot tell the output format from the extension '.txt'"),
    (["{spec}", "-o", "{tmp}/graph.svg", "--format", "mermaid"], "--format mermaid does not match"),
    (["{spec}", "-o", "{tmp}/graph.mmd", "--format", "dot"], "--format dot does not match"),
    (["{spec}", "-o", "{tmp}/missing/graph.dot"], "no such directory"),
    (["{tmp}/nope.yaml"], "nope.yaml: no such file"),
    (["{tmp}"], "is not a study directory (no study.json)"),
])
def test_usage_errors(tmp_path, args, message):
    study = tmp_path / "study"
    assert main(["compile", str(HELLO_BYE), "-o", str(study)]) == 0
    before = snapshot(tmp_path)
    argv = [a.format(dir=study, spec=HELLO_BYE, tmp=tmp_path) for a in args]
    assert_clean_error(run_cli("graph", *argv), message)
    assert snapshot(tmp_path) == before


def test_help_names_the_positional():
    result = run_cli("graph", "--help")
    assert result.returncode == 0
    assert "SPEC|DIR" in result.stdout and "--nodes" in result.stdout and "--no-status" in result.stdout


# ------------------------------------------------------------------------------------------
# size: 30,001 nodes with --nodes stays linear
# ------------------------------------------------------------------------------------------

def test_huge_study_every_node(tmp_path, capsys):
    values = ", ".join(str(i) for i in range(30000))
    spec = write(tmp_path / "huge.yaml", f"""
        description:
            name: huge
            description: a wide sweep and a funnel
        study:
            - name: simulate
              description: d
              run:
                  cmd: echo $(X)
            - name: gather
              description: d
              run:
                  cmd: echo all
                  depends: [simulate_*]
        global.parameters:
            X:
                values: [{values}]
                label: X.%%
        """)
    started = time.monotonic()
    vertices, edges = parse_dot(graph(capsys, spec, "--nodes"))
    took = time.monotonic() - started
    assert len(vertices) == 30001 and len(edges) == 30000
    assert all(child == "gather" for _, child in edges)
    # a quadratic pass over 30,001 nodes (~10^9 steps) would take minutes
    assert took < 60, f"graph --nodes of 30,001 nodes took {took:.0f}s"

    mermaid = graph(capsys, spec, "--nodes", "--format", "mermaid")
    assert mermaid.count(" --> ") == 30000
    vertices, edges = parse_dot(graph(capsys, spec))
    assert vertices["simulate"]["label"] == ["simulate", "30000 × X"]
    assert edges == [("simulate", "gather")]


def test_drawing_is_linear():
    """The drawing passes alone, on a synthetic DAG: 10x the nodes may not cost 100x the time."""
    def timed(n: int) -> float:
        nodes = [graph_module.DagNode("root", "root", ())]
        nodes += [graph_module.DagNode(f"leaf_X.{i}", "leaf", ("root",)) for i in range(n)]
        nodes += [graph_module.DagNode("sink", "sink", tuple(f"leaf_X.{i}" for i in range(n)))]
        dag = graph_module.Dag("synthetic", {"root": [], "leaf": ["X"], "sink": []}, nodes,
                               {node.name: "FINISHED" for node in nodes})
        started = time.perf_counter()
        for every_node in (False, True):
            for kind in ("dot", "mermaid"):
                drawing = graph_module.expanded(dag) if every_node else graph_module.collapsed(dag)
                if kind == "dot":
                    graph_module.to_dot(drawing, dag.name)
                else:
                    graph_module.to_mermaid(drawing, dag.name)
        return time.perf_counter() - started

    small, large = min(timed(3000) for _ in range(3)), min(timed(30000) for _ in range(3))
    assert large < 30 * small + 0.5, f"3,000 nodes: {small:.3f}s, 30,000 nodes: {large:.3f}s"
