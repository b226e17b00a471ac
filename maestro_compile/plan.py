"""Pass 4: order the nodes, check they can run (no cycles, no shared workspaces), and plan the
scheduler jobs: which nodes become job arrays and what each job waits for, from the backend's
capabilities given as data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

try:
    from graphlib import CycleError, TopologicalSorter
except ImportError:  # Python < 3.9: the graphlib-backport package provides the same module
    from graphlib_backport import CycleError, TopologicalSorter  # type: ignore

from .errors import CompileError, SpecError
from .expand import MAX_NAME_BYTES, capped
from .model import Node, Spec


def order(nodes: Sequence[Node]) -> Tuple[Node, ...]:
    """Parents before children, keeping the spec's order among independent nodes."""
    position = {node.name: i for i, node in enumerate(nodes)}
    if all(position.get(p, i) < i for i, node in enumerate(nodes) for p in node.depends):
        return tuple(nodes)   # already in order (the usual case), so there is no cycle either
    sorter = TopologicalSorter({node.name: node.depends for node in nodes})
    try:
        sorter.prepare()
    except CycleError as exc:
        raise CompileError(f"the steps form a cycle: {' -> '.join(exc.args[1])}") from None
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
        if "\n" in node.name or "\r" in node.name or "\t" in node.name:
            problems.append(f"{spec.path}: node {capped(node.name)!r} of step '{node.step}': a parameter label "
                            f"contains a newline or tab, which cannot be part of a node name")
            continue
        # no part of a path is longer than the whole path: most are not measured one by one
        longest = node.script if len(node.script.encode("utf-8")) <= MAX_NAME_BYTES else \
            max(node.script.split("/"), key=lambda part: len(part.encode("utf-8")))
        if len(longest.encode("utf-8")) > MAX_NAME_BYTES:
            problems.append(f"{spec.path}: node {capped(node.name)!r} of step '{node.step}': its workspace or script "
                            f"name {capped(longest)!r} is {len(longest.encode('utf-8'))} bytes, more than the "
                            f"{MAX_NAME_BYTES} a file system allows; shorten the parameter labels "
                            f"(global.parameters.*.label) or use --hashws")
            continue
        other = owner.setdefault(node.script, node.name)
        if other != node.name:
            problems.append(f"{spec.path}: nodes {capped(other)!r} and {capped(node.name)!r} would share the workspace "
                            f"{capped(node.workspace)!r} (parameter labels differ only in characters that are "
                            f"removed from directory names); change a label in global.parameters")
    if problems:
        raise SpecError(problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else []))


# --- grouping nodes into scheduler jobs (arrays where the mapping allows it) ---

@dataclass(frozen=True)
class Dependency:
    job: int                    # index of the parent Job in the plan
    kind: str                   # "afterok" (whole job/array) | "aftercorr" (task i waits for task i)
    task: Optional[int] = None  # with afterok on one task of an array


@dataclass(frozen=True)
class Job:
    """One scheduler submission: a single node, or a chunk of a step's nodes as a job array."""

    index: int
    step: str
    nodes: Tuple[Node, ...]
    array: bool
    chunk: int                  # chunk number within the step (arrays split at the size limit)
    depends: Tuple[Dependency, ...]
    # bundles (docs/big-sweeps.md): task i runs the nodes bundles[i] inside its allocation; empty:
    # one node per task, as without bundles
    bundles: Tuple[Tuple[Node, ...], ...] = ()

    @property
    def root(self) -> bool:
        return not self.depends

    @property
    def tasks(self) -> int:
        """How many scheduler jobs it queues: array tasks count one each."""
        return len(self.bundles) if self.bundles else len(self.nodes) if self.array else 1


@dataclass(frozen=True)
class Capabilities:
    """What a backend's scheduler offers the planner."""

    arrays: bool                     # job arrays with element-wise dependencies (aftercorr)
    max_array_size: int = 1          # the scheduler's default limit; the cluster's may differ
    directive_prefix: str = ""       # "#SBATCH": a cmd with such lines may change a node's header
    bundles: bool = False            # runs several nodes in one job (bundles.py)
    # job arrays for jobs of bundles only, each waiting for whole parent jobs (PBS: no element-wise
    # dependency, but a bundle checks its nodes' parents itself); plain nodes stay one job each
    bundle_arrays: bool = False


@dataclass(frozen=True)
class Plan:
    """The scheduler jobs of a study, in submission order (parents first)."""

    jobs: Tuple[Job, ...]
    max_queued: int = 0     # the limit on queued jobs the plan was fitted to (0: none)

    @property
    def array_count(self) -> int:
        return sum(1 for job in self.jobs if job.array)

    @property
    def largest_array(self) -> int:
        return max((job.tasks for job in self.jobs if job.array), default=0)


