"""The Python API: what the `maestro` commands do, as functions and a Study object (docs/api.md).

    import maestro_compile as mc
    problems = mc.validate("study.yaml")            # [] when the spec is valid
    study = mc.compile("study.yaml", out_dir="run1")
    study.submit()
    summary = study.wait(poll=30)

The CLI (cli.py) calls these functions for compile, validate, submit, status, cancel, resubmit
and `run --wait`; it only parses arguments and prints. Every error is a MaestroCompileError
(errors.py); nothing here exits the interpreter."""
from __future__ import annotations

import os
import time
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from .errors import CompileError, MaestroCompileError, Problem, SpecError, StudyDirError, UsageError, \
    WaitTimeoutError
from .expand import LAYOUTS
from .load import DICT_LABEL, TEXT_LABEL, RawSpec, load_data, load_text
from .pipeline import Options, check_study, compile_study
from .states import State
from .status import NodeStatus, Report, Summary, read
from .studydir import StudyDir

SpecSource = Union[str, PurePath, Mapping[str, Any]]
Filter = Union[None, str, Iterable[str]]
MIN_POLL = 0.05     # seconds: Study.wait() never polls faster (each poll may query the scheduler)


class Problems(list):
    """What validate() returns: the problems (empty when the spec is valid), plus the warnings and,
    for a valid spec, what it compiles to."""

    def __init__(self, problems: Iterable[Problem] = (), warnings: Sequence[str] = (),
                 backend: Optional[str] = None, step_count: int = 0, node_count: int = 0):
        super().__init__(problems)
        self.warnings: List[str] = list(warnings)
        self.backend, self.step_count, self.node_count = backend, step_count, node_count


def validate(spec: SpecSource, *, backend: Optional[str] = None, pgen: Union[str, PurePath, None] = None,
             pargs: Union[Mapping[str, Any], Sequence[str], None] = None, hashws: bool = False,
             cartesian: bool = False, strict: bool = False, throttle: int = 0, retries: int = 0,
             rlimit: int = 1, max_array_size: int = 0, workspace_layout: str = "auto", bundle: int = 0,
             max_queued: int = 0) -> Problems:
    """Every check `compile` makes (the node scripts are rendered in memory), writing nothing.
    Problems of the spec (and of the pgen file and its arguments) are returned, never raised; a
    bad option value is a UsageError."""
    try:
        study = check_study(make_options(spec, None, backend=backend, pgen=pgen, pargs=pargs, hashws=hashws,
                                         cartesian=cartesian, strict=strict, throttle=throttle, retries=retries,
                                         rlimit=rlimit, max_array_size=max_array_size,
                                         workspace_layout=workspace_layout, bundle=bundle, max_queued=max_queued))
    except (SpecError, CompileError) as exc:
        return Problems(_problems(exc, _label(spec)))
    return Problems(warnings=study.warnings, backend=study.backend, step_count=len(study.used_parameters),
                    node_count=len(study.nodes))


def compile(spec: SpecSource, out_dir: Union[str, PurePath, None] = None, *,  # noqa: A001 - the API's verb
            backend: Optional[str] = None, pgen: Union[str, PurePath, None] = None,
            pargs: Union[Mapping[str, Any], Sequence[str], None] = None, hashws: bool = False,
            cartesian: bool = False, strict: bool = False, throttle: int = 0, retries: int = 0, rlimit: int = 1,
            max_array_size: int = 0, workspace_layout: str = "auto", bundle: int = 0, max_queued: int = 0,
            progress: Optional[Callable[[int, int], None]] = None) -> "Study":
    """Compile ``spec`` into a new study directory (``out_dir``, default
    `<OUTPUT_PATH or cwd>/<name>_<timestamp>`) and return it, not submitted. ``spec``: a file name,
    YAML text (a str with a line break) or a dict. The options are `maestro compile`'s; invalid
    spec: SpecError, whose ``problems`` are Problem strings (file, line, key, message)."""
    options = make_options(spec, out_dir, backend=backend, pgen=pgen, pargs=pargs, hashws=hashws,
                           cartesian=cartesian, strict=strict, throttle=throttle, retries=retries, rlimit=rlimit,
                           max_array_size=max_array_size, workspace_layout=workspace_layout, bundle=bundle,
                           max_queued=max_queued)
    try:
        result = compile_study(options, progress=progress or (lambda done, total: None))
    except SpecError as exc:
        raise SpecError(_problems(exc, _label(spec))) from None
    return Study(result.directory, warnings=result.warnings,
                 facts=Facts(result.study.spec.name, result.study.backend, tuple(result.study.used_parameters),
                             len(result.study.nodes)), notes=result.notes)


