"""Node scripts rendered by shape (shapes.py) are the text Jinja2 renders, byte for byte, and a
template that does more with a per-node value than print it falls back to Jinja2 for that kind."""
from __future__ import annotations

import glob
from pathlib import Path

import pytest

from maestro_compile import pipeline
from maestro_compile import render
from maestro_compile.backends import BACKENDS, get_backend
from maestro_compile.model import Node
from maestro_compile.shapes import ShapeRenderer

ROOT = Path(__file__).resolve().parent.parent
PER_NODE = frozenset({"node", "workspace", "cmd", "restart", "directives"})


def node(name: str, restart=None) -> Node:
    return Node(name=name, step="step", job_name=name, workspace=f"step/{name}", script=f"step/{name}/{name}.sh",
                params={}, depends=(), description="", cmd="true", restart=restart, resources={}, walltime=None)


def renderer(source: str) -> ShapeRenderer:
    template = render.environment().from_string(source)
    return ShapeRenderer(lambda context: template.render(**context), PER_NODE)


def context(name: str, workspace: str, cmd: str, directives=("--a", "--b"), restart=None, shell="/bin/bash"):
    return {"shell": shell, "node": node(name, restart), "workspace": workspace, "cmd": cmd, "restart": restart,
            "directives": list(directives)}


CONTEXTS = [
    context("a", "/study/a dir", "echo 'it''s'\n"),
    context("b", "/study/b", "cat <<EOF\n$HOME\nEOF"),
    context("c", "/s/c\nnewline", "", directives=()),
    context("d", "/s/d", "x", restart="again $(X)"),
    context("e", "/s/e", "y", shell="/bin/zsh"),
    context("f", "/s/f", "z", directives=("--only",)),
]


@pytest.mark.parametrize("source", [
    "#!{{ shell }}\n{% for d in directives %}#X {{ d }}\n{% endfor %}# {{ node.name | comment }}\n"
    "cd {{ workspace | sh }}\n(\n{{ cmd }}\n)\n{% if restart is not none %}R={{ restart | sh }}{% endif %}\n",
    "{{ workspace | sh | comment }} {{ node.name | sh }}{{ cmd }}",
])
def test_a_shape_gives_the_text_jinja2_gives(source):
    shaped = renderer(source)
    whole = render.environment().from_string(source)
    for values in CONTEXTS + CONTEXTS:
        assert shaped.render(values) == whole.render(**values)
    assert shaped.whole == 0                      # every node was filled into a shape
    assert len(shaped.shapes) == 5                # kinds: restart or not, the directives' count, the shell


@pytest.mark.parametrize("source, whole", [
    ("{% if cmd == 'x' %}X{% endif %}{{ cmd }}", 6),       # a comparison
    ("{% if workspace %}W{% endif %}", 6),                  # truth
    ("{{ cmd | upper }}", 6),                               # another filter
    ("{{ workspace ~ '/x' }}", 6),                          # concatenation
    ("{{ directives | join(' ') }}", 5),                    # a filter on the list (c has none: a shape)
    ("{{ node.walltime }}", 6),                             # a node attribute that is not text
    ("{% if node.restart is none %}none{% endif %}", 5),    # ... or may be None (d's is text: a shape)
])
def test_any_other_use_of_a_per_node_value_renders_that_kind_whole(source, whole):
    shaped = renderer(source)
    jinja = render.environment().from_string(source)
    for values in CONTEXTS:
        assert shaped.render(values) == jinja.render(**values)
    assert shaped.whole == whole


def test_a_shape_that_would_differ_from_jinja2_is_not_used():
    # `is string` cannot raise: the Slot is not a string, so the shape takes the other branch;
    # the comparison with the whole rendering of the first node of the kind catches it
    source = "{% if cmd is string %}text{% else %}other{% endif %} {{ cmd }}"
    shaped = renderer(source)
    whole = render.environment().from_string(source)
    for values in CONTEXTS:
        assert shaped.render(values) == whole.render(**values)
    assert all(shape is None for shape in shaped.shapes.values())


def _specs():
    specs = sorted(glob.glob(str(ROOT / "examples" / "**" / "*.yaml"), recursive=True))
    return specs + sorted(glob.glob(str(ROOT / "tests" / "golden" / "specs" / "*.yaml")))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_the_step_templates_render_every_spec_by_shape(backend, tmp_path):
    """The golden tests check the bytes; this checks that the fast path is the one they took."""
    chosen = get_backend(backend)
    shaped = render._shape_renderer(f"{backend}/step.sh.j2", chosen.per_node_values)
    for spec in _specs():
        study = pipeline.build_study(pipeline.Options(spec_path=Path(spec), out_dir=tmp_path / "study",
                                                      backend=backend, max_array_size=1001))
        before = shaped.whole
        for each in study.nodes:
            assert chosen.render_step(study, each) == render.render_template(
                f"{backend}/step.sh.j2", **chosen.step_context(study, each))
        assert shaped.whole == before, f"{spec}: some {backend} scripts were rendered whole"


def test_a_node_attribute_the_shape_read_as_text_is_checked_for_every_node():
    source = "{% if node.restart is none %}none{% else %}{{ node.restart }}{% endif %}"
    shaped = renderer(source)
    jinja = render.environment().from_string(source)
    with_restart = dict(context("a", "/s/a", "x"), node=node("a", restart="again"))
    without = context("b", "/s/b", "y")            # the same kind: the context's own values agree
    for values in (with_restart, without, with_restart):
        assert shaped.render(values) == jinja.render(**values)
    assert shaped.whole == 1
