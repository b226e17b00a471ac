"""Pass 5: render the study directory's files with Jinja2 (templates are layout only)."""
from __future__ import annotations

import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterator, Optional, Tuple

import jinja2

from . import studydir
from .errors import InstallError
from .expand import make_safe
from .model import File, Node, Rendered, Study
from .shapes import ShapeRenderer, Slot


def templates_dir() -> Path:
    """The templates folder: inside the installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "base" / "step.sh.j2").is_file():
            return candidate
    raise InstallError(f"maestro_compile templates not found under {here}; reinstall the package")


def _sh(value: Any) -> Any:
    """A bash word: the value quoted when it needs it."""
    if type(value) is Slot:
        return value.then(_sh)
    return shlex.quote(str(value))


def _comment(value: Any) -> Any:
    """Text safe inside a '#' comment line: a newline would start a command."""
    if type(value) is Slot:
        return value.then(_comment)
    return " ".join(str(value).splitlines())


def _finalize(value: Any) -> Any:
    """What a {{ ... }} prints: a Slot prints as its hole; anything else is printed as it is."""
    if type(value) is Slot:
        return value.hole()
    return value


@lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates are package data: no stat() of the file per rendered node
        finalize=_finalize,
        autoescape=False,
        # bash uses "{#" in ${#array[@]}: template comments are "{##" ... "##}" instead
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.filters["sh"] = _sh
    env.filters["comment"] = _comment
    return env


def template(name: str) -> jinja2.Template:
    try:
        return environment().get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise InstallError(f"template {exc.name} is missing; reinstall maestro_compile") from None


def render_template(name: str, **context: Any) -> str:
    return template(name).render(**context)


def template_source(name: str) -> str:
    """A file of the templates directory as it is, not rendered (e.g. the local runner, Python)."""
    try:
        return environment().loader.get_source(environment(), name)[0]
    except jinja2.TemplateNotFound as exc:
        raise InstallError(f"template {exc.name} is missing; reinstall maestro_compile") from None


@lru_cache(maxsize=None)
def _shape_renderer(name: str, per_node: FrozenSet[str]) -> ShapeRenderer:
    compiled = template(name)
    return ShapeRenderer(lambda context: compiled.render(**context), per_node)


def render_node_template(name: str, context: Dict[str, Any], per_node: FrozenSet[str]) -> str:
    """A node script: the same text as render_template(name, **context), rendered by shape
    (shapes.py): ``per_node`` names the values that differ from node to node."""
    return _shape_renderer(name, per_node).render(context)


def log_base(node: Node) -> str:
    """Path (relative to the study) of a node's .out/.err/.status files, without the suffix."""
    return f"{node.workspace}/{make_safe(node.job_name)}"


def manifest(study: Study, created: str, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """study.json: what submit, status, cancel, resubmit and graph read (description, created and
    spec are there for people)."""
    data: Dict[str, Any] = {
        "format": studydir.FORMAT,
        "id": study.identity,
        "name": study.spec.name,
        "description": study.spec.description,
        "backend": study.backend,
        "created": created,
        "spec": study.spec.raw.copy_name,
        "steps": {step: list(keys) for step, keys in study.used_parameters.items()},
        # built while study.json is written: 100,000 entries need not all be in memory at once
        "nodes": lambda: ((node.name, node_entry(node)) for node in study.nodes),
    }
    data.update(extra or {})
    return data


def node_entry(node: Node) -> Dict[str, Any]:
    return {"step": node.step, "workspace": node.workspace, "params": dict(node.params),
            "depends": list(node.depends), "script": node.script, "log": log_base(node)}


def render(study: Study, backend, plan: Callable[[], Any], created: str) -> Rendered:
    """The node scripts (by slices of nodes, so that the emit pass can write them one at a time
    or from several processes) and the study-level files and manifest, when asked for. The
    node scripts do not depend on the plan: ``plan()`` is called for the study-level files only,
    while worker processes write the node scripts.
    Pure: the same study, plan and time give the same files on any machine."""
    template(f"{backend.name}/step.sh.j2")  # compiled once, before any worker starts

    def node_files(start: int, stop: int) -> Iterator[Tuple[str, File]]:
        for node in study.nodes[start:stop]:
            yield node.script, File(backend.render_step(study, node), executable=True)

    def study_level() -> Tuple[Dict[str, File], Dict[str, Any]]:
        study_files, extra = backend.render_study(study, plan())
        return study_files, manifest(study, created, extra)
    return Rendered(node_count=len(study.nodes), node_files=node_files, study_level=study_level)
