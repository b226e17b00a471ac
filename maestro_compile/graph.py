"""`maestro graph`: the study's DAG as DOT or Mermaid text, or as an image drawn by Graphviz.

The input is a spec (expanded in memory, nothing written) or a compiled study directory (read
only; a submitted one is coloured by the nodes' states). Every pass here is linear in the number
of nodes and edges: studies of tens of thousands of nodes are common.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from .pipeline import build_study
from .errors import GraphError, SchedulerCommandError, SchedulerUnavailableError
from .model import Study
from .states import State
from .status import collect
from .studydir import StudyDir

NO_GRAPHVIZ = ("Graphviz's `dot` is not installed; install the graphviz package or use "
               "-o FILE.dot / --format mermaid")

# -o FILE: the extension decides what is written
EXTENSIONS = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".md": "markdown",
              ".svg": "svg", ".png": "png", ".pdf": "pdf"}
IMAGES = {"svg", "png", "pdf"}

# Most alarming first: a collapsed step takes the colour of its worst node. States a backend
# may report that are missing here rank (and look) like UNKNOWN.
SEVERITY = [str(s) for s in (State.FAILED, State.OUT_OF_MEMORY, State.NODE_FAIL, State.TIMEDOUT, State.UNKNOWN,
                             State.CANCELLED, State.PREEMPTED, State.SUSPENDED, State.RUNNING, State.PENDING,
                             State.INITIALIZED, State.FINISHED)]
RANK = {state: i for i, state in enumerate(SEVERITY)}
COLORS = {"FAILED": "#f4a3a3", "OUT_OF_MEMORY": "#f4a3a3", "NODE_FAIL": "#f4a3a3", "TIMEDOUT": "#f8c58c",
          "UNKNOWN": "#d7b8f3", "CANCELLED": "#d9d9d9", "PREEMPTED": "#fbe9a0", "SUSPENDED": "#fbe9a0",
          "RUNNING": "#9fc8f0", "PENDING": "#fbe9a0", "INITIALIZED": "#ffffff",
          "FINISHED": "#b7e1b0"}

# Mermaid renderers refuse bigger diagrams with their default configuration
MERMAID_MAX_EDGES = 500
# dot's layout time grows fast; beyond this many vertices an image can take minutes
SLOW_LAYOUT = 2000


@dataclass(frozen=True)
class DagNode:
    name: str
    step: str
    depends: Tuple[str, ...]


@dataclass
class Dag:
    """What both inputs (spec or study directory) boil down to."""

    name: str
    steps: Dict[str, List[str]]                 # step -> parameter keys, in study order
    nodes: List[DagNode]                        # topological order
    states: Optional[Dict[str, str]] = None     # node -> state, for a submitted study


@dataclass
class Vertex:
    ident: str
    lines: List[str]
    state: Optional[str] = None
    group: Optional[str] = None                 # the step, when drawn inside the step's box


@dataclass
class Drawing:
    vertices: List[Vertex]
    edges: List[Tuple[str, str]]
    groups: Dict[str, str] = field(default_factory=dict)   # group -> its title


# --- inputs ---

def from_study(study: Study) -> Dag:
    nodes = [DagNode(node.name, node.step, tuple(node.depends)) for node in study.nodes]
    steps = {step: list(keys) for step, keys in study.used_parameters.items()}
    return Dag(name=study.spec.name, steps=steps, nodes=nodes)


def from_directory(study_dir: Path, with_status: bool = True) -> Dag:
    """The DAG of a compiled study; states only once it has been submitted. Reads, never writes."""
    study = StudyDir.open(study_dir)
    manifest = study.manifest
    nodes = [DagNode(name, info.step, info.depends) for name, info in manifest.nodes.items()]
    steps = {step: list(keys) for step, keys in manifest.steps.items()}
    dag = Dag(name=manifest.name, steps=steps, nodes=nodes)
    if with_status and _submitted(study):
        try:
            rows, _ = collect(study)
        except (SchedulerCommandError, SchedulerUnavailableError) as exc:
            raise GraphError(f"{exc}\n(use --no-status to draw the study without its states)") from None
        dag.states = {row.name: str(row.state) for row in rows}
    return dag


def _submitted(study: StudyDir) -> bool:
    """Submitted, or at least run in part: a ledger, the submit stamp or any node's marker file."""
    if study.ledger_path.exists() or study.submission_lock() is not None:
        return True
    return any(study.has_markers(info) for info in study.manifest.nodes.values())


