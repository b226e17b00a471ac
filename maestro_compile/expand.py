"""Pass 3: expand steps over parameter combinations into nodes (Maestro's staging rules).

The rules (maestro_reference.md §3): a step is expanded over the parameters it mentions plus
those of its regular parents and of the steps whose workspace it references; a funnel
dependency (``step_*``) waits for every instance and passes no parameters on. Node names are
``step_`` + the labels of the used parameters sorted by key, joined with '.'.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from . import studydir
from . import walltime as walltimes
from .errors import SpecError
from .model import Node, Parameter, Spec, StepSpec, Warnings
from .schema import suggest
from .tokens import (LAUNCHER_TOKEN, WORKSPACE_TOKEN, env_block, find_workspace_refs, substitute_all,
                     unknown_tokens)

COUNT_KEYS = {"nodes": 1, "procs": 1, "gpus": 0, "cores per task": 1, "tasks per rs": 1,
              "rs per node": 1, "cpus per rs": 1}
TEXT_KEYS = ("cmd", "restart")
# Workspace layout: Maestro puts every combination of a step in the step's directory. Above
# FLAT_LIMIT combinations ("auto"), or always ("sharded"), they go into subdirectories of
# SHARD_SIZE consecutive combinations instead, e.g. simulate/01000-01999/X.1234, so that no
# directory of a huge sweep holds 100,000 entries.
LAYOUTS = ("auto", "flat", "sharded")
FLAT_LIMIT = 10_000
SHARD_SIZE = 1_000
RESERVED_NAMES = {studydir.MANIFEST, studydir.SUBMIT_SCRIPT, studydir.LOCAL_RUNNER, studydir.LEDGER, studydir.STATE_DIR,
                  "status.csv", "logs", "meta"}
MAX_NAME_BYTES = 255     # one path component (NAME_MAX on Linux file systems)
SHOWN_CHARS = 80         # of a value quoted in a message


def capped(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` for a message: at most ``limit`` characters, and says how long it really was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


_SAFE = re.compile(r"[^-_.() A-Za-z0-9]")


def make_safe(text: str) -> str:
    """Maestro's make_safe_path for one path component: keep ``-_.() `` and ASCII alphanumerics."""
    return _SAFE.sub("", text).replace(" ", "_")


@dataclass
class _Step:
    spec: StepSpec
    name: str
    description: str
    run: Dict[str, Any]
    regular: List[str] = field(default_factory=list)   # parent steps passing parameters on
    funnels: List[str] = field(default_factory=list)   # parent steps waited on as a whole
    workspace_refs: List[str] = field(default_factory=list)
    used: Tuple[str, ...] = ()                          # parameter keys, sorted
    resources: Dict[str, Any] = field(default_factory=dict)        # run without cmd/restart/depends
    tokenized: Tuple[str, ...] = ()                     # the keys of run whose values hold a "$(" token
    nodes: Dict[str, Node] = field(default_factory=dict)           # combo string -> node
    node_of_row: List[str] = field(default_factory=list)           # row -> combo string
    walltimes: Dict[Any, Optional[int]] = field(default_factory=dict)  # walltime value -> seconds
    bad_walltimes: Dict[str, List[Any]] = field(default_factory=dict)  # problem -> [first node, count]


def expand(spec: Spec, env: Mapping[str, str], parameters: Sequence[Parameter], study_dir: Path,
           script_suffix: str, hashws: bool, warnings: Warnings,
           layout: str = "auto") -> Tuple[Tuple[Node, ...], Dict[str, Tuple[str, ...]]]:
    """Return every node (parents before children) and the parameters each step uses."""
    steps = [_prepare(step, env) for step in spec.steps]
    by_name = {step.name: step for step in steps}
    _check_step_names(spec, steps)
    _link(spec, steps, by_name)
    keys = [p.key for p in parameters]
    rows = len(parameters[0].values) if parameters else 0
    for step in steps:
        step.used = _used_parameters(step, by_name, keys)
    nodes: List[Node] = []
    for step in steps:
        _instantiate(step, by_name, parameters, rows, study_dir, script_suffix, hashws, layout, warnings)
        nodes.extend(step.nodes.values())
    _check_walltimes(spec, steps, nodes)
    _warn_unknown_tokens(spec, env, steps, keys, warnings)
    return tuple(nodes), {step.name: step.used for step in steps}


def _prepare(step: StepSpec, env: Mapping[str, str]) -> _Step:
    run = substitute_all(dict(step.run), env)
    tokenized = tuple(key for key, value in run.items() if any("$(" in text for text in _strings(value)))
    return _Step(spec=step, name=substitute_all(step.name, env),
                 description=substitute_all(step.description, env), run=run, resources=_resources(run),
                 tokenized=tokenized)


