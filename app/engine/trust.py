"""Trust post-processing: calibrated probabilities, conformal prediction sets and the OOD score of each image.

The scorer of a bundle is obtained here and nowhere else (``scorer_for``), so that a model served at another
precision can be handed the statistics fitted on its own outputs. ``assess`` scores a request's images with one
vectorised scorer call (not one per image) and records what monitoring watches (``app.engine.metrics``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from app.engine.metrics import TrustRecorder
from modelspec import Bundle, BundleError
from modelspec.trust import CoverageError, Precision, TrustScorer
from modelspec.trust import scorer_for as trust_scorer_for

NO_CONFORMAL_DATA = (
    "this model has no conformal calibration data (it was exported without a validation split, or by an older "
    "release), so it cannot give prediction sets: retrain it with imgclf-train (which keeps a validation split) "
    "to get them, or leave out coverage"
)


def scorer_for(bundle: Bundle, precision: Precision = "fp32") -> TrustScorer:
    """The trust scorer of ``bundle`` served at ``precision`` (the one function that makes it): an int8 graph is
    scored with the statistics refitted on its own validation outputs (``modelspec.trust.trust_for``)."""
    try:
        return trust_scorer_for(bundle, precision)
    except BundleError:
        raise
    except Exception as exc:  # safetensors' own error, a missing array: the bundle cannot serve as it says
        raise BundleError(
            f"{bundle.path}: its trust data cannot be read ({type(exc).__name__}: {exc}); re-export the bundle"
        ) from exc


def check_coverage(scorer: TrustScorer, coverage: float | None) -> None:
    """Raise ``CoverageError`` (naming the levels served, or saying there are none) before any image is run."""
    if coverage is None:
        return
    served = scorer.coverage_range
    if served is None:
        raise CoverageError(NO_CONFORMAL_DATA)
    low, high = served
    if not math.isfinite(coverage) or not 0.0 < coverage < 1.0 or coverage > high + 1e-12:
        images = scorer.conformal.images if scorer.conformal else 0
        raise CoverageError(
            f"coverage {coverage:g} cannot be served: with {images} calibration images this model serves levels "
            f"from {low:.4g} to {high:.4g}; pass a value in that range, e.g. coverage=0.9"
        )


class Outcome(Protocol):
    """What ``assess`` reads of an image's outcome (``app.engine.inference.ImageOutcome``, which imports the model
    floor that imports this module): its outputs, None where it failed."""

    @property
    def logits(self) -> npt.NDArray[np.float32] | None: ...

    @property
    def embedding(self) -> npt.NDArray[np.float32] | None: ...


@dataclass(frozen=True)
class ImageTrust:
    """One image's served probabilities (calibrated where the bundle is), OOD score and flag, prediction set."""

    probabilities: npt.NDArray[np.float32]  # float32, the precision the model computes in (as it always served)
    ood_score: float | None
    out_of_distribution: bool | None
    prediction_set: list[int] | None  # class indices, in class order; None unless a coverage was asked for


def assess(
    scorer: TrustScorer,
    outcomes: Sequence[Outcome],
    coverage: float | None = None,
    recorder: TrustRecorder | None = None,
) -> list[ImageTrust | None]:
    """Score every answered image of a request in one scorer call; None where an image has an error."""
    rows = [i for i, outcome in enumerate(outcomes) if outcome.logits is not None and outcome.embedding is not None]
    results: list[ImageTrust | None] = [None] * len(outcomes)
    if not rows:
        return results
    logits = np.stack([outcomes[i].logits for i in rows])  # type: ignore[misc]
    embeddings = np.stack([outcomes[i].embedding for i in rows])  # type: ignore[misc]
    scored = scorer(logits, embeddings, coverage)
    if recorder is not None:
        recorder(scored.probs.max(axis=1), scored.ood_score, scored.out_of_distribution)
    probs = scored.probs.astype(np.float32)
    ood = scored.ood_score.tolist() if scored.ood_score is not None else [None] * len(rows)
    flags = scored.out_of_distribution.tolist() if scored.out_of_distribution is not None else [None] * len(rows)
    for row, i in enumerate(rows):
        results[i] = ImageTrust(
            probabilities=probs[row],
            ood_score=ood[row],
            out_of_distribution=flags[row],
            prediction_set=scored.sets.indices(row) if scored.sets is not None else None,
        )
    return results


def probabilities(scorer: TrustScorer, logits: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Served probabilities of a batch of logits (calibrated where the bundle is), for callers with logits only."""
    return scorer.probabilities(logits)
