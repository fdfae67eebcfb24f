"""Atomic file writes: a file appears under its final name only once fully written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_path", "atomic_write", "replace_folder", "staged_folder"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    A crash (or an exception) leaves ``path`` untouched: never a truncated file under the
    final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a file for writing that appears under ``path`` only once fully written."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` whole
    (an older ``path`` is moved aside, the new one renamed in, the old one deleted). An
    exception, or a kill, leaves ``path`` as it was: never a half-written folder under its name,
    never an old folder mixed with new files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        yield work
        replace_folder(work, path)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def replace_folder(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` at ``target``: an existing ``target`` is moved aside
    (``.NAME.old.PID.NS``), ``new`` renamed in, the old one deleted. A kill between the two
    renames leaves both complete copies beside each other (never a mixed folder);
    :class:`~newsrec.core.ArrayCache` recovers its entries from such a state."""
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}.{time.monotonic_ns()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
