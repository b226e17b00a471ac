"""Step scripts by shape: a template rendered once per kind of node, then filled in per node.

The node scripts of a step differ only in a few values (the node's name, workspace, command,
directives). Rendering 30,000 of them through Jinja2 costs a template call per node; instead the
template is rendered once with a `Slot` standing in for each per-node value, which leaves a hole
in the text, and every node of that kind gets the constant text with its own values put in the
holes, each through the same filters the template applied. The result is the same text Jinja2
would give, byte for byte: a hole holds ``str(filter_n(...filter_1(value)))``, which is what
Jinja2 prints for ``{{ value | filter_1 | ... | filter_n }}``.

That holds while the template only *prints* per-node values or passes them through the
shape-aware filters (``sh``, ``comment``). Anything else makes a Slot raise (a comparison, ``if``,
another filter, ``~``), and nodes of that kind are rendered whole by Jinja2 as before. The values
the template may branch on (the shell, the retries, whether ``restart`` is None, the number of
directives; every value not named per-node) are part of the kind, so each combination gets its
own shape. The first node of every shape is also rendered whole and compared, which catches what
cannot raise (a test such as ``is string``): a difference disables the shape.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Tuple

from .model import Node

_HOLE = re.compile("\x00([0-9]+)\x00")   # NUL cannot come from a template's own text
MAX_SHAPES = 256                         # kinds per process; beyond, nodes are rendered whole

Path = Tuple[Any, ...]                   # where a per-node value is: ("cmd",), ("directives", 3), ("node", "name")
Filters = Tuple[Callable[[Any], Any], ...]


class NotShapeable(Exception):
    """The template did more with a per-node value than print it or pass it through sh/comment."""


class Slot:
    """A per-node value while a shape is rendered. The shape-aware filters return a new Slot that
    remembers them; printing one (the environment's finalize) leaves a numbered hole."""

    __slots__ = ("path", "filters", "holes")

    def __init__(self, path: Path, holes: List[Tuple[Path, Filters]], filters: Filters = ()):
        self.path, self.holes, self.filters = path, holes, filters

    def then(self, filter_: Callable[[Any], Any]) -> "Slot":
        return Slot(self.path, self.holes, self.filters + (filter_,))

    def hole(self) -> str:
        self.holes.append((self.path, self.filters))
        return f"\x00{len(self.holes) - 1}\x00"

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise NotShapeable(f"the template uses {'.'.join(map(str, self.path))} for more than printing it")

    __str__ = __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __len__ = __iter__ = _refuse
    __contains__ = __getitem__ = __getattr__ = __add__ = __radd__ = __mod__ = __rmod__ = __mul__ = _refuse
    __format__ = __int__ = __float__ = __index__ = __call__ = _refuse
    __hash__ = None   # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Slot({self.path!r})"


class _NodeSlots:
    """A node while a shape is rendered: each attribute the template reads is a Slot (and must
    be text for every node the shape is used for)."""

    __slots__ = ("_key", "_node", "_holes", "_read")

    def __init__(self, key: str, node: Node, holes: List[Tuple[Path, Filters]], read: List[Path]):
        self._key, self._node, self._holes, self._read = key, node, holes, read

    def __getattr__(self, name: str) -> Slot:
        if type(getattr(self._node, name)) is not str:
            raise NotShapeable(f"the template uses {self._key}.{name}, which is not text")
        self._read.append((self._key, name))
        return Slot((self._key, name), self._holes)


def _access(path: Path) -> str:
    """Python source reading the value at ``path`` from the context ``c``."""
    source = f"c[{path[0]!r}]"
    if len(path) == 1:
        return source
    if type(path[1]) is str:   # a node's attribute
        return f"getattr({source}, {path[1]!r})"
    return f"{source}[{path[1]!r}]"


class Shape:
    """The constant text of one kind of node script and, between its pieces, the holes.

    ``fill`` is compiled to one Python expression (as Jinja2 compiles templates): the constant
    pieces and the filters are its names, each hole reads its value from the context."""

    __slots__ = ("fill",)

    def __init__(self, text: str, holes: List[Tuple[Path, Filters]], node_texts: List[Path]):
        pieces = _HOLE.split(text)
        names: Dict[str, Any] = {"t0": pieces[0]}
        parts = ["t0"]
        for position, number in enumerate(pieces[1::2], start=1):
            path, filters = holes[int(number)]
            value = _access(path)
            for index, filter_ in enumerate(filters):
                names[f"f{position}_{index}"] = filter_
                value = f"f{position}_{index}({value})"
            names[f"t{position}"] = pieces[2 * position]
            parts += [f"str({value})", f"t{position}"]
        # a node attribute the template read must be text for this node too (None would branch)
        checks = " or ".join(f"type({_access(path)}) is not str" for path in dict.fromkeys(node_texts))
        source = "def fill(c):\n"
        if checks:
            source += f"    if {checks}:\n        return None\n"
        source += f"    return ''.join(({', '.join(parts)},))\n"
        exec(compile(source, "<node script shape>", "exec"), names)
        self.fill: Callable[[Mapping[str, Any]], Optional[str]] = names["fill"]
        """This node's script, or None when the node is not of this shape after all."""


def _kind(value: Any) -> Any:
    """What of a per-node value a template may branch on: None or not, a list's length."""
    if value is None or isinstance(value, Node):
        return value is None
    if type(value) is str:
        return "text"
    if type(value) in (list, tuple):
        if any(type(item) is not str for item in value):
            raise NotShapeable("a list of per-node values holds something other than text")
        return len(value)
    return (type(value), value)


def _constant(value: Any) -> Any:
    """A value shared by the nodes of a shape: part of the kind, by value (1, 1.0 and True differ)."""
    return value if type(value) is str else (type(value), value)


_UNKNOWN = object()


class ShapeRenderer:
    """Renders node scripts of one template, by shape where it can and whole where it cannot."""

    def __init__(self, render_whole: Callable[[Dict[str, Any]], str], per_node: FrozenSet[str]):
        self.render_whole, self.per_node = render_whole, per_node
        self.shapes: Dict[Any, Optional[Shape]] = {}
        self.whole = 0   # nodes rendered whole (tests check that the usual ones are not)

    def render(self, context: Dict[str, Any]) -> str:
        per_node = self.per_node
        try:
            kind = tuple([(name, _kind(value) if name in per_node else _constant(value))
                          for name, value in context.items()])
            shape = self.shapes.get(kind, _UNKNOWN)
            if shape is _UNKNOWN:
                shape = self._new_shape(kind, context)
        except (NotShapeable, TypeError):   # TypeError: a constant that cannot be a key (a list)
            shape = None
        text = shape.fill(context) if shape is not None else None
        if text is None:
            self.whole += 1
            return self.render_whole(context)
        return text

    def _new_shape(self, kind: Any, context: Dict[str, Any]) -> Optional[Shape]:
        if len(self.shapes) >= MAX_SHAPES:
            return None
        holes: List[Tuple[Path, Filters]] = []
        read: List[Path] = []
        standing_in = {name: self._stand_in(name, value, holes, read) if name in self.per_node else value
                       for name, value in context.items()}
        try:
            shape: Optional[Shape] = Shape(self.render_whole(standing_in), holes, read)
        except Exception:   # NotShapeable, or an error the whole rendering will report as it should
            shape = None
        if shape is not None and shape.fill(context) != self.render_whole(context):
            shape = None   # a use of a value the Slots did not catch: render this kind whole
        self.shapes[kind] = shape
        return shape

    @staticmethod
    def _stand_in(name: str, value: Any, holes: List[Tuple[Path, Filters]], read: List[Path]) -> Any:
        if isinstance(value, Node):
            return _NodeSlots(name, value, holes, read)
        if type(value) is str:
            return Slot((name,), holes)
        if type(value) in (list, tuple):
            return [Slot((name, index), holes) for index in range(len(value))]
        return value
