"""Pass 6: write the rendered study directory atomically (staging directory, then rename)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from .errors import CompileError, OutputExistsError
from .model import Rendered


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


def write_files(stage: Path, rendered: Rendered, copies: Mapping[str, Path]) -> None:
    made = set()
    try:
        for relpath, file in rendered.files.items():
            target = stage / relpath
            parent = target.parent
            if parent not in made:
                parent.mkdir(parents=True, exist_ok=True)
                made.add(parent)
            with open(target, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(file.text)
            if file.executable:
                os.chmod(target, 0o755)
        for relpath, source in copies.items():
            shutil.copyfile(source, stage / relpath)
        with open(stage / "study.json", "w", encoding="utf-8") as handle:
            json.dump(rendered.manifest, handle, indent=1, sort_keys=False)
            handle.write("\n")
    except OSError as exc:
        raise CompileError(f"cannot write the study directory: {exc}") from None


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
