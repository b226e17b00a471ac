"""Pass 1: read the YAML spec, keeping the line of every key so errors can point at it."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Dict, Optional, Tuple

import yaml

from .errors import SpecError

KeyPath = Tuple[Any, ...]


@dataclass(frozen=True)
class RawSpec:
    """The spec as plain Python data plus the 1-based line of every key path.

    A spec given in memory (YAML text or a dict, through the Python API) has ``text``, the YAML
    the study directory keeps as its copy, and a ``path`` that names it in messages (TEXT_LABEL or
    DICT_LABEL): relative to the current directory, so that relative paths in it resolve there."""

    path: Path
    data: Dict[str, Any]
    lines: Dict[KeyPath, int] = field(default_factory=dict)
    text: Optional[str] = None

    @property
    def in_memory(self) -> bool:
        return self.text is not None

    @property
    def copy_name(self) -> str:
        """The file name of the spec's copy in the study directory."""
        return IN_MEMORY_COPY if self.in_memory else self.path.name

    def line_of(self, key_path: KeyPath) -> int:
        """The line of ``key_path`` or of its closest ancestor that has one (0 if none)."""
        key_path = tuple(key_path)
        while key_path:
            if key_path in self.lines:
                return self.lines[key_path]
            key_path = key_path[:-1]
        return self.lines.get((), 0)

    def where(self, key_path: KeyPath) -> str:
        """``file:line`` for an error message."""
        line = self.line_of(key_path)
        return f"{self.path}:{line}" if line else str(self.path)


class _Builder:
    """Turns a composed YAML node tree into Python data, recording positions.

    PyYAML's constructor silently keeps the last of two equal keys; a user who writes
    ``cmd:`` twice has lost one of them, so we report it instead.
    """

    def __init__(self, loader: yaml.SafeLoader, source: str):
        self.loader = loader
        self.source = source
        self.lines: Dict[KeyPath, int] = {}

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> Dict[Any, Any]:
        self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        result: Dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise SpecError([f"{self.source}:{key_node.start_mark.line + 1}: "
                                 f"{_dotted(path) or 'top level'}: a mapping key must be a plain "
                                 f"value, found {type(key).__name__}"])
            if key in result:
                raise SpecError([f"{self.source}:{key_node.start_mark.line + 1}: "
                                 f"{_dotted(path + (key,))}: key '{key}' appears twice "
                                 f"(first on line {self.lines[path + (key,)]}); YAML would keep "
                                 f"only the last one"])
            self.lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, path + (key,))
        return result


def _dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


dotted = _dotted


def load_spec(path: Path) -> RawSpec:
    """Read and parse ``path``; every problem becomes a :class:`SpecError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise SpecError([f"{path}: is a directory, expected a study specification (YAML file)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}: cannot read the file: {exc}"]) from None
    return parse_spec_text(text, path)


# libyaml's parser when PyYAML was built with it: a 100,000-value parameter list parses ten
# times faster; the pure-Python one gives the same nodes, marks and errors
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


TEXT_LABEL = "<text>"          # names a spec given as YAML text in messages (with line numbers)
DICT_LABEL = "<dict>"          # names a spec given as a dict (key paths only: it has no lines)
IN_MEMORY_COPY = "spec.yaml"   # the copy of an in-memory spec in the study directory


def load_text(text: str) -> RawSpec:
    """A spec given as YAML text: errors name TEXT_LABEL and the line within the text."""
    raw = parse_spec_text(text, Path(TEXT_LABEL))
    return RawSpec(path=raw.path, data=raw.data, lines=raw.lines, text=text)


def load_data(data: Any) -> RawSpec:
    """A spec given as Python data (a dict as yaml.safe_load would return): errors name
    DICT_LABEL and the key path. Tuples count as lists and paths as strings; anything else YAML
    cannot hold is refused with its key path."""
    if not isinstance(data, Mapping):
        raise SpecError([f"{DICT_LABEL}: expected a mapping with the keys description, env, batch, study and "
                         f"global.parameters, found {type(data).__name__}"])
    plain = _plain(data, ())
    text = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return RawSpec(path=Path(DICT_LABEL), data=plain, lines={}, text=text)


def _plain(value: Any, path: KeyPath) -> Any:
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise SpecError([f"{DICT_LABEL}: {_dotted(path) or 'top level'}: a mapping key must be a plain "
                                 f"value, found {type(key).__name__}"])
            result[key] = _plain(item, path + (key,))
        return result
    if isinstance(value, (list, tuple)):
        return [_plain(item, path + (i,)) for i, item in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise SpecError([f"{DICT_LABEL}: {_dotted(path) or 'top level'}: expected plain data (a string, number, "
                     f"boolean, None, list or dict), found {type(value).__name__}"])


def parse_spec_text(text: str, path: Path) -> RawSpec:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise SpecError([f"{path}: the file is empty, expected a study specification"])
        builder = _Builder(loader, str(path))
        data = builder.build(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError([f"{where}: not valid YAML: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"{path}: not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError([f"{path}:1: expected a mapping with the keys description, env, batch, "
                         f"study and global.parameters, found {type(data).__name__}"])
    return RawSpec(path=path, data=data, lines=builder.lines)
