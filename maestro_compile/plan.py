"""Pass 4: order the nodes and check the plan is executable (no cycles, no shared workspaces)."""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

try:
    from graphlib import CycleError, TopologicalSorter
except ImportError:  # Python < 3.9: the graphlib-backport package provides the same module
    from graphlib_backport import CycleError, TopologicalSorter  # type: ignore

from .errors import CompileError, SpecError
from .model import Node, Spec


def order(nodes: Sequence[Node]) -> Tuple[Node, ...]:
    """Parents before children, keeping the spec's order among independent nodes."""
    sorter = TopologicalSorter({node.name: node.depends for node in nodes})
    try:
        sorter.prepare()
    except CycleError as exc:
        raise CompileError(f"the steps form a cycle: {' -> '.join(exc.args[1])}") from None
    position = {node.name: i for i, node in enumerate(nodes)}
    if all(position[p] < position[node.name] for node in nodes for p in node.depends):
        return tuple(nodes)
    by_name = {node.name: node for node in nodes}
    ordered = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        ordered.extend(by_name[name] for name in ready)
        sorter.done(*ready)
    return tuple(ordered)


def check_unique_workspaces(spec: Spec, nodes: Sequence[Node]) -> None:
    """Distinct labels can sanitise to the same directory (Maestro lets them clobber each other)."""
    owner: Dict[str, str] = {}
    problems = []
    for node in nodes:
        if any(c in node.name for c in "\n\r\t"):
            problems.append(f"{spec.path}: node {node.name!r} of step '{node.step}': a parameter label "
                            f"contains a newline or tab, which cannot be part of a node name")
            continue
        other = owner.setdefault(node.script, node.name)
        if other != node.name:
            problems.append(f"{spec.path}: nodes '{other}' and '{node.name}' would share the workspace "
                            f"'{node.workspace}' (parameter labels differ only in characters that are "
                            f"removed from directory names); change a label in global.parameters")
    if problems:
        raise SpecError(problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else []))
