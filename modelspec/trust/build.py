"""The export side: from the validation split's logits and embeddings and the training embeddings, compute what a
bundle stores about trust (``Trust`` for model.json, the arrays for ``trust.safetensors``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from modelspec.trust.calibration import ECE_BINS, fit_temperature, nll, reliability_bins, softmax
from modelspec.trust.conformal import RAPS_K_REG, RAPS_LAMBDA, ScoreName, true_label_scores
from modelspec.trust.ood import KNN_K, PASS_RATE, KnnReference, MahalanobisReference, OodMethod, pass_threshold
from modelspec.trust.scorer import (
    CONFORMAL_SCORES,
    KNN_POINTS,
    MAHALANOBIS_MEANS,
    MAHALANOBIS_WHITENING,
    PROJECTION_MATRIX,
    PROJECTION_MEAN,
    TrustScorer,
)
from modelspec.trust.spec import TRUST_FILE, Calibration, Conformal, OutOfDistribution, Reliability, Trust

FloatArray = npt.NDArray[np.floating]
IntArray = npt.NDArray[np.integer]
Tensors = dict[str, npt.NDArray[np.generic]]

CONFORMAL_SCORE: ScoreName = "lac"
OOD_METHOD: OodMethod = "mahalanobis"  # chosen by make bench-trust: see BENCHMARKS.md, "## Trust"
REFERENCE_CAP = 10_000
"""Training embeddings kept in a k-NN reference: 10,000 x 256 float16 = 5 MiB whatever the training set size."""
REFERENCE_DIMS = 256
"""Principal directions the embeddings are projected onto before the OOD score (Lite0's have 1280)."""


def calibrate(logits: FloatArray, labels: IntArray) -> Calibration:
    """Fit the temperature and measure ECE and NLL before and after, on the same validation images."""
    temperature = fit_temperature(logits, labels)
    before = reliability_bins(softmax(logits), labels, ECE_BINS)
    after = reliability_bins(softmax(logits, temperature), labels, ECE_BINS)
    return Calibration(
        temperature=temperature,
        images=len(labels),
        ece_before=before.ece,
        ece_after=after.ece,
        nll_before=nll(logits, labels),
        nll_after=nll(logits, labels, temperature),
        reliability_before=Reliability(**asdict(before)),
        reliability_after=Reliability(**asdict(after)),
    )


def build_trust(
    val_logits: FloatArray,
    val_labels: IntArray,
    val_embeddings: FloatArray,
    train_embeddings: FloatArray,
    train_labels: IntArray,
    *,
    score: ScoreName = CONFORMAL_SCORE,
    ood_method: OodMethod = OOD_METHOD,
    k: int = KNN_K,
    cap: int | None = REFERENCE_CAP,
    dims: int | None = REFERENCE_DIMS,
    pass_rate: float = PASS_RATE,
    seed: int = 0,
) -> tuple[Trust, Tensors]:
    """Everything trust needs, fitted on the validation split (temperature, conformal scores, OOD threshold) and
    the training embeddings (the OOD reference). The threshold is set with the scorer that serves it."""
    calibration = calibrate(val_logits, val_labels)
    probs = softmax(val_logits, calibration.temperature)
    raps: dict[str, Any] = {"lam": RAPS_LAMBDA, "k_reg": RAPS_K_REG} if score == "raps" else {}
    # float64: a score rounded down on storage would leave its own image out of the set at the boundary.
    scores = np.sort(true_label_scores(probs, val_labels, score, **raps)).astype(np.float64)
    tensors: Tensors = {CONFORMAL_SCORES: scores}
    conformal = Conformal(score=score, images=len(scores), **raps)
    ood_fields: dict[str, Any] = {"training_images": len(train_embeddings)}
    reference: KnnReference | MahalanobisReference | None = None
    if ood_method == "knn":
        reference = KnnReference.build(train_embeddings, k=k, cap=cap, dims=dims, seed=seed)
        tensors[KNN_POINTS] = reference.points.astype(np.float16)
        ood_fields |= {"k": k, "reference_images": len(reference.points)}
    elif ood_method == "mahalanobis":
        reference = MahalanobisReference.build(train_embeddings, train_labels, dims=dims)
        tensors[MAHALANOBIS_WHITENING] = reference.whitening.astype(np.float16)
        tensors[MAHALANOBIS_MEANS] = reference.means.astype(np.float16)
        ood_fields |= {"reference_images": len(train_embeddings)}
    if reference is not None and reference.projection is not None:
        tensors[PROJECTION_MATRIX] = reference.projection.matrix.astype(np.float16)
        tensors[PROJECTION_MEAN] = reference.projection.mean.astype(np.float16)
        ood_fields["dims"] = reference.projection.matrix.shape[1]
    # The threshold comes from the arrays as stored (float16), through the scorer the service uses.
    provisional = OutOfDistribution(method=ood_method, threshold=0.0, pass_rate=pass_rate,
                                    validation_images=len(val_labels), **ood_fields)  # fmt: skip
    draft = Trust(file=TRUST_FILE, calibration=calibration, conformal=conformal, ood=provisional)
    val_scores = TrustScorer(draft, tensors).ood_scores(val_logits, probs, val_embeddings)
    ood = provisional.model_copy(update={"threshold": pass_threshold(val_scores, pass_rate)})
    return draft.model_copy(update={"ood": ood}), tensors
