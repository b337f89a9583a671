"""One output row per image: its path, its top-k predictions, OOD score and flag, prediction set (with a coverage)
and embedding, or its error.

Rows are built from the pipeline's outcomes with the engine's post-processing (``app.engine.trust``,
``app.engine.postprocess``), so a batch run scores exactly as ``/v1/predict`` answers. Both engines produce them
(the Ray engine's actors ship them to the driver as Arrow tables, ``app.batch.arrow``), and every output format
writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.engine.inference import ImageOutcome
from app.engine.postprocess import l2_normalize, top_k
from app.engine.trust import ImageTrust
from modelspec.preprocess import Float32Array


@dataclass(frozen=True)
class RowOptions:
    """What each row holds besides its path: how many classes, and whether (and how) the embedding."""

    top_k: int = 5
    embeddings: bool = False
    normalize: bool = False
    coverage: float | None = None
    """With a coverage level, each row holds its prediction set (``--coverage``)."""


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
    ood_score: float | None = None
    """None when the model has no OOD reference (and on error)."""
    out_of_distribution: bool | None = None
    prediction_set: tuple[str, ...] | None = None
    """The labels of the set, in class order, when a coverage was asked for."""

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def top1(self) -> str | None:
        return self.predictions[0][0] if self.predictions else None


def model_id(name: str, version: int) -> str:
    return f"{name}:{version}"


def result_row(
    outcome: ImageOutcome, trust: ImageTrust | None, model: str, labels: Sequence[str], options: RowOptions
) -> ResultRow:
    """The row of one image's outcome (``outcome.filename`` is its path as listed) and its trust numbers."""
    path = outcome.filename or ""
    if outcome.error is not None or trust is None:
        assert outcome.error is not None
        return ResultRow(path, model, error_code=outcome.error.code, error_message=str(outcome.error))
    assert outcome.embedding is not None
    predictions = tuple((labels[i], i, score) for i, score in top_k(trust.probabilities, options.top_k))
    embedding = None
    if options.embeddings:
        embedding = l2_normalize(outcome.embedding) if options.normalize else outcome.embedding
    members = None if trust.prediction_set is None else tuple(labels[i] for i in trust.prediction_set)
    return ResultRow(
        path,
        model,
        predictions,
        embedding=embedding,
        ood_score=trust.ood_score,
        out_of_distribution=trust.out_of_distribution,
        prediction_set=members,
    )
