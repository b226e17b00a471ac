"""Pass 6: write the rendered study directory atomically (staging directory, then rename)."""
from __future__ import annotations

import gc
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Mapping, Optional, Tuple

from . import studydir
from .errors import CompileError, OutputExistsError
from .model import File, Rendered


def refuse_existing(directory: Path) -> None:
    if directory.exists() or directory.is_symlink():
        raise OutputExistsError(f"{directory} already exists; maestro_compile never overwrites or deletes "
                                f"an existing directory: choose another -o, or remove it yourself")


@contextmanager
def staging(directory: Path) -> Iterator[Path]:
    """A hidden sibling of ``directory`` that is removed unless it was published."""
    refuse_existing(directory)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{directory.name}.partial-", dir=str(directory.parent)))
    except OSError as exc:
        raise CompileError(f"cannot create the study directory under {directory.parent}: {exc.strerror}") from None
    try:
        yield stage
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


SLICE = 500            # nodes per unit of work: progress granularity, and what a worker takes at a time
PARALLEL_FROM = 2000   # fewer nodes are written faster than worker processes start
MAX_WORKERS = 4        # a login node is shared: use a few cores, not all of them


def write_files(stage: Path, rendered: Rendered, copies: Mapping[str, Path],
                progress: Callable[[int, int], None] = lambda done, total: None) -> None:
    """Write every node script, the study-level files, the copies of the spec, and study.json.

    Node scripts are rendered and written by slices, in worker processes when the study is big
    (rendering is most of the CPU time and the workers share nothing but the stage directory);
    meanwhile this process writes the rest. ``progress(done, total)`` is told after each slice."""
    total = rendered.node_count
    slices = [(start, min(start + SLICE, total)) for start in range(0, total, SLICE)]
    with _node_scripts(str(stage), rendered, slices) as written_slices:
        study_files, manifest = rendered.study_level()
        try:
            _write_all(str(stage), study_files.items())
            for relpath, source in copies.items():
                shutil.copyfile(source, stage / relpath)
            with open(stage / studydir.MANIFEST, "w", encoding="utf-8") as handle:
                studydir.write_manifest(handle, manifest)
        except OSError as exc:
            raise CompileError(f"cannot write the study directory: {exc}") from None
        done = 0
        for written in written_slices:
            done += written
            progress(done, total)


def worker_count() -> int:
    """MAESTRO_COMPILE_WORKERS if set (1: no worker processes), else a few of our usable cores."""
    chosen = os.environ.get("MAESTRO_COMPILE_WORKERS", "").strip()
    if chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    return min(MAX_WORKERS, _usable_cores())


@contextmanager
def _node_scripts(root: str, rendered: Rendered, slices: List[Tuple[int, int]]) -> Iterator[Iterator[int]]:
    """The node scripts' slices as they are written (how many nodes each): by worker processes,
    which start at once, or in this process as the iterator is read."""
    workers = worker_count()
    if workers < 2 or rendered.node_count < PARALLEL_FROM or "fork" not in mp.get_all_start_methods():
        yield (_write_all(root, rendered.node_files(start, stop)) for start, stop in slices)
        return
    global _WORK
    _WORK = (root, rendered)  # fork: the workers inherit the study and the compiled templates
    # The study's objects are all alive until the end: the garbage collector need not walk them
    # again, and a walk in a worker would write to (so copy) every page it shares with us.
    gc.freeze()
    try:
        with mp.get_context("fork").Pool(workers, initializer=_quiet_worker) as pool:
            yield pool.imap_unordered(_write_slice, slices)
    finally:
        _WORK = None
        gc.unfreeze()


_WORK: Optional[Tuple[str, Rendered]] = None


def _write_slice(bounds: Tuple[int, int]) -> int:
    root, rendered = _WORK
    return _write_all(root, rendered.node_files(*bounds))


def _quiet_worker() -> None:
    # Ctrl-C reaches the whole process group: the parent stops the pool, workers stay silent
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours the cpuset a batch or login node gives us
    except AttributeError:
        return os.cpu_count() or 1


def _write_all(root: str, files: Iterable[Tuple[str, File]]) -> int:
    """Create each file (never replacing one); scripts get execute permission within the umask."""
    count = 0
    made = set()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        for relpath, file in files:
            target = f"{root}/{relpath}"
            parent = target.rpartition("/")[0]
            if parent not in made:
                _make_directory(parent)
                made.add(parent)
            descriptor = os.open(target, flags, 0o777 if file.executable else 0o666)
            try:
                _write_fully(descriptor, file.text.encode("utf-8"))
            finally:
                os.close(descriptor)
            count += 1
    except OSError as exc:
        raise CompileError(f"cannot write the study directory: {exc}") from None
    return count


def _make_directory(path: str) -> None:
    """The directory and its missing parents (a node's workspace is usually one new directory)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def _write_fully(descriptor: int, data: bytes) -> None:
    written = os.write(descriptor, data)
    while written < len(data):   # a short write: a signal, or a file system near full
        data = data[written:]
        written = os.write(descriptor, data)


def publish(stage: Path, directory: Path) -> None:
    """Move the finished staging directory into place; never replaces a non-empty directory."""
    try:
        os.rename(stage, directory)
    except OSError:
        refuse_existing(directory)
        raise
    os.chmod(directory, 0o755 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
