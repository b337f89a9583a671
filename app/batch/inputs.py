"""What to classify: a folder (searched recursively), a glob pattern, or a text file listing one path per line.

Every input becomes a list of image paths, each with the name the output reports for it: the path as listed
(relative paths stay relative), so that the output reads like the listing and ``--resume`` recognises what is done.
The list is sorted for a folder or a glob (a rerun sees the same order) and kept in order for a text file;
duplicates are dropped, since each path gets one row.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from modelspec.decode import IMAGE_EXTENSIONS, is_image_name

# A folder or a glob picks up images by extension (case-insensitive; modelspec.decode keeps the one list), as
# torchvision's ImageFolder does: a dataset folder's README or labels.csv is not an image. A path listed in a text
# file is taken whatever its name, and a file that is not an image gets an error row.
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


@dataclass(frozen=True)
class Listing:
    images: list[ImagePath]
    skipped: Counter[str] = field(default_factory=Counter)
    """Files a folder or a glob held that are not images by their extension, by extension (``.pdf``)."""


def skipped_text(skipped: Counter[str]) -> str:
    """``skipped 3 files: 2 .pdf, 1 .docx``."""
    total = sum(skipped.values())
    kinds = ", ".join(f"{n:,} {extension}" for extension, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"skipped {total:,} file{'s' if total != 1 else ''}: {kinds}"


def list_images(spec: str) -> list[ImagePath]:
    """The images ``spec`` names: a folder, a glob pattern, or a text file of paths (see the module docstring)."""
    return scan_inputs(spec).images


def scan_inputs(spec: str) -> Listing:
    """The images ``spec`` names, and the files it skipped by extension; an ``InputError`` if it names no image."""
    path = Path(spec)
    skipped: Counter[str] = Counter()
    if path.is_dir():
        names = sorted(_walk(path, skipped))
        if not names:
            raise InputError(_no_image(f"no image file in {spec}", skipped))
    elif path.is_file():
        names = _read_listing(path) if path.suffix.lower() in LIST_EXTENSIONS else [spec]
    elif GLOB_CHARACTERS & set(spec):
        files = [name for name in glob.glob(spec, recursive=True) if Path(name).is_file()]
        names = sorted(name for name in files if is_image_name(name))
        skipped.update(_extension(name) for name in files if not is_image_name(name))
        if not names:
            raise InputError(_no_image(f"no image file matches {spec!r}", skipped))
    else:
        raise InputError(
            f"{spec} does not exist; pass a folder of images, a glob pattern in quotes ('photos/**/*.jpg') "
            "or a text file listing one image path per line"
        )
    return Listing([ImagePath(name, Path(os.path.abspath(name))) for name in dict.fromkeys(names)], skipped)


def _no_image(what: str, skipped: Counter[str]) -> str:
    found = f" ({skipped_text(skipped)})" if skipped else ""
    return f"{what}{found}; images are read by extension: {', '.join(sorted(IMAGE_EXTENSIONS))}"


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower() or "without extension"


def _walk(folder: Path, skipped: Counter[str]) -> list[str]:
    """Image files under ``folder``, hidden files and folders skipped, symbolic links to folders not followed;
    ``skipped`` counts the other files by extension."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            if is_image_name(name):
                found.append(os.path.join(root, name))
            else:
                skipped[_extension(name)] += 1
    return found


def _read_listing(path: Path) -> list[str]:
    """One path per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the listing {path} ({exc}); it should be UTF-8 text, one path per line") from exc
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