def _check_step_names(spec: Spec, steps: List[_Step]) -> None:
    problems = []
    for step in steps:
        bad = step.name in (".", "..") or any(c in step.name for c in "/\0\n\r\t") or step.name in RESERVED_NAMES
        path = ("study", step.spec.index, "name")
        if bad:
            problems.append(f"{spec.raw.where(path)}: study[{step.spec.index}].name: {capped(step.name)!r} cannot "
                            f"be used as a step name: it names the step's directory in the study, so it "
                            f"must not contain '/', a newline or a tab, or be one of ., .., "
                            f"{', '.join(sorted(RESERVED_NAMES))}")
        elif len(step.name.encode("utf-8")) > MAX_NAME_BYTES - 20:
            problems.append(f"{spec.raw.where(path)}: study[{step.spec.index}].name: {capped(step.name)!r} is "
                            f"{len(step.name.encode('utf-8'))} bytes long; a step name names directories and "
                            f"files, which the file system limits to {MAX_NAME_BYTES} bytes (with the script's "
                            f"suffix): shorten it")
    if problems:
        raise SpecError(problems)


def _link(spec: Spec, steps: List[_Step], by_name: Dict[str, _Step]) -> None:
    """Split depends into regular and funnel parents; check $(x.workspace) references."""
    problems = []
    seen: Set[str] = set()
    for step in steps:
        for j, dep in enumerate(step.run.get("depends") or []):
            target = re.sub(r"_\*|\*", "", dep)
            if target not in seen:
                where = spec.raw.where(("study", step.spec.index, "run", "depends", j))
                kind = "defined later" if target in by_name else f"unknown{suggest(target, by_name)}"
                problems.append(f"{where}: study[{step.spec.index}].run.depends[{j}]: step '{target}' is {kind}")
            elif "*" in dep:
                step.funnels.append(target)
            else:
                step.regular.append(dep)
        seen.add(step.name)
    if problems:
        raise SpecError(problems)
    for step in steps:
        text = "\n".join(str(step.run.get(key) or "") for key in TEXT_KEYS)
        for ref in find_workspace_refs(text):
            problem = _workspace_ref_problem(step, ref, by_name)
            if problem:
                where = spec.raw.where(("study", step.spec.index, "run", "cmd"))
                problems.append(f"{where}: study[{step.spec.index}].run.cmd: $({ref}.workspace): {problem}")
            else:
                step.workspace_refs.append(ref)
    if problems:
        raise SpecError(problems)


def _workspace_ref_problem(step: _Step, ref: str, by_name: Dict[str, _Step]) -> Optional[str]:
    if ref == step.name:
        return "a step cannot refer to its own workspace this way; use $(WORKSPACE)"
    if ref not in by_name:
        return f"there is no step named '{ref}'{suggest(ref, by_name)}"
    if ref not in _ancestors(step, by_name):
        return (f"step '{ref}' is not an ancestor of '{step.name}', so its workspace may not exist "
                f"yet when '{step.name}' runs; add '{ref}' (or a step after it) to depends")
    return None


def _ancestors(step: _Step, by_name: Dict[str, _Step]) -> Set[str]:
    seen: Set[str] = set()
    stack = list(step.regular + step.funnels)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(by_name[name].regular + by_name[name].funnels)
    return seen


