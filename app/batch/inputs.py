"""What to classify: a folder (searched recursively), a glob pattern, or a text file listing one path per line.

Every input becomes a list of image paths, each with the name the output reports for it: the path as listed
(relative paths stay relative), so that the output reads like the listing and ``--resume`` recognises what is done.
The list is sorted for a folder or a glob (a rerun sees the same order) and kept in order for a text file;
duplicates are dropped, since each path gets one row.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

# Images a folder or a glob picks up, by extension (case-insensitive), as torchvision's ImageFolder does: a
# dataset folder's README or labels.csv is not an image. A path listed in a text file is taken whatever its name,
# and a file that is not an image gets an error row.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".mpo"})
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
GLOB_CHARACTERS = frozenset("*?[")


class InputError(ValueError):
    """The input cannot be listed; the message says what was expected."""


@dataclass(frozen=True)
class ImagePath:
    name: str
    """The path as listed: the row's ``path``."""
    file: Path
    """Where to read it (absolute, so another process or machine with the same mounts reads the same file)."""


def list_images(spec: str) -> list[ImagePath]:
    """The images ``spec`` names: a folder, a glob pattern, or a text file of paths (see the module docstring)."""
    path = Path(spec)
    if path.is_dir():
        names = sorted(_walk(path))
    elif path.is_file():
        names = _read_listing(path) if path.suffix.lower() in LIST_EXTENSIONS else [spec]
    elif GLOB_CHARACTERS & set(spec):
        names = sorted(
            name for name in glob.glob(spec, recursive=True) if _is_image_name(name) and Path(name).is_file()
        )
        if not names:
            raise InputError(f"no image file matches {spec!r} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    else:
        raise InputError(
            f"{spec} does not exist; pass a folder of images, a glob pattern in quotes ('photos/**/*.jpg') "
            "or a text file listing one image path per line"
        )
    return [ImagePath(name, Path(os.path.abspath(name))) for name in dict.fromkeys(names)]


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk(folder: Path) -> list[str]:
    """Image files under ``folder``, hidden files and folders skipped, symbolic links to folders not followed."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(os.path.join(root, f) for f in files if not f.startswith(".") and _is_image_name(f))
    return found


def _read_listing(path: Path) -> list[str]:
    """One path per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the listing {path} ({exc}); it should be UTF-8 text, one path per line") from exc
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
