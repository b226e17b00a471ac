"""`maestro resubmit`: submit again the nodes that failed, timed out or were cancelled, and every
node below them, with the scheduler's own dependencies; nodes that finished are kept as they are.

The work is done by a plain bash script, .maestro/resubmit-<K>.sh, which this module selects the
nodes for, renders (through the study's backend) and runs, like `maestro submit` runs submit.sh.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Set

from . import runner
from .backends import get_backend
from .errors import StudyDirError, SubmitError
from .schema import suggest
from .states import ENDED, RERUN, Runtime, State
from .status import NodeStatus, collect
from .studydir import Manifest, StudyDir

SHOWN = 10                   # node names listed in a message before "and N more"


@dataclass
class Selection:
    names: List[str]          # the nodes to resubmit, in manifest (topological) order
    seeds: Set[str]           # those that failed, timed out or were cancelled themselves
    states: Dict[str, State]  # every node's current state


def resubmit(study_dir: Path, only: Sequence[str] = (), dry: bool = False, jobs: int = 1) -> str:
    """Resubmit (or with ``dry`` only describe) what needs to run again; return what to tell the user."""
    study = StudyDir.open(Path(study_dir))
    backend = get_backend(study.manifest.backend)
    _check_no_lock(study)
    size = study.ledger_size()   # before reading states: an append after it makes the script refuse
    rows, runtime = collect(study, backend)
    if not runtime.submitted:
        raise StudyDirError(f"{study.path}: the study has not been submitted yet; use `maestro submit {study.path}`")
    _check_idle(rows, runtime, backend)
    selection = select(study.manifest, rows, only)
    if not selection.names:
        return _nothing(only)
    if dry:
        plan = backend.resubmit_plan(study, selection.names)
        return (describe(selection, study.manifest) + (f"\n{plan}" if plan else "")
                + "\n--dry: nothing was written or submitted")
    number, path = study.next_resubmit_script()
    layout = {"study_name": study.manifest.name, "number": number, "created": _now(), "ledger_size": size,
              "node_count": len(selection.names), "counts": _counts(selection), "jobs_limit": jobs,
              "logs": [study.manifest.nodes[name].log for name in selection.names]}
    study.write_new(path, backend.render_resubmit(study, selection.names, layout))
    output = runner.run_script(path, study.path, ledger=study.ledger_path, env=_env(backend, study))
    return f"{describe(selection, study.manifest)}\n{output}\nthe resubmission script is {path}"


def _env(backend, study: StudyDir):
    command_env = getattr(backend, "command_env", None)
    return command_env(study) if command_env else None


# --- checks ---

def _check_no_lock(study: StudyDir) -> None:
    lock = study.resubmit_locked()
    if lock:
        raise SubmitError(f"another resubmission of {study.path} is running (lock {lock}); "
                          f"if none is, remove that file and try again")


def _check_idle(rows: Sequence[NodeStatus], runtime: Runtime, backend) -> None:
    """Refuse while anything of the study may still run: its jobs would race the new ones."""
    busy = [row for row in rows
            if row.state not in ENDED or (row.state == State.UNKNOWN and backend.may_still_run(row.name, runtime))]
    if busy:
        listed = _names(f"{row.name} ({row.state})" for row in busy)
        raise SubmitError(f"cannot resubmit while {len(busy)} node(s) of the study are still pending or running: "
                          f"{listed}; wait until they end, or stop them with `maestro cancel`")
    activity = backend.activity(runtime)
    if activity:
        raise SubmitError(f"cannot resubmit: {activity}; wait until it ends, or stop it with `maestro cancel`")


# --- selection ---

def select(manifest: Manifest, rows: Sequence[NodeStatus], only: Sequence[str] = ()) -> Selection:
    """Seeds (nodes in a RERUN state, narrowed by ``only``) and every descendant of them."""
    states = {row.name: row.state for row in rows}
    seeds = [row.name for row in rows if row.state in RERUN]
    if only:
        wanted = _check_only(manifest, only)
        seeds = [name for name in seeds if name in wanted or manifest.nodes[name].step in wanted]
    chosen = descendants(manifest, seeds)
    names = [name for name in manifest.nodes if name in chosen]
    _check_parents(manifest, names, chosen, states)
    return Selection(names=names, seeds=set(seeds), states=states)


def descendants(manifest: Manifest, seeds: Iterable[str]) -> Set[str]:
    """``seeds`` and every node below them: one pass to build the child lists, one walk (linear)."""
    children: Dict[str, List[str]] = {}
    for name, info in manifest.nodes.items():
        for parent in info.depends:
            children.setdefault(parent, []).append(name)
    chosen = set(seeds)
    stack = list(chosen)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in chosen:
                chosen.add(child)
                stack.append(child)
    return chosen


def _check_only(manifest: Manifest, only: Sequence[str]) -> Set[str]:
    nodes = manifest.nodes
    steps = {info.step for info in nodes.values()}
    for text in only:
        if text not in nodes and text not in steps:
            raise SubmitError(f"--only {text}: no step or node of this study is called '{text}'"
                              f"{suggest(text, sorted(steps) + list(nodes))} (steps: {', '.join(sorted(steps))})")
    return set(only)


def _check_parents(manifest: Manifest, names: Sequence[str], chosen: Set[str], states: Dict[str, State]) -> None:
    """A resubmitted node waits only for resubmitted parents, so every other parent must have finished.
    Only --only can leave one out; running the node then would run it without its inputs."""
    problems: Dict[str, str] = {}
    for name in names:
        for parent in manifest.nodes[name].depends:
            if parent not in chosen and states[parent] != State.FINISHED and parent not in problems:
                problems[parent] = f"{parent} ({states[parent]}, parent of {name})"
    if problems:
        raise SubmitError(f"--only leaves out {len(problems)} node(s) that did not finish but are parents of "
                          f"selected ones: {_names(problems.values())}; add them with --only (e.g. --only "
                          f"{next(iter(problems))}) or leave --only out")


# --- output ---

def describe(selection: Selection, manifest: Manifest) -> str:
    """The selection grouped by step, with counts; every node with its current state."""
    by_step: Dict[str, List[str]] = {}
    for name in selection.names:
        by_step.setdefault(manifest.nodes[name].step, []).append(name)
    kept = sum(1 for state in selection.states.values() if state == State.FINISHED)
    lines = [f"resubmitting {len(selection.names)} node(s) of {len(by_step)} step(s) ({_counts(selection)}); "
             f"{kept} finished node(s) are kept"]
    for step, names in by_step.items():
        lines.append(f"  {step}: {len(names)} node(s)")
        lines += [f"    {name}  ({selection.states[name]})" for name in names]
    return "\n".join(lines)


def _counts(selection: Selection) -> str:
    """"2 FAILED, 5 CANCELLED": the selected nodes by state, most frequent first."""
    counts: Dict[str, int] = {}
    for name in selection.names:
        state = str(selection.states[name])
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _nothing(only: Sequence[str]) -> str:
    if only:
        return f"nothing to resubmit: no node selected by --only {' '.join(only)} failed, timed out or was cancelled"
    return "nothing to resubmit: every node of the study finished"


def _names(items: Iterable[str]) -> str:
    items = list(items)
    text = ", ".join(items[:SHOWN])
    return text + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")
