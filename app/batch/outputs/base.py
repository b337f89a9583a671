"""What every output format shares: the interface, its error, what a resumed output holds, and where a text
output keeps its embeddings. Apart from ``app.batch.outputs`` (which picks a format) so the formats need not
import the package that imports them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.batch.rows import ResultRow


class OutputError(ValueError):
    """The output cannot be written or continued; the message says what to do."""


@dataclass
class Resumed:
    """What an existing output already holds."""

    paths: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)


class Output(Protocol):
    path: Path

    def resumed(self) -> Resumed:
        """The rows already there (empty for a new output)."""
        ...

    def write(self, rows: Sequence[ResultRow]) -> None:
        """Append ``rows``; on disk (fsync) when this returns."""
        ...

    def finish(self) -> None:
        """The run is complete: leave the output in its final form and release it."""
        ...

    def close(self) -> None:
        """The run stopped early: release the output, resumable as it is."""
        ...


def embeddings_path(path: Path) -> Path:
    """Where a CSV or JSONL output keeps its embeddings: ``out.csv`` -> ``out.csv.embeddings.npy``."""
    return path.with_name(path.name + ".embeddings.npy")
