"""The data that flows between the passes: plain frozen dataclasses, no behaviour."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from .load import RawSpec


@dataclass(frozen=True)
class GitDependency:
    name: str
    path: str
    url: str
    tag: Optional[str] = None
    branch: Optional[str] = None
    hash: Optional[str] = None


@dataclass(frozen=True)
class StepSpec:
    """One entry of the ``study`` list, as written (tokens not yet substituted)."""

    index: int
    name: str
    description: str
    run: Mapping[str, Any]


@dataclass(frozen=True)
class Spec:
    """A validated specification (output of the validate pass)."""

    raw: RawSpec
    name: str
    description: str
    variables: Tuple[Tuple[str, Any], ...]          # env.variables + env.labels, YAML order
    path_dependencies: Tuple[Tuple[str, str], ...]  # (name, path)
    git_dependencies: Tuple[GitDependency, ...]
    batch: Mapping[str, Any]
    steps: Tuple[StepSpec, ...]
    parameters: Mapping[str, Mapping[str, Any]]     # global.parameters as written

    @property
    def path(self) -> Path:
        return self.raw.path


@dataclass(frozen=True)
class Parameter:
    """One parameter of the sweep: its values, one label per value, and its name."""

    key: str
    values: Tuple[Any, ...]
    labels: Tuple[str, ...]
    name: str


@dataclass(frozen=True)
class Node:
    """One concrete job: a step instantiated for one parameter combination."""

    # a 100,000-point sweep holds 300,000 of these: no per-instance __dict__
    __slots__ = ("name", "step", "job_name", "workspace", "script", "params", "depends", "description",
                 "cmd", "restart", "resources", "walltime")

    name: str                      # Maestro's node name, e.g. hello_GREETING.Hello.NAME.Pam
    step: str
    job_name: str                  # name used for files and the scheduler (node name or hashws nickname)
    workspace: str                 # relative to the study directory
    script: str                    # relative to the study directory
    params: Mapping[str, str]      # parameter key -> value as a string
    depends: Tuple[str, ...]       # parent node names, sorted
    description: str
    cmd: str                       # fully substituted except $(LAUNCHER)
    restart: Optional[str]
    resources: Mapping[str, Any]   # the step's run keys other than cmd/restart/depends, substituted
    walltime: Optional[int]        # run.walltime read once (walltime.parse): seconds, None = no limit


@dataclass(frozen=True)
class Study:
    """The expanded study: every node, in a topological order (parents first)."""

    spec: Spec
    directory: Path                # absolute final study directory
    backend: str
    nodes: Tuple[Node, ...]
    used_parameters: Mapping[str, Tuple[str, ...]]   # step -> parameter keys it is expanded over
    warnings: Tuple[str, ...] = ()
    extra_files: Mapping[str, str] = field(default_factory=dict)  # relpath -> source file to copy
    options: Mapping[str, Any] = field(default_factory=dict)      # backend options (throttle, ...)
    environment: Mapping[str, str] = field(default_factory=dict)  # env names -> final text
    identity: str = ""             # random per compile: tags the study's scheduler jobs

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


@dataclass(frozen=True)
class File:
    """A rendered file of the study directory."""

    text: str
    executable: bool = False


@dataclass(frozen=True)
class Rendered:
    """What the render pass produces, on demand: node scripts (never all in memory at once), and
    the study-level files with study.json's content (rendered by the emit pass while worker
    processes write the node scripts)."""

    node_count: int
    node_files: Callable[[int, int], Iterator[Tuple[str, File]]]  # (relpath, file) of nodes [start, stop)
    # () -> (relpath -> file: submit.sh, array scripts; study.json, whose "nodes" is a callable
    # yielding (name, entry) pairs)
    study_level: Callable[[], Tuple[Mapping[str, File], Dict[str, Any]]]


@dataclass
class Warnings:
    """Collects non-fatal findings; the CLI prints them, --strict turns some into errors."""

    messages: List[str] = field(default_factory=list)
    strict_messages: List[str] = field(default_factory=list)

    def add(self, message: str, strict: bool = False) -> None:
        (self.strict_messages if strict else self.messages).append(message)

    def all(self) -> List[str]:
        return self.messages + self.strict_messages