# --- what to draw ---

def collapsed(dag: Dag) -> Drawing:
    """One vertex per step; an edge where any node of one step depends on a node of the other."""
    step_of = {node.name: node.step for node in dag.nodes}
    members: Dict[str, List[str]] = {step: [] for step in dag.steps}
    for node in dag.nodes:
        members.setdefault(node.step, []).append(node.name)
    edges: Dict[Tuple[str, str], None] = {}     # an ordered set: first-seen order is stable output
    for node in dag.nodes:
        for parent in node.depends:
            if parent in step_of and step_of[parent] != node.step:
                edges[(step_of[parent], node.step)] = None
    vertices = []
    for step, names in members.items():
        keys = dag.steps.get(step, [])
        lines = [step]
        if keys:
            lines.append(f"{len(names)} × {', '.join(keys)}")
        elif len(names) > 1:
            lines.append(f"{len(names)} nodes")
        colour_of = None
        if dag.states is not None:   # "9998 FINISHED, 2 FAILED", coloured as its worst state
            counts = _count_states(dag.states.get(name, "UNKNOWN") for name in names)
            lines.append(", ".join(f"{count} {state}" for state, count in counts))
            colour_of = worst(state for state, _ in counts)
        vertices.append(Vertex(step, lines, colour_of))
    return Drawing(vertices, list(edges))


def expanded(dag: Dag) -> Drawing:
    """One vertex per node, inside a box per parameterized step; the nodes' own dependencies."""
    known = {node.name for node in dag.nodes}
    vertices, edges = [], []
    for node in dag.nodes:
        state = dag.states.get(node.name, "UNKNOWN") if dag.states is not None else None
        group = node.step if dag.steps.get(node.step) else None
        vertices.append(Vertex(node.name, [node.name] + ([state] if state else []), state, group))
        edges.extend((parent, node.name) for parent in node.depends if parent in known)
    groups = {step: f"{step} ({', '.join(keys)})" for step, keys in dag.steps.items() if keys}
    return Drawing(vertices, edges, groups)


def _count_states(states: Iterable[str]) -> List[Tuple[str, int]]:
    """(state, count), most frequent first; ties: the more alarming first."""
    counts: Dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], _rank(item[0])))


def _rank(state: str) -> int:
    return RANK.get(state, RANK["UNKNOWN"])


def worst(states: Iterable[str]) -> str:
    return min(states, key=_rank)


def color(state: str) -> str:
    return COLORS.get(state, COLORS["UNKNOWN"])


def _in_order(drawing: Drawing) -> List[Tuple[Optional[str], List[Vertex]]]:
    """(group, its vertices) in study order: a step's box where its first node is; vertices outside
    any box come one by one (group None)."""
    runs: Dict[object, Tuple[Optional[str], List[Vertex]]] = {}
    for vertex in drawing.vertices:
        key = ("box", vertex.group) if vertex.group is not None else ("vertex", vertex.ident)
        runs.setdefault(key, (vertex.group, []))[1].append(vertex)
    return list(runs.values())


# --- DOT ---

def _dot_text(text: str) -> str:
    """Inside a DOT quoted string: \\ and " escaped; control characters would end or break lines."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)


def _dot_label(text: str) -> str:
    """Label text: Graphviz also decodes HTML entities there, so a literal '&' is written &amp;."""
    return _dot_text(text.replace("&", "&amp;"))


def _dot_id(text: str) -> str:
    # Graphviz keeps \\ in an id as two characters, but without it a name ending in \ would escape
    # the closing quote. Ids are only keys (every vertex has a label), so the doubling is harmless.
    return f'"{_dot_text(text)}"'


def _dot_vertex(vertex: Vertex) -> str:
    # DOT reads the two characters \n in a label as a centred line break; each line is escaped
    label = "\\n".join(_dot_label(line) for line in vertex.lines)
    attrs = [f'label="{label}"']
    if vertex.state:
        attrs.append(f'fillcolor="{color(vertex.state)}"')
    return f"{_dot_id(vertex.ident)} [{', '.join(attrs)}];"


def to_dot(drawing: Drawing, title: str) -> str:
    out = [f"digraph {_dot_id(title)} {{",
           '  rankdir=TB; fontname="Helvetica";',
           '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
           '  edge [color="#555555"];']
    for group, vertices in _in_order(drawing):
        indent = "  "
        if group is not None:
            out.append(f"  subgraph {_dot_id('cluster_' + group)} {{")
            title = _dot_label(drawing.groups.get(group, group))
            out.append(f'    label="{title}"; style="rounded"; color="#999999";')
            indent = "    "
        out.extend(indent + _dot_vertex(vertex) for vertex in vertices)
        if group is not None:
            out.append("  }")
    out.extend(f"  {_dot_id(parent)} -> {_dot_id(child)};" for parent, child in drawing.edges)
    out.append("}")
    return "\n".join(out) + "\n"


# --- Mermaid ---

def _mermaid_text(text: str) -> str:
    """Inside a Mermaid "quoted" label: characters Mermaid or its HTML labels would read as syntax
    become entity codes (#35; is '#', which must go first)."""
    for char, code in (("#", "#35;"), ('"', "#34;"), ("<", "#60;"), (">", "#62;"), ("&", "#38;"),
                       ("`", "#96;")):
        text = text.replace(char, code)
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)


