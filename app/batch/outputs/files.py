"""Durable file operations: what a batch output needs so that a crash or ``kill -9`` leaves it readable."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from app.batch.outputs.base import OutputError
from modelspec.diskspace import free_space, is_disk_full


class DiskFullError(OutputError):
    """The disk of an output is full; what was being written has been taken back (the output stays whole)."""


def disk_full(path: Path, needed: int) -> DiskFullError:
    """The one-line refusal: the path, the space it needs, the space there is, and how to finish the run."""
    return DiskFullError(
        f"no space left on the disk of {path}: writing it needs at least {needed:,} more bytes "
        f"({free_space(path.parent)}); "
        "free some space, then rerun with --resume to finish"
    )


def append_durably(handle: int, data: bytes, path: Path) -> None:
    """Append all of ``data`` (to ``path``, open as ``handle``) and wait until it is on disk. A full disk takes the
    part already written back and raises ``DiskFullError``: the file ends where it ended before."""
    size = os.fstat(handle).st_size
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(handle, view) :]
        os.fsync(handle)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        os.ftruncate(handle, size)
        raise disk_full(path, len(data)) from None


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as handle:
        handle.truncate(size)
        handle.flush()
        os.fsync(handle.fileno())


def remove(path: Path) -> None:
    """Remove a file or a folder, if there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
