"""Trust data at export (issue 18): the temperature, the conformal scores and the OOD reference a bundle carries.

``fit_trust`` is called by ``training.publish`` with the validation split's outputs (``Scores.val``) and fits
``modelspec.trust.build_trust`` on them. The OOD reference needs the training images' embeddings: the cached ones
when every phase trained on cached features (the backbone never changed after computing them), else one pass
without augmentation over at most ``TRAINING_EMBEDDINGS_CAP`` training images (stratified) through the exported
network. Too few validation images give a bundle with calibration only, or nothing: no number is made up.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from modelspec.bundle import FileWriter
from modelspec.trust import TRUST_FILE, Trust, build_trust, calibrate, save_tensors
from training.config import MIN_CALIBRATION_IMAGES, MIN_TRUST_IMAGES
from training.data.folders import Sample
from training.engine.loop import Predictions
from training.engine.outcome import TrainingOutcome
from training.engine.run import RunContext
from training.scoring import predict_samples

logger = logging.getLogger(__name__)

TRAINING_EMBEDDINGS_CAP = 5_000
"""Training images embedded for the OOD reference when no cached features exist. The Mahalanobis reference holds
class means and one covariance of 256 projected dimensions; a few thousand images settle them, and the pass then
costs at most 5,000 forward passes whatever the size of the training set."""


@dataclass(frozen=True)
class TrustFit:
    """What the export adds to the bundle, and what it says about it (log and report)."""

    trust: Trust | None
    tensors: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    seconds: float = 0.0  # the whole fit, the embedding pass included
    embedding_seconds: float = 0.0  # the pass over training images (0 when cached features were used)

    def write(self, path: Path) -> None:
        """The ``extra_files`` writer of ``trust.safetensors``."""
        save_tensors(path, self.tensors)

    @property
    def extra_files(self) -> dict[str, FileWriter]:
        return {TRUST_FILE: self.write} if self.tensors else {}


def fit_trust(context: RunContext, outcome: TrainingOutcome, val: Predictions) -> TrustFit:
    """Calibration, conformal scores and the OOD reference from the validation outputs and training embeddings."""
    start = time.perf_counter()
    n = len(val.labels)
    if n < MIN_CALIBRATION_IMAGES:
        note = (
            f"not calibrated: {n} validation images, and temperature scaling needs at least "
            f"{MIN_CALIBRATION_IMAGES}; the bundle serves plain softmax scores, without prediction sets or OOD flag "
            "(more images per class, or --val-fraction / --val-data, give it one)"
        )
        logger.warning("trust: %s", note)
        return TrustFit(None, notes=(note,))
    if n < MIN_TRUST_IMAGES:
        calibration = calibrate(val.logits, val.labels)
        note = (
            f"calibration only: {n} validation images are too few for prediction sets and the OOD threshold "
            f"(at least {MIN_TRUST_IMAGES}: then 90 % sets can be served and the 95 % threshold lets a "
            "validation image fail)"
        )
        logger.warning("trust: %s", note)
        return TrustFit(Trust(calibration=calibration), notes=(note,), seconds=time.perf_counter() - start)
    embed_start = time.perf_counter()
    train_embeddings, train_labels, source = training_embeddings(context, outcome)
    embedding_seconds = time.perf_counter() - embed_start if source != "cached" else 0.0
    trust, tensors = build_trust(val.logits, val.labels, val.embeddings, train_embeddings, train_labels)
    if trust.ood is not None:  # the reference may hold a subsample: say how many images it was drawn from
        trust = trust.model_copy(
            update={"ood": trust.ood.model_copy(update={"training_images": len(context.data.train)})}
        )
    seconds = time.perf_counter() - start
    note = (
        f"OOD reference from {len(train_labels)} training embeddings ({source}"
        + (f", {embedding_seconds:.1f} s" if source != "cached" else "")
        + f"); trust data fitted in {seconds:.1f} s"
    )
    logger.info("trust: %s", note)
    return TrustFit(trust, tensors, (note,), seconds, embedding_seconds)


def training_embeddings(
    context: RunContext, outcome: TrainingOutcome
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], str]:
    """The training images' embeddings and labels, and where they came from (for the log and report)."""
    if outcome.features is not None:
        return outcome.features.train.numpy(), outcome.features.train_labels.numpy(), "cached"
    samples = stratified_subsample(context.data.train, TRAINING_EMBEDDINGS_CAP, context.config.seed)
    predictions = predict_samples(context, outcome, samples)
    kind = "all" if len(samples) == len(context.data.train) else f"a stratified {len(samples)}"
    return predictions.embeddings, predictions.labels, f"{kind} of {len(context.data.train)} training images"


def stratified_subsample(samples: list[Sample], cap: int, seed: int) -> list[Sample]:
    """At most about ``cap`` samples, each class in proportion (at least one each), drawn with a seeded shuffle."""
    if len(samples) <= cap:
        return list(samples)
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    chosen: list[Sample] = []
    for label in sorted(by_class):
        items = by_class[label]
        keep = max(1, math.floor(cap * len(items) / len(samples)))
        chosen.extend(items[i] for i in sorted(rng.permutation(len(items))[:keep]))
    return chosen
