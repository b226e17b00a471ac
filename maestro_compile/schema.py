"""Pass 2: validate the raw spec with voluptuous and report every problem with file and line."""
from __future__ import annotations

import difflib
import re
from typing import Any, Dict, List, Tuple

import voluptuous as vol

from .errors import SpecError
from .load import KeyPath, RawSpec, dotted
from .model import GitDependency, Spec, StepSpec, Warnings

TOKEN_PATTERN = r"^\$\(\w+\)$"
PRIORITIES = ("held", "minimal", "low", "medium", "high", "expedite", "expedited")


def _int_at_least(minimum: int):
    def check(value: Any) -> int:
        # bool is an int in Python, but `nodes: true` is a mistake, not one node
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise vol.Invalid("")
        return value
    return check


def _nonempty_str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("")
    return value


def _is_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid("")
    return value


def _number_not_bool(value: Any):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise vol.Invalid("")
    return value


def _priority(value: Any):
    if isinstance(value, str) and value.lower() in PRIORITIES:
        return value
    if not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1:
        return value
    raise vol.Invalid("")


TOKEN = vol.All(str, vol.Match(TOKEN_PATTERN))


def _exclusive(value: Any):
    # a mapping is checked on its own so that its errors keep their key path
    if isinstance(value, dict):
        return EXCLUSIVE_MAPPING(value)
    if isinstance(value, bool) or (isinstance(value, str) and re.match(TOKEN_PATTERN, value)):
        return value
    raise vol.Invalid("expected true, false, a $(TOKEN), or {allocation: bool, launcher: bool}")
NONEMPTY = vol.Any(_nonempty_str, msg="expected a non-empty string")


def _count(minimum: int) -> vol.Any:
    return vol.Any(_int_at_least(minimum), TOKEN,
                   msg=f"expected an integer >= {minimum} or a single $(TOKEN)")


def _unique_list(value: Any) -> list:
    if not isinstance(value, list):
        raise vol.Invalid("expected a list of step names, e.g. [build] or [run_*]")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise vol.Invalid(f"expected a list of step names, item {i} is {item!r}")
    duplicates = sorted({item for item in value if value.count(item) > 1})
    if duplicates:
        raise vol.Invalid(f"a step is listed twice: {', '.join(duplicates)}")
    return value


BOOL_OR_TOKEN = vol.Any(_is_bool, TOKEN, msg="expected true, false or a single $(TOKEN)")
EXCLUSIVE_MAPPING = vol.Schema({"allocation": BOOL_OR_TOKEN, "launcher": BOOL_OR_TOKEN})

RUN = vol.Schema({
    vol.Required("cmd"): NONEMPTY,
    "restart": NONEMPTY,
    "depends": _unique_list,
    "pre": NONEMPTY,
    "post": NONEMPTY,
    "nodes": _count(1),
    "procs": _count(1),
    "gpus": _count(0),
    "cores per task": _count(1),
    "tasks per rs": _count(1),
    "rs per node": _count(1),
    "cpus per rs": _count(1),
    "bind": NONEMPTY,
    "bind gpus": NONEMPTY,
    "walltime": vol.Any(_nonempty_str, _int_at_least(0),
                        msg="expected a duration such as \"01:30:00\", minutes as an integer, or a $(TOKEN)"),
    "reservation": NONEMPTY,
    "qos": NONEMPTY,
    "exclusive": _exclusive,
    "nested": vol.Any(_is_bool, msg="expected true or false"),
    "waitable": vol.Any(_is_bool, msg="expected true or false"),
    "bundle": vol.Any(_int_at_least(1), msg="expected an integer >= 1: how many nodes of the step one job runs "
                                            "(our extension, docs/big-sweeps.md)"),
    "priority": vol.Any(_priority, msg="expected one of held, minimal, low, medium, high, expedite "
                                       "(any case) or a number from 0.0 to 1.0"),
})

STEP = vol.Schema({
    vol.Required("name"): NONEMPTY,
    vol.Required("description"): NONEMPTY,
    vol.Required("run"): RUN,
})

DESCRIPTION = vol.Schema({
    vol.Required("name"): NONEMPTY,
    vol.Required("description"): NONEMPTY,
}, extra=vol.ALLOW_EXTRA)

PATH_DEP = vol.Schema({vol.Required("name"): NONEMPTY, vol.Required("path"): NONEMPTY})
GIT_DEP = vol.Schema({vol.Required("name"): NONEMPTY, vol.Required("path"): NONEMPTY,
                      vol.Required("url"): NONEMPTY, "tag": NONEMPTY, "branch": NONEMPTY,
                      "hash": NONEMPTY})