class _MermaidIds:
    """Mermaid ids are plain words: names with dots, colons, ... are rewritten, and kept unique."""

    def __init__(self, prefix: str):
        self.prefix, self.ids, self.taken = prefix, {}, set()

    def __call__(self, name: str) -> str:
        if name not in self.ids:
            base = self.prefix + re.sub(r"[^A-Za-z0-9_]", "_", name)
            ident, n = base, 1
            while ident in self.taken:
                n += 1
                ident = f"{base}_{n}"
            self.taken.add(ident)
            self.ids[name] = ident
        return self.ids[name]


def to_mermaid(drawing: Drawing, title: str) -> str:
    node_id, group_id = _MermaidIds("n_"), _MermaidIds("s_")
    out = ["flowchart TD", f"    %% {_mermaid_text(title)}: drawn by maestro graph"]
    for group, vertices in _in_order(drawing):
        indent = "    "
        if group is not None:
            out.append(f'    subgraph {group_id(group)} ["{_mermaid_text(drawing.groups.get(group, group))}"]')
            indent = "        "
        for vertex in vertices:
            label = "<br>".join(_mermaid_text(line) for line in vertex.lines)
            out.append(f'{indent}{node_id(vertex.ident)}["{label}"]')
        if group is not None:
            out.append("    end")
    out.extend(f"    {node_id(parent)} --> {node_id(child)}" for parent, child in drawing.edges)
    out.extend(_mermaid_classes(drawing, node_id))
    return "\n".join(out) + "\n"


def _mermaid_classes(drawing: Drawing, node_id) -> List[str]:
    """One classDef per state present and one `class` line listing its vertices."""
    by_state: Dict[str, List[str]] = {}
    for vertex in drawing.vertices:
        if vertex.state:
            by_state.setdefault(vertex.state, []).append(node_id(vertex.ident))
    lines = []
    for state in sorted(by_state, key=_rank):
        css = "st_" + re.sub(r"[^A-Za-z0-9_]", "_", state.lower())
        lines.append(f"    classDef {css} fill:{color(state)},stroke:#333333")
        lines.append(f"    class {','.join(by_state[state])} {css}")
    return lines


# --- output ---

def output_kind(fmt: Optional[str], out: Optional[Path]) -> str:
    """dot | mermaid | markdown | svg | png | pdf, from --format and -o FILE's extension."""
    if out is None:
        return fmt or "dot"
    kind = EXTENSIONS.get(out.suffix.lower())
    if kind is None:
        raise GraphError(f"{out}: cannot tell the output format from the extension "
                         f"'{out.suffix}'; use one of {', '.join(EXTENSIONS)}")
    text_format = "mermaid" if kind in ("mermaid", "markdown") else "dot"   # images come from DOT
    if fmt and fmt != text_format:
        raise GraphError(f"{out}: --format {fmt} does not match the extension '{out.suffix}' "
                         f"({'Mermaid' if text_format == 'mermaid' else 'DOT / Graphviz'})")
    return kind


def size_warnings(drawing: Drawing, kind: str) -> List[str]:
    """What the user should know about drawing this many vertices or edges."""
    if kind in ("mermaid", "markdown") and len(drawing.edges) > MERMAID_MAX_EDGES:
        return [f"{len(drawing.edges)} edges: Mermaid renderers refuse more than "
                f"{MERMAID_MAX_EDGES} with their default maxEdges setting"]
    if kind in IMAGES and len(drawing.vertices) > SLOW_LAYOUT:
        return [f"Graphviz may take a long time to lay out {len(drawing.vertices)} vertices; "
                f"drop --nodes for one vertex per step"]
    return []