def plan_jobs(nodes: Sequence[Node], capabilities: Capabilities, max_array_size: int,
              array_key: Callable[[Node], Any]) -> Plan:
    """Group ``nodes`` into jobs. A step becomes arrays of at most ``max_array_size`` tasks when
    the backend has arrays and ``array_key`` (the shared header) is equal for all its nodes."""
    if not capabilities.arrays or max_array_size < 2:
        return Plan(group_jobs(nodes, 1, lambda members: False, arrays=False))
    return Plan(group_jobs(nodes, max_array_size, header_check(capabilities, array_key), True))


def header_check(capabilities: Capabilities, array_key: Callable[[Node], Any]) -> Callable[[Sequence[Node]], bool]:
    """The test that nodes share one scheduler header (and so can be one array, or one bundle)."""
    prefix = capabilities.directive_prefix

    def same_header(members: Sequence[Node]) -> bool:
        head = members[0]
        if all(n.resources == head.resources and (n.restart is None) == (head.restart is None)
               and not (prefix and prefix in n.cmd) for n in members):
            return True   # equal inputs give equal headers: no need to build them here
        first = array_key(head)
        return all(array_key(n) == first for n in members[1:])
    return same_header


def group_jobs(nodes: Sequence[Node], max_array: int, same_header: Callable[[Sequence[Node]], bool],
               arrays: bool = True) -> Tuple[Job, ...]:
    """Turn nodes into jobs: a step becomes job arrays when every dependency maps task to task
    (aftercorr) or waits for whole parent jobs (afterok); otherwise one job per node."""
    by_step: Dict[str, List[Node]] = {}
    for node in nodes:
        by_step.setdefault(node.step, []).append(node)
    jobs: List[Job] = []
    where: Dict[str, Tuple[int, int]] = {}          # node -> (job index, task index or -1)
    step_jobs: Dict[str, List[int]] = {}
    for step, members in by_step.items():
        chunks = [members[i:i + max_array] for i in range(0, len(members), max_array)]
        array_deps = _array_dependencies(chunks, where, step_jobs, jobs) if arrays and len(members) > 1 \
            and same_header(members) else None
        step_jobs[step] = []
        if array_deps is not None:
            for number, chunk in enumerate(chunks):
                job = Job(len(jobs), step, tuple(chunk), True, number, array_deps[number])
                jobs.append(job)
                step_jobs[step].append(job.index)
                for task, node in enumerate(chunk):
                    where[node.name] = (job.index, task)
            continue
        for node in members:
            job = Job(len(jobs), step, (node,), False, 0, _single_dependencies(node, where, jobs))
            jobs.append(job)
            step_jobs[step].append(job.index)
            where[node.name] = (job.index, -1)
    return tuple(jobs)


def _single_dependencies(node: Node, where, jobs) -> Tuple[Dependency, ...]:
    """afterok on each parent; a parent array whose every task is a parent counts as one job."""
    tasks: Dict[int, set] = {}
    for parent in node.depends:
        job_index, task = where[parent]
        tasks.setdefault(job_index, set()).add(task)
    deps = []
    for job_index, wanted in tasks.items():
        if -1 in wanted or len(wanted) == len(jobs[job_index].nodes):
            deps.append(Dependency(job_index, "afterok"))
        else:
            deps += [Dependency(job_index, "afterok", task) for task in wanted]
    return tuple(sorted(deps, key=_dep_key))


def _dep_key(dep: Dependency):
    return (dep.job, dep.kind, -1 if dep.task is None else dep.task)


def _array_dependencies(chunks, where, step_jobs, jobs) -> Optional[List[Tuple[Dependency, ...]]]:
    """Dependencies per chunk if the step can be arrays, else None."""
    result = []
    for chunk in chunks:
        parent_steps: Dict[str, List[set]] = {}
        for position, node in enumerate(chunk):
            for parent in node.depends:
                step = jobs[where[parent][0]].step
                if step not in parent_steps:  # not setdefault: its default would be built per node
                    parent_steps[step] = [set() for _ in chunk]
                parent_steps[step][position].add(parent)
        deps = []
        for step, per_task in parent_steps.items():
            if any(not parents for parents in per_task):
                return None  # only some tasks depend on this step
            whole = {node.name for j in step_jobs[step] for node in jobs[j].nodes}
            if all(parents == whole for parents in per_task):
                deps += [Dependency(j, "afterok") for j in step_jobs[step]]
                continue
            corr = _corresponding(per_task, where, jobs)
            if corr is None:
                return None
            deps.append(Dependency(corr, "aftercorr"))
        result.append(tuple(sorted(set(deps), key=_dep_key)))
    return result


def _corresponding(per_task: List[set], where, jobs) -> Optional[int]:
    """The parent array whose task i is the only parent of task i, if there is one."""
    if any(len(parents) != 1 for parents in per_task):
        return None
    placed = [where[next(iter(parents))] for parents in per_task]
    job_index = placed[0][0]
    if not jobs[job_index].array or len(jobs[job_index].nodes) != len(per_task):
        return None
    if any(p != (job_index, task) for task, p in enumerate(placed)):
        return None
    return job_index
