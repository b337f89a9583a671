"""Split conformal prediction sets (Angelopoulos & Bates, arXiv:2107.07511; RAPS: arXiv:2009.14193).

A conformity score says how badly a label fits an image (higher: worse). On n calibration images the score of the
true label is computed once and the scores are kept sorted; for a coverage level 1 - alpha the threshold is the
k-th smallest score with k = ceil((n + 1)(1 - alpha)), and an image's prediction set is every label whose score is
at most the threshold. Guarantee: for a new image exchangeable with the calibration images, the set holds its true
label with probability at least 1 - alpha (marginal, over images and calibration draws; not per class, not per
image, and not for images unlike the calibration set). Since k must not exceed n, levels above n / (n + 1) cannot
be served; below 1 / (n + 1) every level gives the same sets as 1 / (n + 1).

Scores: ``lac`` 1 - p(y) (smallest sets); ``aps`` the probability mass of the labels ranked above y (sets grow
with the image's uncertainty); ``raps`` APS plus ``lam`` per rank of y beyond ``k_reg`` (fewer large sets). APS and
RAPS are used in their deterministic form (the randomised one's u = 0: the label's own mass is not added), so the
same image always gets the same set and the top-1 label, scoring 0, is always in it; adding the label's own mass
instead would leave the most confident images with empty sets, and including their top label anyway would make the
sets cover far more than asked (measured: 0.996 for 0.9). A LAC set can be empty (no label likely enough); by
default the top-1 label is added to it, which only adds coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

ScoreName = Literal["lac", "aps", "raps"]
SCORES: tuple[ScoreName, ...] = ("lac", "aps", "raps")
RAPS_LAMBDA = 0.01
RAPS_K_REG = 2

FloatArray = npt.NDArray[np.floating]


class CoverageError(ValueError):
    """A coverage level the calibration set cannot serve; the message names the smallest and largest it can."""


def label_scores(
    probs: FloatArray, score: ScoreName, *, lam: float = RAPS_LAMBDA, k_reg: int = RAPS_K_REG
) -> npt.NDArray[np.float64]:
    """The conformity score of every label of every image, [images, classes] (higher: the label fits worse)."""
    p64: npt.NDArray[np.float64] = np.asarray(probs, dtype=np.float64)
    if score == "lac":
        return 1.0 - p64
    order = np.argsort(-p64, axis=1, kind="stable")
    sorted_probs = np.take_along_axis(p64, order, axis=1)
    cumulative = np.cumsum(sorted_probs, axis=1) - sorted_probs  # the mass ranked strictly above each label
    if score == "raps":
        rank = np.arange(1, p64.shape[1] + 1, dtype=np.float64)
        cumulative = cumulative + lam * np.maximum(rank - k_reg, 0.0)
    elif score != "aps":
        raise ValueError(f"unknown conformal score {score!r}: use one of {', '.join(SCORES)}")
    scores: npt.NDArray[np.float64] = np.empty_like(cumulative)
    np.put_along_axis(scores, order, cumulative, axis=1)
    return scores


def true_label_scores(
    probs: FloatArray, labels: npt.NDArray[np.integer], score: ScoreName, **kwargs: float
) -> npt.NDArray[np.float64]:
    """The score of each calibration image's true label: what is stored, sorted, at export."""
    every = label_scores(probs, score, **kwargs)  # type: ignore[arg-type]
    labels = np.asarray(labels)
    chosen: npt.NDArray[np.float64] = every[np.arange(len(labels)), labels]
    return chosen


def coverage_range(n: int) -> tuple[float, float]:
    """The smallest and largest coverage levels that ``n`` calibration scores can serve: 1/(n+1) and n/(n+1)."""
    return 1.0 / (n + 1), n / (n + 1)


def threshold(sorted_scores: FloatArray, coverage: float) -> float:
    """The score threshold for ``coverage`` (= 1 - alpha): the ceil((n+1)(1-alpha))-th smallest calibration score."""
    n = len(sorted_scores)
    if n == 0:
        raise CoverageError("no calibration scores: this model has no conformal calibration data")
    low, high = coverage_range(n)
    if not (0.0 < coverage < 1.0) or coverage > high + 1e-12:
        raise CoverageError(
            f"coverage {coverage:g} cannot be served: with {n} calibration images this model supports levels "
            f"from {low:.4g} to {high:.4g} (pass a value in that range, e.g. 0.9)"
        )
    k = max(1, math.ceil((n + 1) * coverage - 1e-9))  # the tolerance keeps 0.9 * 1001 from rounding up to 902
    return float(sorted_scores[min(k, n) - 1])


@dataclass(frozen=True)
class ConformalSets:
    """The prediction sets of a batch: a boolean mask [images, classes], and the threshold used."""

    mask: npt.NDArray[np.bool_]
    threshold: float

    def indices(self, row: int) -> list[int]:
        """Indices of one image's set, in class order."""
        return [int(i) for i in np.flatnonzero(self.mask[row])]

    @property
    def sizes(self) -> npt.NDArray[np.int64]:
        sizes: npt.NDArray[np.int64] = self.mask.sum(axis=1).astype(np.int64)
        return sizes


def prediction_sets(
    probs: FloatArray,
    sorted_scores: FloatArray,
    coverage: float,
    score: ScoreName,
    *,
    lam: float = RAPS_LAMBDA,
    k_reg: int = RAPS_K_REG,
    include_top: bool = True,
) -> ConformalSets:
    """The prediction set of each image at ``coverage``, from the sorted calibration scores of the same score;
    with ``include_top`` the top-1 label is always in it (never an empty set)."""
    cut = threshold(sorted_scores, coverage)
    mask = label_scores(probs, score, lam=lam, k_reg=k_reg) <= cut
    if include_top:
        mask[np.arange(len(mask)), np.asarray(probs).argmax(axis=1)] = True
    return ConformalSets(mask=mask, threshold=cut)
