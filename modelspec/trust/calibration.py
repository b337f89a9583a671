"""Temperature scaling (Guo et al. 2017, arXiv:1706.04599) and the numbers that say how well it worked.

Softmax scores of modern CNNs are over-confident; dividing the logits by one scalar T > 1, fitted on held-out
logits by minimising the negative log-likelihood, fixes most of it without changing any prediction (argmax is
unchanged). ECE (expected calibration error) and NLL are reported before and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]
IntArray = npt.NDArray[np.integer]

ECE_BINS = 15
"""Equal-width confidence bins, as in Guo et al."""

T_MIN, T_MAX = 0.05, 20.0
"""The temperatures searched; outside this range the logits are degenerate (or the search is wrong)."""


def log_softmax(logits: FloatArray, temperature: float = 1.0) -> npt.NDArray[np.float64]:
    """Row-wise log-softmax of ``logits / temperature`` in float64, stable for any logit size."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    result: npt.NDArray[np.float64] = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return result


def softmax(logits: FloatArray, temperature: float = 1.0) -> npt.NDArray[np.float64]:
    """Row-wise softmax of ``logits / temperature``: the probabilities a (calibrated) model serves."""
    return np.exp(log_softmax(logits, temperature))


def nll(logits: FloatArray, labels: IntArray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels (natural log)."""
    labels = np.asarray(labels)
    log_p = log_softmax(logits, temperature)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: FloatArray, labels: IntArray, *, tol: float = 1e-6) -> float:
    """The T in [T_MIN, T_MAX] that minimises the NLL of ``softmax(logits / T)`` on these labels.

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search over log T finds the minimum
    without derivatives or a starting point, and cannot diverge (unlike Newton steps on tiny or huge logits).
    """
    logits = _check(logits, labels)
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    low, high = math.log(T_MIN), math.log(T_MAX)
    a, b = high - golden * (high - low), low + golden * (high - low)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    while high - low > tol:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - golden * (high - low)
            fa = nll(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + golden * (high - low)
            fb = nll(logits, labels, math.exp(b))
    return math.exp((low + high) / 2.0)


@dataclass(frozen=True)
class ReliabilityBins:
    """A reliability diagram: per equal-width confidence bin, how many images, their mean confidence, accuracy."""

    edges: list[float]  # bins + 1 values from 0 to 1
    counts: list[int]
    confidence: list[float]  # mean top-1 probability in the bin (0 where empty)
    accuracy: list[float]  # share of correct top-1 in the bin (0 where empty)

    @property
    def ece(self) -> float:
        """Sum over bins of |accuracy - confidence| x the bin's share of the images."""
        total = sum(self.counts)
        if total == 0:
            return 0.0
        return sum(n * abs(a - c) for n, a, c in zip(self.counts, self.accuracy, self.confidence, strict=True)) / total


def reliability_bins(probs: FloatArray, labels: IntArray, bins: int = ECE_BINS) -> ReliabilityBins:
    """Bin the top-1 probabilities into ``bins`` equal-width bins ((lo, hi], the first also holds 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    safe = np.maximum(counts, 1)
    mean_conf = np.bincount(index, weights=confidence, minlength=bins) / safe
    accuracy = np.bincount(index, weights=correct, minlength=bins) / safe
    return ReliabilityBins(
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        confidence=[float(c) for c in mean_conf],
        accuracy=[float(a) for a in accuracy],
    )


def ece(probs: FloatArray, labels: IntArray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-1 probability with ``bins`` equal-width bins."""
    return reliability_bins(probs, labels, bins).ece


def _check(logits: FloatArray, labels: IntArray) -> npt.NDArray[np.float64]:
    array = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"logits must be [images, classes] with at least 2 classes, got shape {array.shape}")
    if labels.shape != (array.shape[0],):
        raise ValueError(f"{labels.shape} labels for {array.shape[0]} rows of logits: give one label per row")
    if len(labels) == 0:
        raise ValueError("no validation images: temperature scaling needs labelled held-out images")
    if labels.min() < 0 or labels.max() >= array.shape[1]:
        raise ValueError(f"labels must lie in 0..{array.shape[1] - 1}")
    if not np.isfinite(array).all():
        raise ValueError("logits contain NaN or infinity")
    return array
