"""The export step of ``fit``: the best epoch's network becomes a bundle whose ``model.json`` carries the run's
metrics, curves, hyperparameters and choices (``publish``).

This is the one place where the validation split's outputs (``scores.val``: logits, embeddings and labels, in the
split's order) and the bundle being written are both at hand. What the bundle should carry that is computed from
them belongs here: a value for ``model.json`` goes into the spec (``run_spec``); a file (an int8 model beside
``model.onnx``, statistics) goes to ``export_bundle`` as an entry of ``extra_files``: a writer called with its path
in the bundle's temporary folder after ``model.safetensors`` and ``model.onnx`` are written there (so
``path.parent / ONNX_FILE`` is readable), before the files are hashed and the folder is renamed into place.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from modelspec.bundle import Bundle
from modelspec.spec import ModelSpec, Provenance
from training import report
from training.data.datasets import eval_dataset
from training.engine.outcome import TrainingOutcome
from training.engine.run import RunContext
from training.export import export_bundle
from training.quantize.at_export import quantize_after_export
from training.scoring import Scores
from training.trust import fit_trust

MAX_CLASSES_IN_SPEC_MATRIX = 30


def publish(context: RunContext, outcome: TrainingOutcome, scores: Scores) -> Bundle:
    """Export ``outcome.network`` as a new version of the run's model in ``--models-dir``."""
    spec = run_spec(context, outcome, scores.metrics)
    # Trust (issue 18): temperature, conformal scores, OOD reference -> model.json's `trust` + trust.safetensors.
    trust = fit_trust(context, outcome, scores.val)
    spec = spec.model_copy(update={"trust": trust.trust})
    samples = eval_dataset(context.data.val[:4], context.prep)
    sample = torch.stack([samples[i][0] for i in range(len(samples))])
    bundle = export_bundle(
        outcome.network, spec, context.config.models_dir, sample=sample, extra_files=trust.extra_files
    )
    return quantize_after_export(context, bundle)


def run_spec(context: RunContext, outcome: TrainingOutcome, metrics: dict[str, Any]) -> ModelSpec:
    """The bundle's ``model.json``: what the network is, what it was trained on and how, and how well it does."""
    config, data, built = context.config, context.data, context.built
    spec_metrics = copy.deepcopy(metrics)
    # The per-epoch curves travel with the model, so its card can draw them (the service never reads the run folder).
    spec_metrics["history"] = [
        {key: row[key] for key in report.HISTORY_FIELDS if key in row} for row in outcome.history
    ]
    if len(data.classes) > MAX_CLASSES_IN_SPEC_MATRIX:  # keep model.json small; the run folder has the matrix
        for split in ("val", "test"):
            spec_metrics.get(split, {}).pop("confusion_matrix", None)
    hyperparameters = context.hyperparameters()
    hyperparameters["runtime"] = {
        "world_size": context.dist.world_size,
        "device": context.device.type,
        "precision": context.precision.label,
        "workers": context.workers,
    }
    return ModelSpec(
        name=config.model_name,
        description=f"{config.backbone} {report.how_trained(context)} on {config.dataset_name} "
        f"({len(data.classes)} classes) by imgclf",
        architecture=built.architecture,
        num_classes=len(data.classes),
        labels=list(data.classes),
        preprocessing=context.prep,
        embedding_size=built.embedding_size,
        metrics=spec_metrics,
        hyperparameters=hyperparameters,
        provenance=Provenance(base_weights=built.base_weights, dataset_fingerprint=data.fingerprint),
    )