def open(directory: Union[str, PurePath]) -> "Study":  # noqa: A001 - mc.open(dir), as the issue asks
    """The study directory written by compile (or `maestro compile`); StudyDirError if it is not one."""
    return Study(directory)


def make_options(spec: SpecSource, out_dir: Union[str, PurePath, None], *, backend: Optional[str],
                 pgen: Union[str, PurePath, None], pargs: Union[Mapping[str, Any], Sequence[str], None],
                 hashws: bool, cartesian: bool, strict: bool, throttle: int, retries: int, rlimit: int,
                 max_array_size: int, workspace_layout: str, bundle: int = 0, max_queued: int = 0) -> Options:
    """The pipeline's Options for the API's arguments (the CLI's options, by the same names); an
    in-memory spec is read now (SpecError with Problems)."""
    for name, value in (("throttle", throttle), ("retries", retries), ("rlimit", rlimit),
                        ("max_array_size", max_array_size), ("bundle", bundle), ("max_queued", max_queued)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"{name}: expected a whole number >= 0, got {value!r}")
    if workspace_layout not in LAYOUTS:
        raise UsageError(f"workspace_layout: expected one of {', '.join(LAYOUTS)}, got {workspace_layout!r}")
    try:
        raw = _read(spec)
    except SpecError as exc:
        raise SpecError(_problems(exc, _label(spec))) from None
    return Options(spec_path=None if raw else Path(spec), out_dir=Path(out_dir) if out_dir is not None else None,
                   backend=backend, pgen=Path(pgen) if pgen is not None else None, pargs=_pargs(pargs),
                   hashws=hashws, cartesian=cartesian, strict=strict, throttle=throttle, retries=retries,
                   rlimit=rlimit, max_array_size=max_array_size, workspace_layout=workspace_layout, raw_spec=raw,
                   bundle=bundle, max_queued=max_queued)


def _read(spec: SpecSource) -> Optional[RawSpec]:
    """An in-memory spec, read now; None for a file (the pipeline reads it)."""
    if isinstance(spec, Mapping):
        return load_data(spec)
    if isinstance(spec, str) and "\n" in spec:
        return load_text(spec)
    if isinstance(spec, (str, PurePath)):
        return None
    raise UsageError(f"spec: expected a file name, YAML text or a dict, got {type(spec).__name__}")


def _label(spec: SpecSource) -> str:
    """How messages name the spec: its path as given, or the in-memory label."""
    if isinstance(spec, Mapping):
        return DICT_LABEL
    if isinstance(spec, str) and "\n" in spec:
        return TEXT_LABEL
    return str(PurePath(spec)) if isinstance(spec, (str, PurePath)) else repr(spec)


def _problems(error: MaestroCompileError, source: str) -> List[Problem]:
    texts = error.problems if isinstance(error, SpecError) else [str(error)]
    return [Problem.parse(text, source) for text in texts]


def _pargs(pargs: Union[Mapping[str, Any], Sequence[str], None]) -> List[str]:
    """--pargs KEY:VALUE pairs from a dict, or from KEY:VALUE strings as on the command line."""
    if pargs is None:
        return []
    if isinstance(pargs, Mapping):
        return [f"{key}:{value}" for key, value in pargs.items()]
    if isinstance(pargs, str):
        return [pargs]
    return [str(item) for item in pargs]


class Facts(NamedTuple):
    """What compile knows of the study it wrote, so that study.json need not be read back."""

    name: str
    backend: str
    steps: Tuple[str, ...]
    node_count: int


