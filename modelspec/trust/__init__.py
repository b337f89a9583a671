"""Knowing when the model does not know: calibrated probabilities, conformal prediction sets, an OOD score.

numpy only (safetensors to read the arrays), no torch. Export calls ``build_trust`` on the validation split and the
training embeddings and stores the result (``Trust`` in model.json, arrays in ``trust.safetensors``); the service
loads a ``TrustScorer`` per bundle and calls it on each batch's logits and embeddings.
"""

from modelspec.trust.build import build_trust, calibrate
from modelspec.trust.calibration import ece, fit_temperature, nll, reliability_bins, softmax
from modelspec.trust.conformal import CoverageError, coverage_range, prediction_sets, true_label_scores
from modelspec.trust.ood import KnnReference, MahalanobisReference, auroc, energy_score, fpr_at_95_tpr, msp_score
from modelspec.trust.precision import Precision, refit, scorer_for, trust_for
from modelspec.trust.scorer import TrustResult, TrustScorer, load_tensors, save_tensors
from modelspec.trust.spec import INT8_TRUST_FILE, TRUST_FILE, Calibration, Conformal, OutOfDistribution, Trust

__all__ = [
    "INT8_TRUST_FILE",
    "TRUST_FILE",
    "Calibration",
    "Conformal",
    "CoverageError",
    "KnnReference",
    "MahalanobisReference",
    "OutOfDistribution",
    "Precision",
    "Trust",
    "TrustResult",
    "TrustScorer",
    "auroc",
    "build_trust",
    "calibrate",
    "coverage_range",
    "ece",
    "energy_score",
    "fit_temperature",
    "fpr_at_95_tpr",
    "load_tensors",
    "msp_score",
    "nll",
    "prediction_sets",
    "refit",
    "reliability_bins",
    "save_tensors",
    "scorer_for",
    "softmax",
    "true_label_scores",
    "trust_for",
]
