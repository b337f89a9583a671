"""Numeric post-processing of a model's outputs (softmax, top-k, L2 normalisation).

Here and nowhere else, so every face that answers with predictions or features (the HTTP routes, the v2 protocol,
the batch command, explanations) computes the same numbers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modelspec.preprocess import Float32Array


def softmax(logits: Float32Array) -> Float32Array:
    shifted = np.exp(logits - logits.max())
    result: Float32Array = shifted / shifted.sum()
    return result


def probabilities(logits: Float32Array) -> Float32Array:
    """One image's class probabilities: the softmax of its logits, computed in float64."""
    result: Float32Array = softmax(logits.astype(np.float64)).astype(np.float32)
    return result


def top_k(scores: npt.NDArray[np.floating], k: int) -> list[tuple[int, float]]:
    """The ``k`` most probable classes of one image's probabilities (``app.engine.trust``: calibrated where the
    bundle is), best first, as ``(index, probability)``."""
    k = min(k, len(scores))
    candidates = np.argpartition(-scores, k - 1)[:k]
    best = candidates[np.argsort(-scores[candidates], kind="stable")]
    return [(int(i), float(scores[i])) for i in best]


def l2_normalize(vector: Float32Array) -> Float32Array:
    norm = float(np.linalg.norm(vector))
    result: Float32Array = vector / norm if norm > 0 else vector
    return result
