"""Bundles (docs/big-sweeps.md): K nodes of one step run by one scheduler job, so that a big sweep
fits a site's limit on queued jobs. Pass 4 (plan), pure: which steps can be bundled, the bundle
size of each step, and the plan of bundle jobs, chained by the same planner as single nodes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import CompileError
from .model import Node
from .plan import Capabilities, Job, Plan, group_jobs, header_check


BUNDLE_MARGIN = 60         # seconds a bundle's time limit leaves beyond its nodes' walltimes


def time_limit(job: Job, node_limit: Optional[Callable[[Node], Optional[int]]] = None) -> Optional[int]:
    """A job of bundles' time limit: one node's limit for each node of its largest bundle (they may
    run one after another), plus a margin; None when the step has no limit. A node's limit is its
    walltime, or ``node_limit(node)`` for backends whose restarts run inside the node's job (room for
    every attempt)."""
    limit = node_limit(job.nodes[0]) if node_limit else job.nodes[0].walltime
    return limit * max(len(bundle) for bundle in job.bundles) + BUNDLE_MARGIN if limit else None


@dataclass(frozen=True)
class Choice:
    """The bundle size of every step (1: one job per node) and why."""

    sizes: Mapping[str, int]
    queued: int                 # jobs queued at once with these sizes
    max_queued: int = 0         # the limit they fit (0: none)
    note: str = ""              # one line for people; empty when nothing is bundled

    @property
    def bundled(self) -> bool:
        return any(size > 1 for size in self.sizes.values())


def steps_of(nodes: Sequence[Node]) -> Dict[str, List[Node]]:
    by_step: Dict[str, List[Node]] = {}
    for node in nodes:
        by_step.setdefault(node.step, []).append(node)
    return by_step


def bundleable(members: Sequence[Node], same_header: Callable[[Sequence[Node]], bool]) -> bool:
    """A step can be bundled when its nodes share one header (the bundle's) and none has a
    `restart`: its self-requeue before the time limit would requeue the whole bundle."""
    return len(members) > 1 and all(node.restart is None for node in members) and same_header(members)


def jobs_needed(count: int, size: int) -> int:
    return -(-count // size)


def choose(counts: Mapping[str, int], can_bundle: Mapping[str, bool], fixed: Mapping[str, int],
           default: int = 0, max_queued: int = 0, limit_source: str = "--max-queued") -> Choice:
    """Bundle sizes per step. ``fixed``: the steps' own `bundle` keys (they win); ``default``:
    --bundle for the other steps; else, with ``max_queued``, the smallest size K common to the
    other bundleable steps such that at most ``max_queued`` jobs are queued (K=1 when the study
    fits as it is). One K for all keeps one-to-one chains bundled alike: they chain task to task."""
    sizes = {step: (fixed.get(step) or default or 1) if can_bundle[step] else 1 for step in counts}
    free = [step for step in counts if can_bundle[step] and not fixed.get(step) and not default]

    def queued(common: int) -> int:
        return sum(jobs_needed(n, common if step in free else sizes[step]) for step, n in counts.items())

    if max_queued and free and queued(1) > max_queued:
        low, high = 1, max(counts[step] for step in free)
        if queued(high) > max_queued:
            raise CompileError(_no_fit(counts, can_bundle, sizes, free, queued(high), max_queued, limit_source))
        while low < high:   # queued() does not grow with the size: the smallest that fits
            middle = (low + high) // 2
            low, high = (low, middle) if queued(middle) <= max_queued else (middle + 1, high)
        sizes.update({step: low for step in free})
    total = sum(jobs_needed(n, sizes[step]) for step, n in counts.items())
    if max_queued and total > max_queued:
        raise CompileError(_no_fit(counts, can_bundle, sizes, free, total, max_queued, limit_source))
    return Choice(sizes, total, max_queued, describe(counts, sizes, total, max_queued, limit_source))


def _no_fit(counts, can_bundle, sizes, free, total, max_queued, limit_source) -> str:
    single = [step for step in counts if not can_bundle[step] and counts[step] > 1]
    text = (f"the study needs {total} queued job(s) with the bundle sizes allowed, more than the "
            f"{max_queued} allowed ({limit_source})")
    if single:
        text += (f"; steps {', '.join(single)} cannot be bundled (their nodes have different scheduler "
                 f"headers, or a `restart`) and count one job per node")
    if not free:
        text += "; choose larger bundles (--bundle, or the steps' `bundle` keys)"
    return text


def describe(counts: Mapping[str, int], sizes: Mapping[str, int], total: int, max_queued: int,
             limit_source: str) -> str:
    """"bundles: ...": what was chosen, in one line (empty when nothing is bundled)."""
    by_size: Dict[int, List[str]] = {}
    for step, size in sizes.items():
        if size > 1:
            by_size.setdefault(size, []).append(step)
    if not by_size:
        return ""
    parts = "; ".join(f"{size} node(s) per job for step(s) {', '.join(steps)}"
                      for size, steps in sorted(by_size.items()))
    limit = f"at most {max_queued} queued job(s) ({limit_source}): " if max_queued else ""
    return f"bundles: {limit}{parts} ({total} job(s) queued for {sum(counts.values())} node(s))"


# --- the plan: bundles are planned as units, as nodes are ---

class _Unit:
    """What the planner groups: one node, or one bundle of a step's nodes."""

    __slots__ = ("name", "step", "depends", "nodes")

    def __init__(self, name: Any, step: str, depends: Tuple[Any, ...], nodes: Tuple[Node, ...]):
        self.name, self.step, self.depends, self.nodes = name, step, depends, nodes


def plan_bundles(nodes: Sequence[Node], capabilities: Capabilities, max_array_size: int,
                 array_key: Callable[[Node], Any], sizes: Mapping[str, int], max_queued: int = 0) -> Plan:
    """The jobs of a study some of whose steps are bundled (``sizes``: step -> K). Each bundle is
    a unit that waits for the units holding its nodes' parents; the planner then makes arrays of
    bundles where the mapping allows it (aftercorr one-to-one, afterok for funnels)."""
    unit_of: Dict[str, Any] = {}
    units: List[_Unit] = []
    inside = in_bundles(nodes, sizes)
    for step, members in steps_of(nodes).items():
        size = sizes.get(step, 1)
        groups = [tuple(members[i:i + size]) for i in range(0, len(members), size)]
        for number, group in enumerate(groups):
            name = ("bundle", step, number) if step in inside else group[0].name
            for node in group:
                unit_of[node.name] = name
            parents = dict.fromkeys(unit_of[p] for node in group for p in node.depends)
            units.append(_Unit(name, step, tuple(parents), group))
    same_header = header_check(capabilities, array_key)
    arrays = (capabilities.arrays or capabilities.bundle_arrays) and max_array_size >= 2

    def one_array(members: Sequence[_Unit]) -> bool:
        if not capabilities.arrays and members[0].step not in inside:
            return False    # arrays of bundles only: plain nodes stay one job each
        return same_header([n for unit in members for n in unit.nodes])
    grouped = group_jobs(units, max_array_size if arrays else 1, one_array, arrays)
    jobs = []
    for job in grouped:
        flat = tuple(node for unit in job.nodes for node in unit.nodes)
        bundles = tuple(unit.nodes for unit in job.nodes) if job.step in inside else ()
        jobs.append(Job(job.index, job.step, flat, job.array, job.chunk, job.depends, bundles))
    return Plan(tuple(jobs), max_queued)


def in_bundles(nodes: Sequence[Node], sizes: Mapping[str, int]) -> Dict[str, bool]:
    """The steps run through bundle scripts: the bundled ones and every step below one (in bundles
    of one node if need be). A bundle ends well even when a node of it failed, so a node after a
    bundle cannot leave its parents' outcome to the scheduler: the bundle script checks it. A step
    with `restart` is never bundled (bundleable), so below bundles its nodes run in bundles of one:
    requeuing such a bundle requeues that one node."""
    inside: Dict[str, bool] = {}
    step_of = {node.name: node.step for node in nodes}
    for node in nodes:   # parents first
        if sizes.get(node.step, 1) > 1 or any(step_of[p] in inside for p in node.depends):
            inside[node.step] = True
    return inside


def per_step_sizes(steps: Sequence[Any]) -> Dict[str, int]:
    """The steps' own `bundle` keys (validated by the schema: positive integers)."""
    return {step.name: int(step.run["bundle"]) for step in steps if step.run.get("bundle")}


def choose_for(nodes: Sequence[Node], capabilities: Capabilities, array_key: Callable[[Node], Any],
               fixed: Mapping[str, int], default: int, max_queued: int,
               limit_source: str = "--max-queued") -> Optional[Choice]:
    """The choice for a study (None: nothing asks for bundles)."""
    if not (fixed or default > 1 or max_queued):
        return None
    same_header = header_check(capabilities, array_key)
    by_step = steps_of(nodes)
    can_bundle = {step: bundleable(members, same_header) for step, members in by_step.items()}
    refused = [step for step in fixed if step in by_step and len(by_step[step]) > 1 and not can_bundle[step]]
    if refused:
        raise CompileError(f"step '{refused[0]}' has `bundle: {fixed[refused[0]]}` but its nodes cannot share one job: "
                           f"they have different scheduler headers (resources, directives) or a `restart`; "
                           f"remove its `bundle` key")
    return choose({step: len(members) for step, members in by_step.items()}, can_bundle, fixed,
                  default if default > 1 else 0, max_queued, limit_source)
