"""One output row per image: its path and its top-k predictions (plus its embedding), or its error.

Rows are built from the pipeline's outcomes with ``app.api.encode``'s post-processing, so a batch run scores exactly as
``/v1/predict`` answers. Both engines produce them (the Ray engine's actors ship them to the driver as Arrow
tables, ``app.batch.arrow``), and every output format writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.engine.inference import ImageOutcome
from app.engine.postprocess import l2_normalize, top_k
from modelspec.preprocess import Float32Array


@dataclass(frozen=True)
class RowOptions:
    """What each row holds besides its path: how many classes, and whether (and how) the embedding."""

    top_k: int = 5
    embeddings: bool = False
    normalize: bool = False


@dataclass(frozen=True)
class ResultRow:
    path: str
    model: str
    """``name:version`` of the model that made the row."""
    predictions: tuple[tuple[str, int, float], ...] = ()
    """``(label, index, score)``, best first; empty on error."""
    error_code: str | None = None
    error_message: str | None = None
    embedding: Float32Array | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def top1(self) -> str | None:
        return self.predictions[0][0] if self.predictions else None


def model_id(name: str, version: int) -> str:
    return f"{name}:{version}"


def result_row(outcome: ImageOutcome, model: str, labels: Sequence[str], options: RowOptions) -> ResultRow:
    """The row of one image's outcome (``outcome.filename`` is its path as listed)."""
    path = outcome.filename or ""
    if outcome.error is not None:
        return ResultRow(path, model, error_code=outcome.error.code, error_message=str(outcome.error))
    assert outcome.logits is not None and outcome.embedding is not None
    predictions = tuple((labels[i], i, score) for i, score in top_k(outcome.logits, options.top_k))
    embedding = None
    if options.embeddings:
        embedding = l2_normalize(outcome.embedding) if options.normalize else outcome.embedding
    return ResultRow(path, model, predictions, embedding=embedding)