def render_text(drawing: Drawing, kind: str, title: str) -> str:
    if kind in ("mermaid", "markdown"):
        text = to_mermaid(drawing, title)
        return f"```mermaid\n{text}```\n" if kind == "markdown" else text
    return to_dot(drawing, title)


def write(dag: Dag, fmt: Optional[str], out: Optional[Path], every_node: bool,
          warnings: Optional[List[str]] = None) -> Tuple[Optional[str], Drawing]:
    """Write the graph to ``out`` (atomically) or return its text for stdout; and what was drawn.
    Warnings about its size are appended to ``warnings``."""
    kind = output_kind(fmt, out)
    dot = shutil.which("dot") if kind in IMAGES else None
    if kind in IMAGES and not dot:      # checked before any work: nothing is half done
        raise GraphError(NO_GRAPHVIZ)
    drawing = expanded(dag) if every_node else collapsed(dag)
    if warnings is not None:
        warnings += size_warnings(drawing, kind)
    text = render_text(drawing, kind, dag.name)
    if out is None:
        return text, drawing
    if not out.parent.is_dir():
        raise GraphError(f"{out}: no such directory {out.parent}")
    with _replacing(out) as temporary:
        if dot:
            _graphviz(dot, kind, text, temporary)
        else:
            temporary.write_text(text, encoding="utf-8")
    return None, drawing


class _replacing:
    """A temporary file beside ``target`` that replaces it only on success: no partial output."""

    def __init__(self, target: Path):
        self.target = target
        self.temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")

    def __enter__(self) -> Path:
        try:   # O_EXCL: never follow or reuse someone else's file; 0o666 lets the umask decide the mode
            os.close(os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise GraphError(f"{self.target}: cannot write: {exc.strerror or exc}") from None
        return self.temporary

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                try:
                    os.replace(self.temporary, self.target)
                except OSError as exc:
                    raise GraphError(f"{self.target}: cannot write: {exc.strerror or exc}") from None
        finally:
            if self.temporary.exists():
                self.temporary.unlink()


def _graphviz(dot: str, kind: str, text: str, target: Path) -> None:
    result = subprocess.run([dot, f"-T{kind}", "-o", str(target)], input=text.encode("utf-8"),
                            capture_output=True)
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip()
        raise GraphError(f"Graphviz's dot exited {result.returncode}" + (f": {detail}" if detail else ""))


# --- the command ---

SPEC_ONLY = (("backend", None, "--backend"), ("pgen", None, "--pgen"), ("pargs", [], "--pargs"),
             ("hashws", False, "--hashws"), ("cartesian", False, "--cartesian"), ("strict", False, "--strict"))


def check_directory_options(args) -> None:
    """Options that shape how a spec is expanded mean nothing for a study already compiled."""
    given = [flag for attr, default, flag in SPEC_ONLY if getattr(args, attr, default) != default]
    if given:
        raise GraphError(f"{args.target} is a study directory: {', '.join(given)} apply only to a spec "
                         f"(the directory was compiled already)")


def draw(args, options_of) -> Tuple[str, List[str]]:
    """`maestro graph`: the text for stdout (the graph, or what was written where) and the
    warnings to show; ``options_of(args)`` gives the spec's compile Options."""
    target: Path = args.target
    warnings: List[str] = []
    if target.is_dir():
        check_directory_options(args)
        dag = from_directory(target, with_status=not args.no_status)
    else:
        study = build_study(options_of(args))   # expands the parameters, writes nothing
        warnings += study.warnings
        dag = from_study(study)
    text, drawing = write(dag, args.format, args.out, args.nodes, warnings)
    if text is None:
        text = f"wrote {args.out}: {len(drawing.vertices)} vertices, {len(drawing.edges)} edges\n"
    return text, warnings


def target_positional(parser) -> None:
    """The positional added by the shared spec options also accepts a study directory here."""
    for action in parser._actions:
        if action.dest == "spec":
            action.dest, action.metavar = "target", "SPEC|DIR"
            action.help = "a study specification (YAML) or a compiled study directory"
