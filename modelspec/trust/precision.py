"""Trust data per served precision: the int8 graph's logits differ from fp32's, so its temperature, conformal
scores and OOD threshold are refitted on its own validation outputs (``refit``) and stored beside it
(``Quantization.trust`` in model.json, ``trust.int8.safetensors``). The OOD reference (training embeddings) stays
the fp32 one: only the threshold, which is read on the served model's scores, has to move.

The service asks ``trust_for(bundle, precision)`` (or ``scorer_for``) for the data matching what it serves.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from modelspec.trust.build import calibrate
from modelspec.trust.calibration import softmax
from modelspec.trust.conformal import true_label_scores
from modelspec.trust.ood import pass_threshold
from modelspec.trust.scorer import CONFORMAL_SCORES, TrustScorer, load_tensors
from modelspec.trust.spec import INT8_TRUST_FILE, Trust

if TYPE_CHECKING:
    from modelspec.bundle import Bundle

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
Tensors = dict[str, npt.NDArray[np.generic]]


def refit(
    trust: Trust,
    tensors: Tensors,
    val_logits: npt.NDArray[np.floating],
    val_labels: npt.NDArray[np.integer],
    val_embeddings: npt.NDArray[np.floating],
    *,
    file: str = INT8_TRUST_FILE,
) -> tuple[Trust, Tensors]:
    """``trust`` refitted on another model's validation outputs (the same images, e.g. the int8 graph's): a new
    temperature, conformal scores and OOD threshold, the same methods and the same OOD reference arrays."""
    labels = np.asarray(val_labels)
    calibration = calibrate(val_logits, labels) if trust.calibration is not None else None
    probs = softmax(val_logits, calibration.temperature if calibration else 1.0)
    out: Tensors = dict(tensors)
    conformal = trust.conformal
    if conformal is not None:
        raps = {"lam": conformal.lam, "k_reg": conformal.k_reg} if conformal.score == "raps" else {}
        scores = np.sort(true_label_scores(probs, labels, conformal.score, **raps)).astype(np.float64)
        out[CONFORMAL_SCORES] = scores
        conformal = conformal.model_copy(update={"images": len(scores)})
    draft = trust.model_copy(update={"file": file, "calibration": calibration, "conformal": conformal})
    ood = trust.ood
    if ood is not None:
        scores = TrustScorer(draft, out).ood_scores(val_logits, probs, val_embeddings)
        ood = ood.model_copy(
            update={"threshold": pass_threshold(scores, ood.pass_rate), "validation_images": len(labels)}
        )
    return draft.model_copy(update={"ood": ood}), out


def trust_for(bundle: Bundle, precision: Precision) -> tuple[Trust | None, Tensors]:
    """The trust record and arrays to serve ``precision`` with: for int8, the ones refitted on int8's outputs.

    An int8 bundle quantised without them (by a release before the refit) gets the fp32 data and a warning: its
    probabilities are then calibrated for fp32's logits, close but not fitted to int8's."""
    trust = bundle.spec.trust
    quantization = bundle.spec.quantization
    if precision == "int8" and trust is not None:
        if quantization is not None and quantization.trust is not None:
            trust = quantization.trust
        else:
            logger.warning(
                "%s v%s has no trust data refitted for int8 (re-run `python -m training quantize` on it): serving "
                "int8 with fp32's calibration",
                bundle.spec.name,
                bundle.spec.version,
            )
    if trust is None or trust.file is None:
        return trust, {}
    return trust, load_tensors(bundle.file(trust.file))


def scorer_for(bundle: Bundle, precision: Precision) -> TrustScorer:
    """The ``TrustScorer`` of ``bundle`` served at ``precision``."""
    return TrustScorer(*trust_for(bundle, precision))
