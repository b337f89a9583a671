"""A full disk, recognised and described the same way wherever a user's files are written (bundles, batch output)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


def is_disk_full(exc: BaseException) -> bool:
    """A full disk (or quota), also when a library wrapped the ``OSError`` (the ONNX exporter does) or only says so
    in its message (pyarrow's errors may carry no errno)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def free_space(path: Path) -> str:
    """'N bytes free' on the disk of ``path`` (or of its nearest existing parent), for an error message."""
    existing = next((folder for folder in (path, *path.parents) if folder.exists()), Path("."))
    try:
        return f"{shutil.disk_usage(existing).free:,} bytes free"
    except OSError:
        return "free space unknown"
