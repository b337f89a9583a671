"""The closest of the names a user could have meant ("did you mean ...?"), for every lookup that refuses a name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def _folded(word: str) -> str:
    return word.casefold().replace("_", "-")


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` most likely meant (case and ``_``/``-`` aside, then by spelling), or None."""
    names = list(choices)
    for name in names:
        if _folded(name) == _folded(word):
            return name
    folded = {_folded(name): name for name in names}
    match = difflib.get_close_matches(_folded(word), list(folded), n=1, cutoff=0.6)
    return folded[match[0]] if match else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` to append to a refusal, or ``""`` when nothing is close."""
    match = closest(word, choices)
    return f"; did you mean {match!r}?" if match is not None and match != word else ""
