"""The study environment (env variables, labels, dependencies) and $(TOKEN) substitution."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .errors import CompileError, SpecError
from .model import Spec, Warnings

# Any $(NAME) whose NAME has no spaces, parentheses or '$'; unknown names are left alone.
ENV_TOKEN = re.compile(r"\$\(([^()$\s]+)\)")
# Maestro's $(step.workspace) pattern (step names may contain most punctuation).
WORKSPACE_TOKEN = re.compile(r"\$\(([-!$%^&*()_+|~=`{}\[\]:;<>?,./\w]+?)\.workspace\)")
LAUNCHER_TOKEN = re.compile(r"\$\(LAUNCHER\)(?:\[([^\]\n]*)\])?")
# What still looks like a Maestro token after substitution (see unknown_tokens).
LEFTOVER_TOKEN = re.compile(r"\$\(([A-Za-z_]\w*(?:\.\w+)?)\)")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``$(NAME)`` whose NAME is in ``values``; leave the rest verbatim."""
    if "$(" not in text:
        return text
    return ENV_TOKEN.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def substitute_all(value: Any, values: Mapping[str, str]) -> Any:
    """``substitute`` applied to every string inside lists and mappings."""
    if isinstance(value, str):
        return substitute(value, values)
    if isinstance(value, list):
        return [substitute_all(item, values) for item in value]
    if isinstance(value, dict):
        return {key: substitute_all(item, values) for key, item in value.items()}
    return value


def env_block(spec: Spec, name: str) -> str:
    """``variables`` or ``labels``: the env block that defines ``name``."""
    env = spec.raw.data.get("env") or {}
    return "variables" if name in (env.get("variables") or {}) else "labels"


def _resolve(names: List[Tuple[str, str]], fixed: Mapping[str, str], spec: Spec) -> Dict[str, str]:
    """Resolve variables that refer to each other, in any order.

    Maestro substitutes in one fixed order, so a label that uses a label defined *before* it
    stays literal (and bash later runs it as a command). We resolve to a fixed point instead
    and report a cycle between two or more variables as an error.

    A variable's own token in its value (``OBJECTIVE: $(OBJECTIVE)``) is left as is, as Maestro's
    single replacement leaves it: it is for the later passes, typically a parameter of that name.
    """
    raw = dict(names)
    resolved: Dict[str, str] = dict(fixed)
    visiting: List[str] = []

    def resolve(name: str) -> str:
        if name in resolved:
            return resolved[name]
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            block = env_block(spec, name)
            line = spec.raw.where(("env", block, name))
            raise SpecError([f"{line}: env.{block}.{name}: variables refer to each other in a cycle: {cycle}"])

        def value(match: "re.Match[str]") -> str:
            token = match.group(1)
            if token == name or (token not in raw and token not in resolved):
                return match.group(0)   # its own name, or no variable's: left for the later passes
            return resolve(token)

        visiting.append(name)
        text = ENV_TOKEN.sub(value, raw[name])
        visiting.pop()
        resolved[name] = text
        return text

    for name, _ in names:
        resolve(name)
    return resolved


def spec_root(spec: Spec) -> str:
    return str(spec.path.resolve().parent)


def output_parent(spec: Spec) -> Path:
    """Where timestamped study directories go: OUTPUT_PATH (relative to the spec) or the CWD."""
    variables = dict(spec.variables)
    if "OUTPUT_PATH" not in variables:
        return Path.cwd()
    names = [(k, str(v)) for k, v in spec.variables if k != "OUTPUT_PATH"]
    resolved = _resolve(names + [("OUTPUT_PATH", str(variables["OUTPUT_PATH"]))],
                        {"SPECROOT": spec_root(spec)}, spec)
    return Path(spec_root(spec), os.path.expanduser(resolved["OUTPUT_PATH"]))


def build_environment(spec: Spec, study_dir: Path, warnings: Warnings) -> Dict[str, str]:
    """Every env name with its final text value, plus OUTPUT_PATH and SPECROOT."""
    fixed = {"OUTPUT_PATH": str(study_dir), "SPECROOT": spec_root(spec)}
    names = [(k, str(v)) for k, v in spec.variables if k != "OUTPUT_PATH"]
    env = _resolve(names, fixed, spec)
    for name, path in spec.path_dependencies:
        env[name] = _path_dependency(spec, name, substitute(path, env))
    for dep in spec.git_dependencies:
        env[dep.name] = str(Path(spec_root(spec), substitute(dep.path, env), dep.name))
    return env


def _path_dependency(spec: Spec, name: str, path: str) -> str:
    absolute = Path(spec_root(spec), os.path.expanduser(path))
    if not absolute.exists():
        index = [n for n, _ in spec.path_dependencies].index(name)
        key = ("env", "dependencies", "paths", index, "path")
        raise SpecError([f"{spec.raw.where(key)}: env.dependencies.paths[{index}].path: the path "
                         f"'{path}' of dependency '{name}' does not exist (looked for {absolute})"])
    return str(absolute)


def clone_git_dependencies(spec: Spec, env: Mapping[str, str], study_dir: Path, staging_dir: Path) -> List[Path]:
    """Clone every git dependency; returns clones made outside the study dir (for rollback).

    Destinations inside the final study directory are cloned into the staging directory,
    which becomes the study directory once everything has been written.
    """
    made_outside: List[Path] = []
    for index, dep in enumerate(spec.git_dependencies):
        final = Path(env[dep.name])
        try:
            target = staging_dir / final.relative_to(study_dir)
        except ValueError:
            target = final
        where = spec.raw.where(("env", "dependencies", "git", index))
        if target.exists():
            raise CompileError(f"{where}: git dependency '{dep.name}': {final} already exists; "
                               f"remove it or choose another path (it is never overwritten)")
        url = substitute(dep.url, env)
        _git(["git", "clone", "--quiet", url, str(target)], where, dep.name, (str(target), str(final)))
        if target == final:
            made_outside.append(target)
        revision = dep.hash or (f"tags/{dep.tag}" if dep.tag else None) or dep.branch
        if revision:
            _git(["git", "-C", str(target), "checkout", "--quiet", revision], where, dep.name,
                 (str(target), str(final)))
    return made_outside


def _git(argv: List[str], where: str, name: str, shown: Tuple[str, str]) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CompileError(f"{where}: git dependency '{name}' needs git, which is not installed") from None
    if result.returncode != 0:
        # the user knows the final study path, not our hidden staging directory
        command = " ".join(argv).replace(*shown)
        detail = (result.stderr.strip() or result.stdout.strip()).replace(*shown)
        raise CompileError(f"{where}: git dependency '{name}': {command} failed: {detail}")


def unknown_tokens(text: str, known_names: Iterable[str]) -> List[str]:
    """Tokens left in a command that are probably typos rather than shell command substitution.

    ``$(date)`` or ``$(hostname)`` are ordinary bash; Maestro tokens are conventionally upper
    case or dotted. So a leftover counts as unknown if it has an upper-case letter or a dot,
    or if it names something the spec defines (a step, a parameter).
    """
    known = set(known_names)
    found = []
    for match in LEFTOVER_TOKEN.finditer(text):
        name = match.group(1)
        if name == "LAUNCHER":
            continue
        if any(c.isupper() for c in name) or "." in name or name.split(".")[0] in known:
            if name not in found:
                found.append(name)
    return found


def find_workspace_refs(text: Optional[str]) -> List[str]:
    return list(dict.fromkeys(WORKSPACE_TOKEN.findall(text or "")))
