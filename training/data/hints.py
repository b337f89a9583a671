"""What the class folders say about the data, before anything trains: a ``--data`` that points at the parent of the
splits (class folders named ``train``, ``test``, ...), and classes that are digits or text (no mirror images).

Digits or text, by a rule one can predict: every class name is a single character (``0`` .. ``9``, ``a`` .. ``z``,
a letter of any script) or every class name is a number (``10``, ``11``, ...). A mirrored ``2`` or ``b`` is not a
``2`` or a ``b``, so horizontal flips teach such a classifier wrong images; for photos they are right.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SPLIT_FOLDERS = frozenset({"train", "training", "test", "testing", "val", "valid", "validation", "dev"})
"""Folder names that hold a split of a dataset, not a class."""


def looks_like_text(classes: Sequence[str]) -> bool:
    """Every class name is one character, or every one is a number: digits or text (see the module docstring)."""
    names = [name.strip() for name in classes]
    return bool(names) and (all(len(name) == 1 for name in names) or all(name.isdigit() for name in names))


def split_folders_warning(root: Path, classes: Sequence[str]) -> str | None:
    """A warning when two or more class folders of ``root`` are named like splits (``train``, ``test``): ``--data``
    then points at the folder above the training images, and the model would learn "train vs test"."""
    splits = [name for name in classes if name.lower() in SPLIT_FOLDERS]
    if len(splits) < 2 and not (splits and len(classes) == len(splits)):
        return None
    train = next((name for name in classes if name.lower() in ("train", "training")), None)
    hint = f"pass --data {root / train}" if train else f"pass --data {root}/<split folder>"
    others = [name for name in splits if name != train]
    held_out = (
        f" (and --val-data {root / others[0]} or --test-data {root / others[0]} for the other split)" if others else ""
    )
    return (
        f"the class folders of {root} are named {', '.join(splits)}: these look like the splits of a dataset, not "
        f"classes, so the model would learn to tell the splits apart; {hint}{held_out}"
    )
