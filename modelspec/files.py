"""Writing a file so that nobody ever reads half of it: the one way the project replaces a file it writes.

Bundles, checkpoints, cached features and graphs, training reports and figures, the speed memory and the benchmark
reports all go through ``write_atomically``: the content is written to a temporary file beside the target (same
folder, so the same filesystem), then renamed over it. A reader sees the old file or the new one; a writer that
fails or is killed leaves the old file as it was. Temporary names are unique, so several processes may write the
same file at once (the last rename wins). They are hidden and end in ``.part``, so no reader that lists a folder
(``*.onnx``, ``*.json``) takes one for a finished file; a writer that picks its format from the name (matplotlib's
``savefig``) has to be told the format.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

NEW_FILE_MODE = 0o644
"""The permissions of a new file (``mkstemp`` makes it 0o600): readable by a server running as another user."""


def write_atomically(path: Path, write: Callable[[Path], object], *, durable: bool = False) -> None:
    """Replace ``path`` with what ``write`` writes to the temporary path it is given. A file that existed keeps its
    permissions. ``durable``: the file and its folder are flushed to disk before this returns, so the new content
    survives a power cut (for what a user cannot recreate: a bundle's model.json)."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, _mode_of(path))
        if durable:
            fsync_path(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    if durable:
        with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened and synced
            fsync_path(path.parent)


def write_text_atomically(path: Path, text: str, *, durable: bool = False) -> None:
    """``write_atomically`` of UTF-8 text."""
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), durable=durable)


def _mode_of(path: Path) -> int:
    """The permissions the new content gets: the file's own, or ``NEW_FILE_MODE`` for a new (or vanished) one."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return NEW_FILE_MODE


def fsync_path(path: Path) -> None:
    """Wait until the file or folder at ``path`` is on disk. A folder's entries are data too: fsync it after a
    rename or a new file in it, or a power cut may lose them."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