def _strings(value: Any) -> List[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


def _used_parameters(step: _Step, by_name: Dict[str, _Step], keys: Sequence[str]) -> Tuple[str, ...]:
    text = "\n".join([step.name, step.description] + _strings(step.run))
    used = {key for key in keys if re.search(r"\$\(" + re.escape(key) + r"(\.\w+)?\)", text)}
    for parent in step.regular:
        used |= set(by_name[parent].used)
    for ref in step.workspace_refs:
        if ref not in step.funnels:
            used |= set(by_name[ref].used)
    return tuple(sorted(used))


def _resources(run: Mapping[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in run.items() if key not in ("cmd", "restart", "depends")}


def _row_substitution(parameters: Sequence[Parameter], used: Sequence[str], row: int) -> List[Tuple[str, str]]:
    """(token, text) pairs in Maestro's order: every label, then every value, then every name."""
    chosen = [param for param in parameters if param.key in used]
    return ([(f"$({p.key}.label)", p.labels[row]) for p in chosen]
            + [(f"$({p.key})", str(p.values[row])) for p in chosen]
            + [(f"$({p.key}.name)", p.name) for p in chosen])


def _apply(value: Any, pairs: List[Tuple[str, str]]) -> Any:
    """``value`` with the tokens replaced; the very same object when nothing changed, so the nodes
    of a step share what their parameters do not touch."""
    if isinstance(value, str):
        if "$(" in value:
            for token, text in pairs:
                value = value.replace(token, text)
        return value
    if isinstance(value, list):
        items = [_apply(item, pairs) for item in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    if isinstance(value, dict):
        items = {key: _apply(item, pairs) for key, item in value.items()}
        return value if all(items[key] is item for key, item in value.items()) else items
    return value


def _apply_to_keys(run: Dict[str, Any], keys: Sequence[str], pairs: List[Tuple[str, str]]) -> Dict[str, Any]:
    """_apply(run, pairs) that visits only ``keys`` (the other values hold no token, so _apply
    would give them back unchanged): a step's 10,000 nodes need not walk the whole run block."""
    changed = {key: _apply(run[key], pairs) for key in keys}
    if all(changed[key] is run[key] for key in keys):
        return run
    return {**run, **changed}


def _instantiate(step: _Step, by_name: Dict[str, _Step], parameters: Sequence[Parameter], rows: int,
                 study_dir: Path, suffix: str, hashws: bool, layout: str, warnings: Warnings) -> None:
    if not step.used:
        step.nodes[""] = _make_node(step, by_name, parameters, None, "", step.name, step.name, study_dir, suffix)
        return
    label_columns = [p.labels for p in sorted(parameters, key=lambda p: p.key) if p.key in step.used]
    combos = [".".join(column[row] for column in label_columns) for row in range(rows)]
    distinct = list(dict.fromkeys(combos))
    width = len(str(len(distinct) - 1))
    instance = {combo: i for i, combo in enumerate(distinct)}
    shard = layout == "sharded" or (layout == "auto" and len(distinct) > FLAT_LIMIT)
    if shard and layout == "auto":
        warnings.add(f"step '{step.name}' has {len(distinct)} parameter combinations: their workspaces are "
                     f"grouped by {SHARD_SIZE} in subdirectories ({step.name}/{_shard(0, len(distinct))}/...) "
                     f"instead of Maestro's single directory; --workspace-layout flat keeps Maestro's")
    step.node_of_row = combos
    for row, combo in enumerate(combos):
        if combo in step.nodes:
            continue  # identical combination for this step: Maestro keeps the first
        name = f"{step.name}_{combo}"
        if hashws:
            job_name = f"{step.name}_instance_{instance[combo]:0{width}d}"
            leaf = job_name
        else:
            job_name, leaf = name, make_safe(combo)
        if shard:
            leaf = f"{_shard(instance[combo], len(distinct))}/{leaf}"
        step.nodes[combo] = _make_node(step, by_name, parameters, row, combo, name, job_name, study_dir,
                                       suffix, leaf)


def _shard(index: int, total: int) -> str:
    """The subdirectory of combination ``index``: the range of SHARD_SIZE combinations it is in."""
    width = len(str(max(total - 1, SHARD_SIZE - 1)))
    low = index - index % SHARD_SIZE
    return f"{low:0{width}d}-{low + SHARD_SIZE - 1:0{width}d}"


def _parent_nodes(step: _Step, by_name: Dict[str, _Step], row: Optional[int]) -> List[str]:
    parents: List[str] = []
    for dep in step.regular:
        parent = by_name[dep]
        parents.append(parent.nodes[""].name if not parent.used else
                       parent.nodes[parent.node_of_row[row]].name)
    for dep in step.funnels:
        parents.extend(node.name for node in by_name[dep].nodes.values())
    return sorted(set(parents))


def _workspace_of(ref: _Step, step: _Step, row: Optional[int], study_dir: str) -> str:
    if ref.name in step.funnels or not ref.used:
        return os.path.join(study_dir, ref.name)
    return os.path.join(study_dir, ref.nodes[ref.node_of_row[row]].workspace)


def _make_node(step: _Step, by_name: Dict[str, _Step], parameters: Sequence[Parameter], row: Optional[int],
               combo: str, name: str, job_name: str, study_dir: Path, suffix: str, leaf: str = "") -> Node:
    pairs = _row_substitution(parameters, step.used, row) if row is not None else []
    run = _apply_to_keys(step.run, step.tokenized, pairs)
    workspace = f"{step.name}/{leaf}" if leaf else step.name
    texts = {}
    for key in TEXT_KEYS:
        text = run.get(key)
        if text is None:
            continue
        for ref in step.workspace_refs:
            text = text.replace(f"$({ref}.workspace)", _workspace_of(by_name[ref], step, row, str(study_dir)))
        if "$(WORKSPACE)" in text:
            text = text.replace("$(WORKSPACE)", os.path.join(str(study_dir), workspace))
        texts[key] = text
    resources = step.resources if run is step.run else _resources(run)
    return Node(
        name=name, step=step.name, job_name=job_name, workspace=workspace,
        script=f"{workspace}/{make_safe(job_name + suffix)}",
        params={p.key: str(p.values[row]) for p in parameters if p.key in step.used} if row is not None else {},
        depends=tuple(_parent_nodes(step, by_name, row)),
        description=_apply(step.description, pairs),
        cmd=texts["cmd"], restart=texts.get("restart"), resources=resources,
        walltime=_walltime(step, resources.get("walltime"), name),
    )


def _walltime(step: _Step, value: Any, node: str) -> Optional[int]:
    """``run.walltime`` in seconds (walltime.parse), read once per distinct value of a step; a value
    that cannot be read is recorded in ``step.bad_walltimes`` (reported by _check_walltimes)."""
    if value is None:
        return None
    cacheable = isinstance(value, (str, int))
    key = (type(value), value) if cacheable else None   # True and 1 are equal keys otherwise
    if cacheable and key in step.walltimes:
        return step.walltimes[key]
    try:
        seconds = walltimes.parse(value)
    except ValueError as exc:
        seen = step.bad_walltimes.setdefault(str(exc), [node, 0])
        seen[1] += 1
        return None
    if cacheable:
        step.walltimes[key] = seconds
    return seconds


def _check_walltimes(spec: Spec, steps: Sequence[_Step], nodes: Sequence[Node]) -> None:
    """One problem per step and unreadable walltime, naming the first node that has it; the count
    problems of check_resources are reported with them, so validate shows everything at once."""
    problems = []
    for step in (step for step in steps if step.bad_walltimes):
        index = step.spec.index
        where = spec.raw.where(("study", index, "run", "walltime"))
        for message, (first, nodes_with_it) in step.bad_walltimes.items():
            others = nodes_with_it - 1
            also = f" (and {others} other node{'s' if others > 1 else ''} of step '{step.name}')" if others else ""
            problems.append(f"{where}: study[{index}].run.walltime: node '{first}'{also}: {message}")
    if problems:
        try:
            check_resources(spec, nodes)
        except SpecError as exc:
            problems = exc.problems + problems
        raise SpecError(problems)


def _warn_unknown_tokens(spec: Spec, env: Mapping[str, str], steps: List[_Step], keys: Sequence[str],
                         warnings: Warnings) -> None:
    self_referring = {name for name, _ in spec.variables if f"$({name})" in env.get(name, "")}
    known = set(keys) | {step.name for step in steps} | self_referring
    for step in steps:
        node = next(iter(step.nodes.values()))
        for key in TEXT_KEYS:
            text = getattr(node, key)
            for token in unknown_tokens(text or "", known):
                where = spec.raw.where(("study", step.spec.index, "run", key))
                origin = (f" (the value of env.{env_block(spec, token)}.{token} is its own token, and no parameter "
                          f"{token} replaces it)" if token in self_referring else "")
                warnings.add(f"{where}: step '{step.name}': unknown token $({token}) in run.{key}{origin} is "
                             f"left as is, so bash will run it as a command substitution", strict=True)


def check_resources(spec: Spec, nodes: Sequence[Node]) -> None:
    """Counts given as $(TOKEN) must become whole numbers once substituted."""
    problems = []
    index = {step.name: step.index for step in spec.steps}
    reported = set()
    for node in nodes:
        for key, minimum in COUNT_KEYS.items():
            value = node.resources.get(key)
            if value is None or isinstance(value, int):
                continue
            text = str(value).strip()
            if text.isdigit() and int(text) >= minimum:
                continue
            if (node.step, key) in reported:
                continue
            reported.add((node.step, key))
            path = ("study", index[node.step], "run", key)
            problems.append(f"{spec.raw.where(path)}: study[{index[node.step]}].run.{key}: became "
                            f"{text!r} for node '{node.name}', expected a whole number >= {minimum}")
    if problems:
        raise SpecError(problems)


def count(value: Any) -> Optional[int]:
    """A resource count as int (after check_resources), or None when unset."""
    if value is None or value == "":
        return None
    return int(str(value).strip())


__all__ = ["expand", "make_safe", "check_resources", "count", "LAUNCHER_TOKEN", "WORKSPACE_TOKEN"]
