"""Image folders: scanning an ImageFolder tree and checking that every image decodes, and its fingerprint."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from modelspec.decode import ALLOWED_FORMATS
from training.errors import DataError

logger = logging.getLogger(__name__)

Sample = tuple[Path, int]


@dataclass(frozen=True)
class ImageFolder:
    """The readable images of an ImageFolder tree (``root/<class>/<image>``) and the files that were skipped."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    skipped: tuple[tuple[Path, str], ...] = field(default=())

    def counts(self) -> list[int]:
        """Images per class, in class order."""
        found = Counter(label for _, label in self.samples)
        return [found[index] for index in range(len(self.classes))]


def scan_image_folder(root: Path, classes: Sequence[str] | None = None) -> ImageFolder:
    """Index ``root`` and check that every image decodes; unreadable files are skipped and counted.

    ``classes`` (the training classes) makes this a validation/test folder: its class folders must be among them
    and keep their indices. Raises ``DataError`` for a missing folder, no class folders, an empty class, or (for a
    training folder) a single class, so the problem shows before any training starts.
    """
    found = _class_folders(root)
    if classes is None:
        if len(found) == 1:
            raise DataError(f"{root} has a single class folder ({found[0]!r}); a classifier needs two or more")
        classes = found
    else:
        _check_known_classes(root, found, classes)
    index = {name: i for i, name in enumerate(classes)}
    candidates = [(path, index[name]) for name in found for path in _files_under(root / name)]
    problems = _check_images([path for path, _ in candidates])
    samples = tuple(sample for sample, problem in zip(candidates, problems, strict=True) if not problem)
    skipped = tuple((sample[0], problem) for sample, problem in zip(candidates, problems, strict=True) if problem)
    for path, problem in skipped[:10]:
        logger.warning("skipping unreadable file %s (%s)", path, problem)
    if len(skipped) > 10:
        logger.warning("... and %d more unreadable files", len(skipped) - 10)
    folder = ImageFolder(root=root, classes=tuple(classes), samples=samples, skipped=skipped)
    empty = [name for name in found if folder.counts()[index[name]] == 0]
    if empty:
        unreadable = f" ({len(skipped)} unreadable files skipped)" if skipped else ""
        raise DataError(
            f"class folder(s) with no readable images in {root}: {', '.join(empty)}{unreadable}; "
            "add images or remove the folder"
        )
    return folder


def _class_folders(root: Path) -> list[str]:
    if not root.exists():
        raise DataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; expected an ImageFolder tree <root>/<class>/<image>")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root} has no class folders; expected an ImageFolder tree <root>/<class>/<image>")
    return found


def _check_known_classes(root: Path, found: Sequence[str], classes: Sequence[str]) -> None:
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root} has class folders the model does not know: {', '.join(unknown)}")
    missing = sorted(set(classes) - set(found))
    if missing:
        logger.warning("%s has no folder for class(es) %s", root, ", ".join(missing))


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file below ``folder``, in a stable order (sub-folders included, as torchvision does)."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / name for name in sorted(filenames) if not name.startswith("."))
    return files


def _check_image(path: Path) -> str:
    """'' if ``path`` decodes as an image of a format the service reads too (modelspec.decode's list, HEIC and AVIF
    included), else why not. JPEGs decode at 1/8 scale: truncation still shows."""
    try:
        with Image.open(path, formats=ALLOWED_FORMATS) as image:
            image.draft(None, (1, 1))
            image.load()
    except Exception as exc:  # Pillow raises many types for bad files (OSError, SyntaxError, ValueError, ...)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ""


def _check_images(paths: Sequence[Path]) -> list[str]:
    # Decoding releases the GIL, so threads use every core.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(_check_image, paths, chunksize=64))


def fingerprint(folders: Sequence[ImageFolder]) -> str:
    """sha256 of the class names and each image's relative path and size: changes when the data does."""
    digest = hashlib.sha256()
    for number, folder in enumerate(folders):
        digest.update(f"folder {number}: {'/'.join(folder.classes)}\n".encode())
        for path in sorted(path.relative_to(folder.root).as_posix() for path, _ in folder.samples):
            digest.update(f"{path}\t{(folder.root / path).stat().st_size}\n".encode())
    return "sha256:" + digest.hexdigest()
