"""The study directory: the one owner of its file names and of every read and write of them.

Layout (docs/architecture.md has the whole format)::

    study.json                 the manifest: every node, its workspace, script, log and parents
    submit.sh                  the submission script (plain bash)
    runner.py                  the local backend's runner (Python standard library only)
    jobs.tsv                   the ledger: "<time>\\t<node>\\t<job id>" per submission, appended by scripts
    <workspace>/<job>.status   a node's markers (KEY=VALUE lines) appended by its job
    .maestro/submitted         the submission lock (created atomically by submit.sh): time pid host boot
    .maestro/queued            every job is queued and recorded (written before the roots are released)
    .maestro/released          the held roots were released: the submission is complete
    .maestro/rollback.incomplete  ids a failed rollback could not confirm as cancelled
    .maestro/cancelled         `maestro cancel` ran
    .maestro/resubmit-<K>.sh   resubmission scripts, kept as a record; .maestro/resubmitting their lock
    .maestro/runner.*          the local runner's pid, end and node list

The generated scripts use the same names (they are the product and run without maestro_compile).
Every read is validated: a damaged file gives one StudyDirError naming the file, and the line.
"""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Pattern, TextIO, Tuple

from .errors import StudyDirError, SubmitError
from .states import LedgerEntry, Markers

MANIFEST = "study.json"
SUBMIT_SCRIPT = "submit.sh"
LOCAL_RUNNER = "runner.py"                       # the local backend's runner, beside submit.sh
LEDGER = "jobs.tsv"
STATE_DIR = ".maestro"
SPEC_SUFFIXES = (".yaml", ".yml")                # a spec given where a study directory is expected
SUBMITTED = f"{STATE_DIR}/submitted"
QUEUED = f"{STATE_DIR}/queued"                  # every job is queued and recorded (before the release)
RELEASED = f"{STATE_DIR}/released"              # the held roots were released: the submission is complete
ROLLBACK_INCOMPLETE = f"{STATE_DIR}/rollback.incomplete"   # ids a failed rollback could not confirm
CANCELLED = f"{STATE_DIR}/cancelled"
RESUBMIT_LOCK = f"{STATE_DIR}/resubmitting"
RUNNER_PID = f"{STATE_DIR}/runner.pid"
RUNNER_DONE = f"{STATE_DIR}/runner.done"
RUNNER_NODES = f"{STATE_DIR}/runner.nodes"
MARKER_SUFFIX = ".status"
FORMAT = 1
NODE_KEYS = ("step", "workspace", "params", "depends", "script", "log")


class NodeInfo:
    """One node's entry of study.json."""

    __slots__ = ("name", "step", "workspace", "params", "depends", "script", "log")

    def __init__(self, name: str, step: str, workspace: str, params: Mapping[str, str],
                 depends: Tuple[str, ...], script: str, log: str):
        self.name, self.step, self.workspace, self.params = name, step, workspace, params
        self.depends, self.script, self.log = depends, script, log

    def entry(self) -> Dict[str, Any]:
        return {"step": self.step, "workspace": self.workspace, "params": dict(self.params),
                "depends": list(self.depends), "script": self.script, "log": self.log}


class Manifest:
    """study.json, validated: the study's name and backend, its nodes in topological order, and
    the backend's own entries (``extra``: array jobs, Flux facts, ...)."""

    def __init__(self, name: str, backend: str, nodes: Dict[str, NodeInfo], steps: Mapping[str, List[str]],
                 extra: Mapping[str, Any]):
        self.name, self.backend, self.nodes, self.steps, self.extra = name, backend, nodes, steps, extra

    @property
    def identity(self) -> str:
        """The study's id: its scheduler jobs carry it (tag) so they can be found without the ledger."""
        return str(self.extra.get("id") or "")

    def get(self, key: str, default: Any = None) -> Any:
        """A backend's own entry of study.json."""
        return self.extra.get(key, default)


