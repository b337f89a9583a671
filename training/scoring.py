"""Scoring a finished run: the best epoch's network on the validation split (and the test folder, if given).

The outputs are kept (``Scores.val``: logits, embeddings and labels, in the split's order), not only the metrics,
so that the export step (``training.publish``) can compute from them what the bundle carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from training.data.datasets import eval_dataset
from training.data.folders import Sample
from training.data.loaders import make_loader
from training.engine.features import HeadNet
from training.engine.loop import Predictions, predict
from training.engine.outcome import TrainingOutcome
from training.engine.run import RunContext
from training.metrics import classification_metrics


@dataclass(frozen=True)
class Scores:
    metrics: dict[str, Any]  # metrics.json: the best epoch, parameters, and the val (and test) metrics
    val: Predictions


def score(context: RunContext, outcome: TrainingOutcome, *, test: bool = True) -> Scores:
    """The metrics of the best epoch on the validation (and, with ``test``, the test) images, and the validation
    outputs. ``fit`` scores the test split through the exported bundle instead (``training.test_split``)."""
    classes = context.data.classes
    val = predict_val(context, outcome)
    metrics: dict[str, Any] = {
        "best_epoch": outcome.best_epoch,
        "epochs_trained": outcome.epochs,
        "monitor": context.config.monitor,
        "parameters": {name: {"trainable": t, "total": n} for name, (t, n) in outcome.parameters.items()},
        "val": classification_metrics(val.logits, val.labels, classes),
    }
    if test and context.data.test is not None:
        test_outputs = predict_samples(context, outcome, list(context.data.test.samples))
        metrics["test"] = classification_metrics(test_outputs.logits, test_outputs.labels, classes)
    return Scores(metrics, val)


def predict_val(context: RunContext, outcome: TrainingOutcome) -> Predictions:
    """The validation outputs; from the cached embeddings when the backbone that computed them never trained."""
    if outcome.features is None:
        return predict_samples(context, outcome, context.data.val)
    head = HeadNet(outcome.network).eval()
    with torch.no_grad():
        logits, embeddings = head(outcome.features.val.to(context.device))
    labels = outcome.features.val_labels.numpy()
    return Predictions(logits.float().cpu().numpy(), embeddings.float().cpu().numpy(), labels)


def predict_samples(context: RunContext, outcome: TrainingOutcome, samples: list[Sample]) -> Predictions:
    """The outputs on ``samples``, read as the service reads them."""
    loader = make_loader(
        eval_dataset(samples, context.prep),
        batch_size=context.config.batch_size,
        train=False,
        seed=0,
        workers=context.workers,
    )
    return predict(outcome.network, loader, context.step)