ENV_BLOCKS = {
    "variables": vol.Schema({str: vol.Any(_nonempty_str, _number_not_bool,
                                          msg="expected a non-empty string or a number")}),
    "labels": vol.Schema({str: object}),
    "sources": vol.Schema(list),
    "dependencies": vol.Schema({"paths": [PATH_DEP], "git": [GIT_DEP], "spack": dict}),
}
ENV = vol.Schema({key: object for key in ENV_BLOCKS})

PARAM = vol.Schema({
    vol.Required("values"): vol.Any(list, msg="expected a list of values"),
    vol.Required("label"): NONEMPTY,
})

KNOWN_KEYS: Dict[str, Tuple[str, ...]] = {
    "top": ("description", "env", "batch", "study", "global.parameters", "global.combine"),
    "env": ("variables", "labels", "sources", "dependencies"),
    "env.dependencies": ("paths", "git", "spack"),
    "env.dependencies.paths": ("name", "path"),
    "env.dependencies.git": ("name", "path", "url", "tag", "branch", "hash"),
    "study": ("name", "description", "run"),
    "study.run": tuple(str(k) for k in RUN.schema),
    "study.run.exclusive": ("allocation", "launcher"),
    "global.parameters": ("values", "label"),
    "batch": ("type", "shell", "host", "bank", "queue", "nodes", "procs", "reservation", "qos",
              "gpus", "version", "uri", "flux_uri", "allocation_args", "launcher_args", "args",
              "launcher", "max_dependencies"),
}


def _block_of(path: KeyPath) -> str:
    """The KNOWN_KEYS entry that lists the keys allowed at ``path``."""
    names = [p for p in path if not isinstance(p, int)]
    if not names:
        return "top"
    if names[0] == "global.parameters":
        return "global.parameters"
    if names[0] == "study":
        return ".".join(["study"] + names[1:])
    return ".".join(names)