def parse_manifest(data: Any, where: str, backends: Iterable[str]) -> Manifest:
    """Check the shape of study.json's content; one clear error for the first thing wrong."""
    def bad(what: str) -> StudyDirError:
        return StudyDirError(f"{where}: {what}; the study directory is damaged (compile the spec again "
                             f"into a new directory)")
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, found {type(data).__name__}")
    if type(data.get("format")) is not int or data["format"] != FORMAT:
        raise StudyDirError(f"{where}: not a study manifest this version understands (format "
                            f"{data.get('format')!r}, expected {FORMAT})")
    known = sorted(backends)
    if data.get("backend") not in known:
        raise bad(f"'backend' is {data.get('backend')!r}, expected one of {', '.join(known)}")
    if not isinstance(data.get("name"), str):
        raise bad("'name' is missing or not a string")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        raise bad("'nodes' is missing, empty or not an object")
    nodes: Dict[str, NodeInfo] = {}
    for name, info in raw_nodes.items():
        nodes[name] = _node_info(name, info, nodes, bad)
    steps = data.get("steps", {})
    if not isinstance(steps, dict) or not all(isinstance(keys, list) and all(isinstance(k, str) for k in keys)
                                              for keys in steps.values()):
        raise bad("'steps' must map each step to the list of its parameter names")
    extra = {key: value for key, value in data.items() if key not in ("nodes", "steps")}
    return Manifest(data["name"], data["backend"], nodes, steps, extra)


def _node_info(name: str, info: Any, earlier: Mapping[str, NodeInfo], bad) -> NodeInfo:
    if not isinstance(info, dict) or any(key not in info for key in NODE_KEYS):
        raise bad(f"node {name!r}: expected an object with {', '.join(NODE_KEYS)}")
    for key in ("step", "workspace", "script", "log"):
        if not isinstance(info[key], str) or not info[key] or _escapes(info[key]):
            raise bad(f"node {name!r}: '{key}' must be a path inside the study directory, found {info[key]!r}")
    if not isinstance(info["depends"], list) or not all(isinstance(p, str) for p in info["depends"]):
        raise bad(f"node {name!r}: 'depends' must be a list of node names, found {info['depends']!r}")
    for parent in info["depends"]:
        if parent not in earlier:   # parents come first: the manifest is in topological order
            raise bad(f"node {name!r}: its parent {parent!r} is not an earlier node of the study")
    if not isinstance(info["params"], dict):
        raise bad(f"node {name!r}: 'params' must be an object")
    return NodeInfo(name, info["step"], info["workspace"], info["params"], tuple(info["depends"]),
                    info["script"], info["log"])


def _escapes(relpath: str) -> bool:
    return relpath.startswith("/") or ".." in relpath.split("/")