class Study:
    """A compiled study directory: submit it, read its status, wait for it, cancel or resubmit it.

    Every method reads the directory (and asks the scheduler) afresh: there is no cached state,
    so a Study opened in another process, or later, sees the same thing."""

    def __init__(self, directory: Union[str, PurePath], warnings: Sequence[str] = (),
                 facts: Optional[Facts] = None, notes: Sequence[str] = ()):
        """Use mc.open(directory) or mc.compile(...)."""
        self._dir = StudyDir(Path(directory)) if facts else StudyDir.open(Path(directory))
        self.warnings: List[str] = list(warnings)   # the compile's warnings (none for mc.open)
        self.notes: List[str] = list(notes)         # what the compiler chose, e.g. bundle sizes (none for mc.open)
        self._facts = facts

    @property
    def path(self) -> Path:
        """The study directory, absolute."""
        return self._dir.path

    @property
    def name(self) -> str:
        return self._facts.name if self._facts else self._dir.manifest.name

    @property
    def backend(self) -> str:
        return self._facts.backend if self._facts else self._dir.manifest.backend

    @property
    def steps(self) -> Tuple[str, ...]:
        """The step names, parents before children."""
        return self._facts.steps if self._facts else tuple(self._dir.manifest.steps)

    @property
    def node_count(self) -> int:
        return self._facts.node_count if self._facts else len(self._dir.manifest.nodes)

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r}, backend={self.backend!r})"

    # --- running it ---
    def submit(self, jobs: Optional[int] = None) -> str:
        """Submit the study (`maestro submit`) and return once every job is queued (local: once
        the runner has started), with what submit.sh said. ``jobs``: local backend, at most this
        many steps at once (default: the number of cores)."""
        from .submission import submit
        return submit(self._dir, _jobs(jobs))

    def cancel(self) -> str:
        """Stop the running steps and keep the others from starting (`maestro cancel`)."""
        from .backends import get_backend
        return get_backend(self._dir.manifest.backend).cancel(self._dir)

    def resubmit(self, only: Filter = None, dry: bool = False, jobs: Optional[int] = None) -> str:
        """Submit again the nodes that did not finish and every node below them (`maestro
        resubmit`); ``only``: step or node names; ``dry``: describe, change nothing."""
        from .resubmit import resubmit
        return resubmit(self.path, _names(only), dry, _jobs(jobs))

    # --- reading it ---
    def report(self, step: Filter = None, state: Filter = None) -> Report:
        """One reading of the status: the selected nodes and the study's flags (submitted,
        cancelled, finished). ``step``, ``state``: a name or several (states in any case)."""
        return read(self._dir, _names(step), _names(state))

    def status(self, step: Filter = None, state: Filter = None) -> List[NodeStatus]:
        """Every node (or those of ``step`` in ``state``), parents before children."""
        return list(self.report(step, state).nodes)

    def summary(self, step: Filter = None, state: Filter = None) -> Summary:
        """Counts per step and state, and the nodes that did not finish."""
        return self.report(step, state).summary()

    def finished(self) -> bool:
        """True when nothing more will happen to the study (every node has ended, or the local
        runner has)."""
        return self.report().finished

    def wait(self, poll: float = 30, timeout: Optional[float] = None) -> Summary:
        """Block until the study can no longer change and return its summary; the status is read
        every ``poll`` seconds (at least 0.05). WaitTimeoutError after ``timeout`` seconds."""
        poll = max(float(poll), MIN_POLL)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            report = self.report()
            if report.finished:
                return report.summary()
            if not report.submitted:
                raise StudyDirError(f"{self.path}: the study has not been submitted; nothing to wait for "
                                    f"(submit it first)")
            remaining = poll if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(f"{self.path}: still running after {timeout:g} s: {report.summary()}")
            time.sleep(min(poll, remaining))


def _names(value: Filter) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):      # a State is a str as well
        return (value,)
    return tuple(value)


def _jobs(jobs: Optional[int]) -> int:
    if jobs is None:
        return os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"jobs: expected a whole number >= 1, got {jobs!r}")
    return jobs


__all__ = ["validate", "compile", "open", "Study", "Problems", "Problem", "NodeStatus", "Report", "Summary",
           "State", "make_options"]
