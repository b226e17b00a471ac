"""Parameter sweeps: the ParameterGenerator API that pgen files use, and combinations.

The class mirrors maestrowf's ``ParameterGenerator`` (same constructor, ``add_parameter``,
iteration, ``Combination.get_param_string``) so that pgen files written for Maestro run
unchanged; see :mod:`maestro_compile.pgen` for how ``from maestrowf.datastructures.core
import ParameterGenerator`` is made to resolve to it.
"""
from __future__ import annotations

import itertools
import warnings
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from .model import Parameter


class Combination:
    """One row of the sweep: for every parameter a value, a label and a name."""

    def __init__(self, token: str = "$"):
        self._token = token
        self._values: Dict[str, Any] = {}
        self._labels: Dict[str, str] = {}
        self._names: Dict[str, str] = {}

    def add(self, key: str, name: str, value: Any, label: str) -> None:
        self._values[key], self._labels[key], self._names[key] = value, label, name

    def get_param_string(self, params: Iterable[str]) -> str:
        """Labels of ``params`` sorted by key, joined by '.' (Maestro's node-name suffix)."""
        return ".".join(self._labels[key] for key in sorted(params))

    def get_param_values(self, params: Iterable[str]) -> List[Any]:
        return [self._values[key] for key in sorted(params)]

    def __str__(self) -> str:
        return ".".join(self._labels.values())

    def apply(self, item: str) -> str:
        """Substitute this combination's tokens in ``item``: labels, then values, then names."""
        for key in self._values:
            item = item.replace(f"{self._token}({key}.label)", self._labels[key])
        for key in self._values:
            item = item.replace(f"{self._token}({key})", str(self._values[key]))
        for key in self._values:
            item = item.replace(f"{self._token}({key}.name)", self._names[key])
        return item


class ParameterGenerator:
    """A set of parameters combined row by row (value i of every parameter forms combination i)."""

    def __init__(self, token: str = "$", ltoken: str = "%%"):
        self.token = token
        self.ltoken = ltoken
        self.parameters: Dict[str, List[Any]] = {}
        self.labels: Dict[str, Union[str, List[str]]] = {}
        self.names: Dict[str, str] = {}

    def add_parameter(self, key: str, values: Sequence[Any], label: Union[str, Sequence[str], None] = None,
                      name: Optional[str] = None) -> None:
        """Add (or replace) parameter ``key``; ``label`` is a template with ``%%`` or one label per value."""
        if key in self.parameters:
            warnings.warn(f"Duplicate parameter '{key}' replaces the earlier one")
        values = list(values)
        if self.parameters:
            expected = len(next(iter(self.parameters.values())))
            if len(values) != expected:
                raise ValueError(f"Parameter '{key}' has {len(values)} values but the others have "
                                 f"{expected}; parameters are combined row by row")
        if label is None:
            label = f"{key}.{self.ltoken}"
        elif not isinstance(label, str):
            label = [str(item) for item in label]
            if len(label) != len(values):
                raise ValueError(f"Parameter '{key}' has {len(values)} values but {len(label)} labels")
        self.parameters[key] = values
        self.labels[key] = label
        self.names[key] = name or key

    def __bool__(self) -> bool:
        return bool(self.parameters)

    def __len__(self) -> int:
        return len(next(iter(self.parameters.values()))) if self.parameters else 0

    def label_of(self, key: str, index: int) -> str:
        label = self.labels[key]
        value = self.parameters[key][index]
        return label.replace(self.ltoken, str(value)) if isinstance(label, str) else label[index]

    def get_combinations(self) -> Iterator[Combination]:
        for index in range(len(self)):
            combo = Combination(self.token)
            for key, values in self.parameters.items():
                combo.add(key, self.names[key], values[index], self.label_of(key, index))
            yield combo

    __iter__ = get_combinations

    def get_used_parameters(self, step: Any) -> set:
        """Keys whose token appears in a Maestro-style step object (kept for pgen compatibility)."""
        text = repr(step)
        return {key for key in self.parameters if f"{self.token}({key}" in text}

    def to_parameters(self) -> List[Parameter]:
        """Our frozen representation, labels resolved per value."""
        return [Parameter(key=key, values=tuple(values),
                          labels=tuple(self.label_of(key, i) for i in range(len(values))),
                          name=self.names[key])
                for key, values in self.parameters.items()]


def from_spec_block(block: Dict[str, Dict[str, Any]], cartesian_product: bool = False) -> ParameterGenerator:
    """A generator for the ``global.parameters`` block (already validated)."""
    if cartesian_product:
        return _product([(key, list(entry["values"]), entry["label"], key) for key, entry in block.items()])
    generator = ParameterGenerator()
    for key, entry in block.items():
        generator.add_parameter(key, entry["values"], entry["label"])
    return generator


def _product(columns, token: str = "$", ltoken: str = "%%") -> ParameterGenerator:
    """(key, values, label, name) columns combined as nested loops, the last varying fastest."""
    product = ParameterGenerator(token, ltoken)
    rows = list(itertools.product(*(range(len(values)) for _, values, _, _ in columns)))
    for position, (key, values, label, name) in enumerate(columns):
        labels = label if isinstance(label, str) else [label[row[position]] for row in rows]
        product.add_parameter(key, [values[row[position]] for row in rows], labels, name)
    return product


def cartesian(generator: ParameterGenerator) -> ParameterGenerator:
    """The Cartesian product of the parameters (opt-in extension, maestrowf issue #225).

    Combinations are ordered like nested loops over the parameters in declaration order,
    the last parameter varying fastest.
    """
    return _product([(key, values, generator.labels[key], generator.names[key])
                     for key, values in generator.parameters.items()], generator.token, generator.ltoken)