def write_manifest(handle: TextIO, manifest: Mapping[str, Any]) -> None:
    """study.json with one line per node and per job: readable with grep and less, written by the
    json module's C encoder (an indented dump is pure Python) and streamed, never held whole.
    A callable value yields (key, entry) pairs: the nodes, built one at a time."""
    handle.write("{")
    separator = "\n"
    for key, value in manifest.items():
        handle.write(f"{separator} {json.dumps(key)}: ")
        separator = ",\n"
        if callable(value):
            _write_block(handle, "{}", (f"{json.dumps(k)}: {json.dumps(v)}" for k, v in value()))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            _write_block(handle, "{}", (f"{json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()))
        elif isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
            _write_block(handle, "[]", (json.dumps(v) for v in value))
        else:
            handle.write(json.dumps(value))
    handle.write("\n}\n")


def _write_block(handle: TextIO, brackets: str, items: Iterable[str]) -> None:
    handle.write(brackets[0])
    separator = "\n  "
    for item in items:
        handle.write(separator + item)
        separator = ",\n  "
    handle.write(("\n " if separator != "\n  " else "") + brackets[1])


def parse_markers(text: str) -> Markers:
    """KEY=VALUE lines appended by a job; later lines win. Each START begins an attempt (and
    clears what the previous one ended with); a RESTART inside the job counts as one too."""
    values: Dict[str, str] = {}
    starts = 0
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "START":
            starts += 1
            for stale in ("END", "EXIT_CODE", "SIGNAL", "REQUEUE"):
                values.pop(stale, None)
        elif key == "RESTART":
            starts += 1
        values[key] = value
    return Markers(values, starts)


LEDGER_LINE = re.compile(r"(\d+(?:\.\d+)?)\t([^\t]+)\t([^\t]+)")


def parse_ledger(text: str, where: str, nodes: Mapping[str, Any],
                 job_id: Pattern[str]) -> Dict[str, LedgerEntry]:
    """node -> its latest submission, from jobs.tsv's lines ("<time>\\t<node>\\t<job id>").

    A last line without its newline is being written by a submission right now: it is left for
    the next read. Anything else that does not fit is an error naming the line."""
    entries: Dict[str, LedgerEntry] = {}
    lines = text.split("\n")
    for number, line in enumerate(lines[:-1], start=1):   # the part after the last newline is incomplete
        match = LEDGER_LINE.fullmatch(line)
        if not match:
            raise StudyDirError(f"{where}:{number}: expected '<time>\\t<node>\\t<job id>', found {_cap(line)!r}; "
                                f"the ledger is damaged")
        when, node, ident = match.groups()
        if node not in nodes:
            raise StudyDirError(f"{where}:{number}: node {_cap(node)!r} is not a node of this study")
        if not job_id.fullmatch(ident):
            raise StudyDirError(f"{where}:{number}: {_cap(ident)!r} is not a job id of this study's scheduler")
        previous = entries.get(node)
        entries[node] = LedgerEntry(float(when), ident, previous.submissions + 1 if previous else 1)
    return entries


def _cap(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class Submission:
    """What .maestro/ says of the study's submission: its lock's owner, and how far it got."""

    def __init__(self, lock: Optional[str], queued: bool, released: bool, unconfirmed: Optional[str]):
        words = (lock or "").split()
        self.locked = lock is not None
        self.time = float(words[0]) if words and words[0].isdigit() else None
        self.pid = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
        self.host = words[2] if len(words) > 2 else None
        self.boot = words[3] if len(words) > 3 else None
        # a lock of an older submit.sh (no boot id) was written by a submission that had no markers
        legacy = self.locked and len(words) < 4
        self.queued, self.released = queued or legacy, released or legacy
        self.unconfirmed = unconfirmed.split() if unconfirmed else []

    def owner_alive(self) -> bool:
        """The process that holds the lock still runs (on this machine, since its last boot).
        A lock from another host is taken as alive: we cannot look there."""
        if self.pid is None:
            return False
        if self.host and self.host != socket.gethostname():
            return True
        if self.boot and self.boot != "-" and self.boot != _boot_id():
            return False   # the machine restarted since: the pid is someone else's now
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as handle:
                return b"submit.sh" in handle.read()
        except OSError:
            return False

    @property
    def interrupted(self) -> bool:
        """Locked, not complete, and nobody is working on it any more."""
        return self.locked and not self.released and not self.owner_alive()


def _boot_id() -> str:
    return _read_text(Path("/proc/sys/kernel/random/boot_id")) or "-"


class StudyDir:
    """A compiled study directory: paths of its files, and validated reads and small writes of them."""

    def __init__(self, path: Path, manifest: Optional[Manifest] = None):
        self.path = Path(path).resolve()
        self._manifest = manifest

    @classmethod
    def open(cls, path: Path) -> "StudyDir":
        """The study directory at ``path``; its manifest is read and checked now."""
        study = cls(path)
        study.manifest   # noqa: B018 - read (and validated) now, so a bad directory fails early
        return study

    # --- paths ---
    def file(self, relpath: str) -> Path:
        return self.path / relpath

    @property
    def submit_script(self) -> Path:
        return self.path / SUBMIT_SCRIPT

    @property
    def ledger_path(self) -> Path:
        return self.path / LEDGER

    @property
    def state_dir(self) -> Path:
        return self.path / STATE_DIR

    def marker_path(self, node: NodeInfo) -> str:
        return os.path.join(str(self.path), node.log + MARKER_SUFFIX)

    # --- the manifest ---
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> Manifest:
        from .backends import BACKENDS   # the registry names the backends a manifest may name
        if self.path.is_file() and self.path.suffix.lower() in SPEC_SUFFIXES:
            raise StudyDirError(f"{self.path} is a study specification, not a study directory: compile and submit "
                                f"it with `maestro run {self.path}`, or compile it with `maestro compile "
                                f"{self.path} -o DIR` and then use DIR")
        if self.path.is_file():
            raise StudyDirError(f"{self.path} is a file, not a study directory (a directory written by "
                                f"`maestro compile`)")
        if not self.path.is_dir():
            raise StudyDirError(f"{self.path}: no such directory")
        path = self.path / MANIFEST
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise StudyDirError(f"{self.path} is not a study directory (no {MANIFEST}); "
                                f"create one with `maestro compile SPEC`") from None
        except (OSError, ValueError) as exc:
            raise StudyDirError(f"{path}: cannot read the study manifest: {exc}") from None
        return parse_manifest(data, str(path), BACKENDS)

    # --- the ledger ---
    def ledger(self, job_id: Pattern[str]) -> Dict[str, LedgerEntry]:
        """node -> latest submission; ``job_id``: the backend's pattern of a job id."""
        try:
            with open(self.ledger_path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StudyDirError(f"{self.ledger_path}: cannot read the ledger: {exc.strerror}") from None
        return parse_ledger(text, str(self.ledger_path), self.manifest.nodes, job_id)

    def ledger_size(self) -> int:
        try:
            return self.ledger_path.stat().st_size
        except FileNotFoundError:
            return 0

    # --- markers ---
    def markers(self, node: NodeInfo) -> Markers:
        try:
            with open(self.marker_path(node), encoding="utf-8", errors="replace") as handle:
                return parse_markers(handle.read())
        except OSError:
            return Markers({}, 0)

    def has_markers(self, node: NodeInfo) -> bool:
        return os.path.exists(self.marker_path(node))

    # --- submission and cancel records ---
    def submission_lock(self) -> Optional[str]:
        """The content of .maestro/submitted ("<time> <pid> <host> <boot>"), None when not submitted."""
        return _read_text(self.path / SUBMITTED)

    def submission(self) -> Submission:
        return Submission(self.submission_lock(), (self.path / QUEUED).exists(), (self.path / RELEASED).exists(),
                          _read_text(self.path / ROLLBACK_INCOMPLETE))

    def set_aside_failed_attempt(self, stamp: int) -> None:
        """After a recovered submission: its ledger moves aside and the lock goes, so that
        submit.sh can run again (the rolled-back ledgers are kept, like submit.sh's own)."""
        try:
            if self.ledger_path.exists():
                os.replace(self.ledger_path, self.state_dir / f"jobs.interrupted.{stamp}.tsv")
            for relpath in (ROLLBACK_INCOMPLETE, RELEASED, QUEUED, SUBMITTED):
                try:
                    os.unlink(self.path / relpath)
                except FileNotFoundError:
                    pass
        except OSError as exc:
            raise StudyDirError(f"cannot reset {self.path} after the interrupted submission: {exc.strerror}") from None

    def mark_released(self, when: int) -> None:
        try:
            (self.path / RELEASED).write_text(f"{when}\n")
        except OSError as exc:
            raise StudyDirError(f"cannot write {self.path / RELEASED}: {exc.strerror}") from None

    def is_cancelled(self) -> bool:
        return (self.path / CANCELLED).exists()

    def cancelled_before(self) -> bool:
        """An earlier run was cancelled (resubmit keeps .maestro/cancelled aside as cancelled.<K>)."""
        return any(self.state_dir.glob("cancelled.*"))

    def mark_cancelled(self, when: int) -> None:
        try:
            self.state_dir.mkdir(exist_ok=True)
            (self.path / CANCELLED).write_text(f"{when}\n")
        except OSError as exc:
            raise StudyDirError(f"cannot record the cancel in {self.path / CANCELLED}: {exc.strerror}") from None

    def resubmit_locked(self) -> Optional[Path]:
        lock = self.path / RESUBMIT_LOCK
        return lock if lock.exists() else None

    # --- the local runner ---
    def runner_pid(self) -> Optional[int]:
        text = _read_text(self.path / RUNNER_PID)
        return int(text) if text and text.isdigit() else None

    def runner_done(self) -> Optional[str]:
        return _read_text(self.path / RUNNER_DONE)

    def runner_nodes(self) -> Optional[FrozenSet[str]]:
        """The nodes the latest local runner runs (after a resubmit), or None (all of them)."""
        text = _read_text(self.path / RUNNER_NODES)
        return None if text is None else frozenset(line for line in text.splitlines() if line)

    def submit_script_text(self) -> str:
        return _read_text(self.submit_script) or ""

    # --- resubmission scripts ---
    def next_resubmit_script(self) -> Tuple[int, Path]:
        """.maestro/resubmit-<K>.sh with K one more than the highest so far (earlier ones are kept)."""
        numbers = [int(path.stem.split("-", 1)[1]) for path in self.state_dir.glob("resubmit-*.sh")
                   if path.stem.split("-", 1)[1].isdigit()]
        number = max(numbers, default=0) + 1
        return number, self.state_dir / f"resubmit-{number}.sh"

    @staticmethod
    def write_new(path: Path, text: str) -> None:
        """Create an executable script; never over an existing one (a concurrent run picked the name)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
        except FileExistsError:
            raise SubmitError(f"{path} appeared meanwhile: another resubmission is running") from None
        except OSError as exc:
            raise SubmitError(f"cannot write {path}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
