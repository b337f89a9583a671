"""The serving side: one ``TrustScorer`` per loaded bundle, called on each batch's logits and embeddings.

It applies the temperature, builds prediction sets for a coverage the caller picks, and scores and flags
out-of-distribution inputs, with exactly the code that set the thresholds at export (``modelspec.trust.build``),
so served numbers equal the ones training computed for the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from modelspec.trust.calibration import softmax
from modelspec.trust.conformal import ConformalSets, CoverageError, prediction_sets
from modelspec.trust.ood import KnnReference, MahalanobisReference, Projection, energy_score, msp_score
from modelspec.trust.spec import Trust

if TYPE_CHECKING:
    from modelspec.bundle import Bundle

FloatArray = npt.NDArray[np.floating]

# Tensor names in TRUST_FILE.
CONFORMAL_SCORES = "conformal_scores"
KNN_POINTS = "knn_points"
PROJECTION_MATRIX = "projection_matrix"
PROJECTION_MEAN = "projection_mean"
MAHALANOBIS_WHITENING = "mahalanobis_whitening"
MAHALANOBIS_MEANS = "mahalanobis_means"


@dataclass(frozen=True)
class TrustResult:
    """Per image of a batch: calibrated probabilities, and where the bundle has the data, sets and OOD flags."""

    probs: npt.NDArray[np.float64]  # [images, classes], softmax(logits / T)
    sets: ConformalSets | None  # None unless a coverage was asked for
    ood_score: npt.NDArray[np.float64] | None  # None when the bundle has no OOD data
    out_of_distribution: npt.NDArray[np.bool_] | None


class TrustScorer:
    """Calibration, conformal sets and the OOD score of one bundle. A bundle without trust data gives T = 1,
    ``calibrated`` False, no sets (a coverage raises ``CoverageError``) and no OOD score."""

    def __init__(self, trust: Trust | None, tensors: dict[str, npt.NDArray[np.generic]] | None = None) -> None:
        self.trust = trust
        tensors = tensors or {}
        calibration = trust.calibration if trust else None
        self.temperature = calibration.temperature if calibration else 1.0
        self.conformal = trust.conformal if trust else None
        self.ood = trust.ood if trust else None
        self._scores = np.asarray(tensors[CONFORMAL_SCORES], dtype=np.float64) if self.conformal else None
        self._knn: KnnReference | None = None
        self._mahalanobis: MahalanobisReference | None = None
        projection = None
        if PROJECTION_MATRIX in tensors:
            projection = Projection(
                mean=np.asarray(tensors[PROJECTION_MEAN], dtype=np.float32),
                matrix=np.asarray(tensors[PROJECTION_MATRIX], dtype=np.float32),
            )
        if self.ood is not None and self.ood.method == "knn":
            points = np.ascontiguousarray(tensors[KNN_POINTS], dtype=np.float32)
            self._knn = KnnReference(points=points, k=self.ood.k or 1, projection=projection)
        elif self.ood is not None and self.ood.method == "mahalanobis":
            self._mahalanobis = MahalanobisReference(
                whitening=np.asarray(tensors[MAHALANOBIS_WHITENING], dtype=np.float32),
                means=np.asarray(tensors[MAHALANOBIS_MEANS], dtype=np.float32),
                projection=projection,
            )

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> TrustScorer:
        """Load the bundle's trust data (verified with the bundle's hashes) or none for an older bundle."""
        trust = bundle.spec.trust
        if trust is None or trust.file is None:
            return cls(trust)
        return cls(trust, load_tensors(bundle.file(trust.file)))

    @property
    def calibrated(self) -> bool:
        return self.trust is not None and self.trust.calibration is not None

    @property
    def coverage_range(self) -> tuple[float, float] | None:
        """The smallest and largest coverage levels this bundle serves; None without conformal data."""
        if self.conformal is None:
            return None
        return self.conformal.min_coverage, self.conformal.max_coverage

    def probabilities(self, logits: FloatArray) -> npt.NDArray[np.float64]:
        return softmax(logits, self.temperature)

    def ood_scores(self, logits: FloatArray, probs: FloatArray, embeddings: FloatArray) -> npt.NDArray[np.float64]:
        """The bundle's OOD score of each image (higher: less like the training images)."""
        if self.ood is None:
            raise ValueError("this bundle has no out-of-distribution data")
        if self._knn is not None:
            return self._knn.score(embeddings)
        if self._mahalanobis is not None:
            return self._mahalanobis.score(embeddings)
        if self.ood.method == "energy":
            return energy_score(logits)
        return msp_score(probs)

    def sets(self, probs: FloatArray, coverage: float) -> ConformalSets:
        if self.conformal is None or self._scores is None:
            raise CoverageError(
                "this model has no conformal calibration data (exported without validation images, or by an "
                "older release): re-export it with a validation split to get prediction sets"
            )
        return prediction_sets(
            probs, self._scores, coverage, self.conformal.score, lam=self.conformal.lam, k_reg=self.conformal.k_reg
        )

    def __call__(self, logits: FloatArray, embeddings: FloatArray, coverage: float | None = None) -> TrustResult:
        probs = self.probabilities(logits)
        sets = None if coverage is None else self.sets(probs, coverage)
        if self.ood is None:
            return TrustResult(probs=probs, sets=sets, ood_score=None, out_of_distribution=None)
        scores = self.ood_scores(logits, probs, embeddings)
        return TrustResult(probs=probs, sets=sets, ood_score=scores, out_of_distribution=scores > self.ood.threshold)


def load_tensors(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """The arrays of a trust file (safetensors: no code runs on load)."""
    from safetensors.numpy import load_file  # imported here: only bundles with trust data need it

    return dict(load_file(str(path)))


def save_tensors(path: Path, tensors: dict[str, npt.NDArray[np.generic]]) -> None:
    """Write the arrays as safetensors (a bundle writer: ``write_bundle`` renames the folder into place)."""
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(array) for name, array in tensors.items()}, str(path))