def _value_at(data: Any, path: KeyPath) -> Tuple[bool, Any]:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, data


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if value is None:
        return "nothing (null)"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    kind = {str: "a string", int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def suggest(word: str, choices) -> str:
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _explain(raw: RawSpec, base: KeyPath, error: vol.Invalid) -> Tuple[int, str]:
    path = tuple(base) + tuple(error.path)
    where = raw.where(path)
    label = dotted(path)
    message = error.error_message or ""
    if message == "extra keys not allowed":
        key = path[-1]
        allowed = KNOWN_KEYS.get(_block_of(path[:-1]), ())
        return raw.line_of(path), (f"{where}: {label}: unknown key '{key}' (allowed here: "
                                   f"{', '.join(allowed)}){suggest(key, allowed)}")
    if message == "required key not provided":
        return raw.line_of(path[:-1]), f"{raw.where(path[:-1])}: {dotted(path[:-1]) or 'top level'}: missing required key '{path[-1]}'"
    found, value = _value_at(raw.data, path)
    message = {"expected dict": "expected a mapping", "expected a dictionary": "expected a mapping",
               "expected list": "expected a list", "expected str": "expected a string"}.get(message, message)
    found_text = f", found {_describe(value)}" if found else ""
    return raw.line_of(path), f"{where}: {label}: {message or 'invalid value'}{found_text}"


def _check(raw: RawSpec, schema: vol.Schema, base: KeyPath, problems: List[Tuple[int, str]]) -> None:
    found, value = _value_at(raw.data, base)
    if not found:
        return
    try:
        schema(value)
    except vol.MultipleInvalid as exc:
        for error in exc.errors:
            problems.append(_explain(raw, base, error))
    except vol.Invalid as exc:
        problems.append(_explain(raw, base, exc))


def _expect_mapping(raw: RawSpec, key: str, problems, required: bool) -> bool:
    if key not in raw.data:
        if required:
            problems.append((1, f"{raw.path}: missing required top-level key '{key}'"))
        return False
    if not isinstance(raw.data[key], dict):
        problems.append((raw.line_of((key,)), f"{raw.where((key,))}: {key}: expected a mapping, "
                         f"found {_describe(raw.data[key])}"))
        return False
    return True


def validate(raw: RawSpec, warnings: Warnings, cartesian: bool = False) -> Spec:
    """Check ``raw`` against the Maestro schema; raise SpecError listing every problem."""
    problems: List[Tuple[int, str]] = []
    data = raw.data
    for key in data:
        if key not in KNOWN_KEYS["top"]:
            warnings.add(f"{raw.where((key,))}: unknown top-level key '{key}' is ignored"
                         f"{suggest(key, KNOWN_KEYS['top'])}")
    if _expect_mapping(raw, "description", problems, required=True):
        _check(raw, DESCRIPTION, ("description",), problems)
    if data.get("env") is not None and _expect_mapping(raw, "env", problems, required=False):
        _check(raw, ENV, ("env",), problems)
        for key, schema in ENV_BLOCKS.items():
            if raw.data["env"].get(key) is not None:
                _check(raw, schema, ("env", key), problems)
    if data.get("batch") is not None and _expect_mapping(raw, "batch", problems, required=False):
        _check_batch(raw, problems, warnings)
    _check_study(raw, problems)
    if data.get("global.parameters") is not None and _expect_mapping(raw, "global.parameters", problems, False):
        _check_parameters(raw, problems, cartesian or raw.data.get("global.combine") == "cartesian")
    combine = raw.data.get("global.combine", "zip")
    if combine not in ("zip", "cartesian"):
        problems.append((raw.line_of(("global.combine",)), f"{raw.where(('global.combine',))}: global.combine: "
                         f"expected 'zip' (Maestro's row-by-row pairing) or 'cartesian', found {_describe(combine)}"))
    if not problems:
        _check_names(raw, problems)
    if problems:
        raise SpecError([text for _, text in sorted(problems, key=lambda p: p[0])])
    return _build_spec(raw)


def _check_batch(raw: RawSpec, problems, warnings: Warnings) -> None:
    batch = raw.data["batch"]
    for key in batch:
        if key not in KNOWN_KEYS["batch"]:
            warnings.add(f"{raw.where(('batch', key))}: batch.{key}: unknown batch key is ignored"
                         f"{suggest(key, KNOWN_KEYS['batch'])}")
    from .backends import BACKENDS   # the registry (here: the backends import this module)
    kind = batch.get("type", "local")
    if kind not in BACKENDS:
        problems.append((raw.line_of(("batch", "type")),
                         f"{raw.where(('batch', 'type'))}: batch.type: unknown scheduler {kind!r} "
                         f"(expected one of {', '.join(BACKENDS)}){suggest(kind, list(BACKENDS))}"))
    for key in ("shell", "host", "bank", "queue", "reservation", "qos", "uri", "version"):
        if key in batch and not isinstance(batch[key], (str, int, float)):
            problems.append((raw.line_of(("batch", key)), f"{raw.where(('batch', key))}: batch.{key}: "
                             f"expected a string, found {_describe(batch[key])}"))
    if "max_dependencies" in batch:   # extension (Flux): the most afterok dependencies of one job
        value = batch["max_dependencies"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            problems.append((raw.line_of(("batch", "max_dependencies")),
                             f"{raw.where(('batch', 'max_dependencies'))}: batch.max_dependencies: expected a whole "
                             f"number of at least 2, found {_describe(value)}"))
    # extension: the parallel launcher of $(LAUNCHER), for the backends that offer a choice
    if "launcher" in batch:
        _check_launcher(raw, batch, BACKENDS, problems)


def _check_launcher(raw: RawSpec, batch, backends, problems) -> None:
    """batch.launcher: one of batch.type's launchers; with another type (the spec may be compiled
    with --backend), one of any backend's."""
    own = getattr(backends.get(batch.get("type", "local")), "launchers", ())
    offered = [(b.scheduler, b.launchers) for b in backends.values() if b.launchers]
    allowed = own or tuple(name for _, names in offered for name in names)
    if batch["launcher"] in allowed:
        return
    if own:
        expected = f"{' or '.join(own)} ({backends[batch['type']].scheduler})"
    else:
        expected = "; ".join(f"{' or '.join(names)} ({scheduler})" for scheduler, names in offered)
    problems.append((raw.line_of(("batch", "launcher")), f"{raw.where(('batch', 'launcher'))}: batch.launcher: "
                     f"expected {expected}, found {_describe(batch['launcher'])}"))


def _check_study(raw: RawSpec, problems) -> None:
    study = raw.data.get("study")
    if not study:
        problems.append((raw.line_of(("study",)) or 1,
                         f"{raw.where(('study',))}: study: a study specification must contain at "
                         f"least one step in its 'study' list"))
        return
    if not isinstance(study, list):
        problems.append((raw.line_of(("study",)), f"{raw.where(('study',))}: study: expected a list "
                         f"of steps, found {_describe(study)}"))
        return
    for index, step in enumerate(study):
        if not isinstance(step, dict):
            problems.append((raw.line_of(("study", index)), f"{raw.where(('study', index))}: "
                             f"study[{index}]: expected a step (name, description, run), found "
                             f"{_describe(step)}"))
            continue
        _check(raw, STEP, ("study", index), problems)


def _check_parameters(raw: RawSpec, problems, cartesian: bool) -> None:
    params = raw.data["global.parameters"]
    lengths = {}
    for key, value in params.items():
        path = ("global.parameters", key)
        if not isinstance(value, dict):
            problems.append((raw.line_of(path), f"{raw.where(path)}: {dotted(path)}: expected a mapping "
                             f"with 'values' and 'label', found {_describe(value)}"))
            continue
        before = len(problems)
        _check(raw, PARAM, path, problems)
        if len(problems) == before:
            lengths[key] = len(value["values"])
    if len(set(lengths.values())) > 1 and not cartesian:
        first = next(iter(lengths))
        for key, length in lengths.items():
            if length != lengths[first]:
                path = ("global.parameters", key, "values")
                problems.append((raw.line_of(path), f"{raw.where(path)}: global.parameters.{key}.values: "
                                 f"has {length} values but {first} has {lengths[first]}; parameters are "
                                 f"combined row by row, so every 'values' list must have the same length"))


def _check_names(raw: RawSpec, problems) -> None:
    """Duplicate names and the shape of ``depends`` (the schema cannot see across entries)."""
    env = raw.data.get("env") or {}
    seen: Dict[str, KeyPath] = {}
    blocks = [("variables", env.get("variables") or {}), ("labels", env.get("labels") or {})]
    deps = env.get("dependencies") or {}
    for kind in ("paths", "git"):
        blocks.append((kind, {d["name"]: d for d in deps.get(kind) or []}))
    for block, entries in blocks:
        for index, name in enumerate(entries):
            path = ("env", block, name) if block in ("variables", "labels") else \
                   ("env", "dependencies", block, index, "name")
            if name in seen:
                problems.append((raw.line_of(path), f"{raw.where(path)}: {dotted(path)}: the name "
                                 f"'{name}' is already defined at {dotted(seen[name])} (line "
                                 f"{raw.line_of(seen[name])}); env names must be unique"))
            else:
                seen[name] = path
    steps: Dict[str, int] = {}
    for index, step in enumerate(raw.data["study"]):
        name = step["name"]
        path = ("study", index, "name")
        if name in steps:
            problems.append((raw.line_of(path), f"{raw.where(path)}: study[{index}].name: duplicate "
                             f"step name '{name}' (first defined at study[{steps[name]}], line "
                             f"{raw.line_of(('study', steps[name], 'name'))})"))
            continue
        for j, dep in enumerate(step["run"].get("depends") or []):
            _check_dependency(raw, index, j, dep, steps, problems)
        steps[name] = index


def _check_dependency(raw: RawSpec, index: int, j: int, dep: str, earlier: Dict[str, int], problems) -> None:
    path = ("study", index, "run", "depends", j)
    name = raw.data["study"][index]["name"]
    if "$(" in dep or "$(" in name:
        return  # names built from env tokens are checked once substituted (expand)
    target = dep[:-2] if dep.endswith("_*") else dep.rstrip("*") if dep.endswith("*") else dep
    all_steps = {s.get("name"): i for i, s in enumerate(raw.data["study"])}
    if target == name:
        problems.append((raw.line_of(path), f"{raw.where(path)}: {dotted(path)}: step '{name}' "
                         f"depends on itself (a cycle: {name} -> {name})"))
    elif target in earlier:
        return
    elif target in all_steps:
        problems.append((raw.line_of(path), f"{raw.where(path)}: {dotted(path)}: step '{name}' "
                         f"depends on '{target}', which is defined later (study[{all_steps[target]}]); "
                         f"list steps after the steps they depend on"))
    else:
        problems.append((raw.line_of(path), f"{raw.where(path)}: {dotted(path)}: unknown step "
                         f"'{target}'{suggest(target, all_steps)}"))


def _build_spec(raw: RawSpec) -> Spec:
    data = raw.data
    env = data.get("env") or {}
    variables = list((env.get("variables") or {}).items())
    variables += [(k, v) for k, v in (env.get("labels") or {}).items()]
    deps = env.get("dependencies") or {}
    steps = tuple(StepSpec(index=i, name=s["name"], description=s["description"], run=dict(s["run"]))
                  for i, s in enumerate(data["study"]))
    return Spec(
        raw=raw,
        name=data["description"]["name"],
        description=data["description"]["description"],
        variables=tuple(variables),
        path_dependencies=tuple((d["name"], d["path"]) for d in deps.get("paths") or []),
        git_dependencies=tuple(GitDependency(**d) for d in deps.get("git") or []),
        batch=dict(data.get("batch") or {}),
        steps=steps,
        parameters=dict(data.get("global.parameters") or {}),
    )
