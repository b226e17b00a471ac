"""Custom parameter generators (``--pgen FILE --pargs KEY:VALUE``), Maestro-compatible.

A pgen file defines ``get_custom_generator(env, **kwargs)`` and returns a ParameterGenerator.
Files written for maestrowf import ``from maestrowf.datastructures.core import
ParameterGenerator``; when maestrowf is not installed we register small stand-in modules under
those names for the duration of the import, so such files run unchanged.
"""
from __future__ import annotations

import importlib.util
import sys
import traceback
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence

from . import parameters as parameters_module
from .errors import SpecError
from .parameters import ParameterGenerator

SHIM_MODULES = ("maestrowf", "maestrowf.datastructures", "maestrowf.datastructures.core",
                "maestrowf.datastructures.core.parameters")


def parse_pargs(pargs: Sequence[str]) -> Dict[str, str]:
    """``KEY:VALUE`` pairs, split on the first ':' with both sides stripped (Maestro's rule)."""
    result: Dict[str, str] = {}
    for item in pargs:
        if ":" not in item:
            raise SpecError([f"--pargs {item!r}: expected KEY:VALUE (for example --pargs NUM_PTS:10)"])
        key, value = (part.strip() for part in item.split(":", 1))
        if not key:
            raise SpecError([f"--pargs {item!r}: the key before ':' is empty"])
        result[key] = value
    return result


class EnvView:
    """What ``get_custom_generator`` receives as ``env``: ``find(NAME)`` returns an object with .value."""

    class Variable:
        def __init__(self, name: str, value: Any):
            self.name, self.value = name, value

        def __str__(self) -> str:
            return str(self.value)

        def __repr__(self) -> str:
            return f"Variable({self.name!r}, {self.value!r})"

    def __init__(self, values: Dict[str, Any]):
        self._values = dict(values)

    def find(self, name: str) -> Optional["EnvView.Variable"]:
        return self.Variable(name, self._values[name]) if name in self._values else None

    def is_set(self, name: str) -> bool:
        return name in self._values


def _maestrowf_installed() -> bool:
    try:
        return importlib.util.find_spec("maestrowf") is not None
    except (ImportError, ValueError):
        return False


@contextmanager
def _maestrowf_shim() -> Iterator[None]:
    if _maestrowf_installed():
        yield
        return
    saved = {name: sys.modules.get(name) for name in SHIM_MODULES}
    for name in SHIM_MODULES:
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so submodule imports resolve through sys.modules
        module.ParameterGenerator = ParameterGenerator
        module.Combination = parameters_module.Combination
        sys.modules[name] = module
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_generator(path: Path, env: Dict[str, Any], pargs: Dict[str, str]) -> ParameterGenerator:
    """Import ``path`` and call its ``get_custom_generator``; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise SpecError([f"--pgen {path}: no such file"])
    spec = importlib.util.spec_from_file_location("custom_gen", str(path))
    if spec is None or spec.loader is None:
        raise SpecError([f"--pgen {path}: cannot be imported as a Python file"])
    module = importlib.util.module_from_spec(spec)
    kwargs: Dict[str, Any] = dict(pargs)
    kwargs["OUTPUT_PATH"] = str(env.get("OUTPUT_PATH", ""))
    # maestrowf passes SPECROOT as a Variable object; pgen files use .value
    kwargs["SPECROOT"] = EnvView.Variable("SPECROOT", env.get("SPECROOT", ""))
    with _maestrowf_shim():
        try:
            spec.loader.exec_module(module)
            factory = getattr(module, "get_custom_generator", None)
            if factory is None:
                raise SpecError([f"--pgen {path}: defines no function get_custom_generator(env, **kwargs)"])
            generator = factory(EnvView(env), **kwargs)
        except SpecError:
            raise
        except BaseException as exc:  # the user's code: report where it failed, not our stack
            raise SpecError([_user_code_error(path, exc)]) from None
    return _as_generator(path, generator)


def _user_code_error(path: Path, exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path.resolve()
              or f.filename == str(path)]
    where = f"{path}:{frames[-1].lineno}" if frames else str(path)
    return f"{where}: the parameter generator failed: {type(exc).__name__}: {exc}"


def _as_generator(path: Path, generator: Any) -> ParameterGenerator:
    if isinstance(generator, ParameterGenerator):
        return generator
    # maestrowf's own class (when maestrowf is installed) has the same attributes
    if all(hasattr(generator, attr) for attr in ("parameters", "labels", "names")):
        converted = ParameterGenerator(getattr(generator, "token", "$"), getattr(generator, "ltoken", "%%"))
        for key, values in generator.parameters.items():
            converted.add_parameter(key, values, generator.labels.get(key), generator.names.get(key))
        return converted
    raise SpecError([f"--pgen {path}: get_custom_generator returned {type(generator).__name__}, "
                     f"expected a ParameterGenerator"])

