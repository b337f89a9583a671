"""Out-of-distribution scores: how unlike the training images an input is (higher: more unlike).

- ``knn``: distance to the k-th nearest training embedding, all L2-normalised (Sun et al. 2022, arXiv:2204.06507).
- ``mahalanobis``: smallest Mahalanobis distance to a class mean under one shared covariance (Lee et al. 2018,
  arXiv:1807.03888), on L2-normalised embeddings, the covariance shrunk towards a multiple of the identity so that
  it stays invertible with fewer images than dimensions.
- ``energy``: -logsumexp(logits) (Liu et al. 2020, arXiv:2010.03759); ``msp``: 1 - the top softmax probability
  (Hendrycks & Gimpel 2017). Both need nothing stored.

A reference (``KnnReference``, ``MahalanobisReference``) is built once at export from the training embeddings and
holds only float arrays, so it is stored as safetensors. The flag threshold is a quantile of the scores of held-out
in-distribution images (by default 95 % of them pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

OodMethod = Literal["knn", "mahalanobis", "energy", "msp"]
OOD_METHODS: tuple[OodMethod, ...] = ("knn", "mahalanobis", "energy", "msp")
KNN_K = 50
SHRINKAGE = 0.1
PASS_RATE = 0.95
PCA_ROWS = 10_000

FloatArray = npt.NDArray[np.floating]
F32 = npt.NDArray[np.float32]


def l2_normalise(x: FloatArray) -> F32:
    """Rows scaled to unit length (a zero row stays zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    result: F32 = x / np.maximum(norms, np.float32(1e-12))
    return result


def energy_score(logits: FloatArray) -> npt.NDArray[np.float64]:
    """-logsumexp(logits): low for confident in-distribution inputs, higher for unfamiliar ones."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=1)
    result: npt.NDArray[np.float64] = -(top + np.log(np.exp(z - top[:, None]).sum(axis=1)))
    return result


def msp_score(probs: FloatArray) -> npt.NDArray[np.float64]:
    """1 - the largest softmax probability."""
    result: npt.NDArray[np.float64] = 1.0 - np.asarray(probs, dtype=np.float64).max(axis=1)
    return result


def subsample(embeddings: FloatArray, cap: int, seed: int = 0) -> FloatArray:
    """At most ``cap`` rows, drawn uniformly without replacement (all of them, in order, when there are fewer)."""
    if len(embeddings) <= cap:
        return embeddings
    rows = np.sort(np.random.default_rng(seed).choice(len(embeddings), size=cap, replace=False))
    return embeddings[rows]


@dataclass(frozen=True)
class Projection:
    """The top principal directions of the normalised training embeddings: distances between projected points
    approximate the distances between the originals, with a fraction of the numbers to store and multiply."""

    mean: F32  # [embedding size]
    matrix: F32  # [embedding size, dims]

    @classmethod
    def fit(cls, unit: FloatArray, dims: int, *, rows: int = PCA_ROWS, seed: int = 0) -> Projection:
        """Fit on at most ``rows`` rows: the leading directions settle long before the SVD's cost does."""
        sample = np.asarray(subsample(unit, rows, seed), dtype=np.float32)
        mean = sample.mean(axis=0)
        _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
        return cls(mean=mean.astype(np.float32), matrix=np.ascontiguousarray(vt[:dims].T, dtype=np.float32))

    def __call__(self, unit: FloatArray) -> F32:
        result: F32 = ((np.asarray(unit, dtype=np.float32) - self.mean) @ self.matrix).astype(np.float32)
        return result


def _prepare(embeddings: FloatArray, projection: Projection | None) -> F32:
    """Queries in a reference's space: normalised, then projected when the reference is."""
    unit = l2_normalise(embeddings)
    return unit if projection is None else projection(unit)


@dataclass(frozen=True)
class KnnReference:
    """Normalised training embeddings (optionally projected onto their top principal directions), and k. The
    score is the Euclidean distance to the k-th nearest of them."""

    points: F32  # [reference images, dims]
    k: int
    projection: Projection | None = None
    _squared_norms: F32 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_squared_norms", (self.points.astype(np.float32) ** 2).sum(axis=1))

    @classmethod
    def build(
        cls,
        embeddings: FloatArray,
        *,
        k: int = KNN_K,
        cap: int | None = None,
        dims: int | None = None,
        seed: int = 0,
    ) -> KnnReference:
        """From training embeddings: normalise, keep at most ``cap`` rows, and project onto ``dims`` directions."""
        unit = l2_normalise(embeddings)
        if cap is not None:
            unit = np.asarray(subsample(unit, cap, seed), dtype=np.float32)
        if len(unit) < k:
            raise ValueError(f"k={k} needs at least {k} reference images, got {len(unit)}")
        projection = Projection.fit(unit, dims) if dims is not None and dims < unit.shape[1] else None
        points = unit if projection is None else projection(unit)
        return cls(points=np.ascontiguousarray(points, dtype=np.float32), k=k, projection=projection)

    def score(self, embeddings: FloatArray) -> npt.NDArray[np.float64]:
        """Distance from each query to its k-th nearest reference point (to float32 precision: a query on a
        reference point scores about 1e-4 rather than 0)."""
        queries = _prepare(embeddings, self.projection)
        # |q - r|^2 = |q|^2 + |r|^2 - 2 q.r: one matrix product for the whole reference.
        partial = self._squared_norms - 2.0 * (queries @ self.points.T)
        kth = np.partition(partial, self.k - 1, axis=1)[:, self.k - 1].astype(np.float64)
        squared = kth + (queries.astype(np.float64) ** 2).sum(axis=1)
        result: npt.NDArray[np.float64] = np.sqrt(np.maximum(squared, 0.0))
        return result


@dataclass(frozen=True)
class MahalanobisReference:
    """Class means and a whitening matrix W (W W^T = the inverse of the shared, shrunk covariance), in the
    normalised (optionally projected) embedding space, with the means already whitened: the score is a few matrix
    products whose size does not grow with the training set."""

    whitening: F32  # [dims, dims]
    means: F32  # [classes, dims], whitened
    projection: Projection | None = None
    _squared_means: F32 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Once, not per call: for 1,000 classes this was a third of the score's time at batch 1.
        object.__setattr__(self, "_squared_means", (self.means**2).sum(axis=1))

    @classmethod
    def build(
        cls,
        embeddings: FloatArray,
        labels: npt.NDArray[np.integer],
        *,
        shrinkage: float = SHRINKAGE,
        dims: int | None = None,
    ) -> MahalanobisReference:
        unit = l2_normalise(embeddings)
        projection = Projection.fit(unit, dims) if dims is not None and dims < unit.shape[1] else None
        points = (unit if projection is None else projection(unit)).astype(np.float64)
        labels = np.asarray(labels)
        classes = np.unique(labels)
        means = np.stack([points[labels == c].mean(axis=0) for c in classes])
        centred = points - means[np.searchsorted(classes, labels)]
        cov = centred.T @ centred / max(len(points) - len(classes), 1)
        size = cov.shape[0]
        cov = (1.0 - shrinkage) * cov + shrinkage * (np.trace(cov) / size) * np.eye(size)
        values, vectors = np.linalg.eigh(cov)
        whitening = vectors / np.sqrt(np.maximum(values, 1e-12))
        return cls(
            whitening=whitening.astype(np.float32),
            means=(means @ whitening).astype(np.float32),
            projection=projection,
        )

    def score(self, embeddings: FloatArray) -> npt.NDArray[np.float64]:
        """Smallest squared Mahalanobis distance to a class mean."""
        white = _prepare(embeddings, self.projection) @ self.whitening
        # |w - m|^2 = |w|^2 - 2 w.m + |m|^2, for every class at once.
        d2 = (white**2).sum(axis=1, keepdims=True) - 2.0 * white @ self.means.T + self._squared_means
        result: npt.NDArray[np.float64] = np.maximum(d2.min(axis=1), 0.0).astype(np.float64)
        return result


def pass_threshold(scores: FloatArray, pass_rate: float = PASS_RATE) -> float:
    """The score below which ``pass_rate`` of these (in-distribution, held-out) images fall."""
    if not 0.0 < pass_rate < 1.0:
        raise ValueError(f"pass_rate must lie between 0 and 1, got {pass_rate}")
    if len(scores) == 0:
        raise ValueError("no held-out scores to set the threshold on")
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    # The smallest score that at least ``pass_rate`` of the images do not exceed.
    return float(ordered[max(math.ceil(pass_rate * len(ordered) - 1e-9), 1) - 1])


def auroc(in_scores: FloatArray, out_scores: FloatArray) -> float:
    """Probability that an out-of-distribution image scores higher than an in-distribution one (ties count 1/2)."""
    a = np.asarray(in_scores, dtype=np.float64)
    b = np.asarray(out_scores, dtype=np.float64)
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both), dtype=np.float64)
    ranks[order] = np.arange(1, len(both) + 1)
    # Average ranks over ties (Mann-Whitney U).
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    u = ranks[len(a) :].sum() - len(b) * (len(b) + 1) / 2.0
    return float(u / (len(a) * len(b)))


def fpr_at_95_tpr(in_scores: FloatArray, out_scores: FloatArray) -> float:
    """Share of out-of-distribution images that pass when the threshold lets 95 % of in-distribution images pass
    (in-distribution as the positives, as in Sun et al. 2022): lower is better."""
    cut = pass_threshold(in_scores, 0.95)
    return float((np.asarray(out_scores) <= cut).mean())
