"""``evaluate``: score a bundle on an image folder the way the service would run it.

By default through ONNX Runtime (the service's CPU backend) with ``modelspec.preprocess``; ``--backend torch``
rebuilds the network from the safetensors weights instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from modelspec import tensors
from modelspec.bundle import ONNX_FILE, Bundle, BundleError, list_versions, read_bundle, versions_to_open
from modelspec.runtime import build_session
from training import report
from training.data.datasets import eval_dataset
from training.data.folders import scan_image_folder
from training.data.loaders import make_loader
from training.errors import UserError
from training.metrics import classification_metrics

logger = logging.getLogger(__name__)

Backend = Literal["onnx", "torch"]


def open_bundle(path: Path) -> Bundle:
    """A bundle folder (``models/<name>/<version>``) or a model folder (``models/<name>``: its latest version)."""
    if not path.is_dir():
        raise UserError(f"bundle {path} does not exist")
    if not (path / "model.json").is_file():
        versions = versions_to_open(list_versions(path.parent, path.name))
        if not versions:
            raise UserError(f"{path} is neither a bundle (no model.json) nor a model folder with versions")
        path = path / str(versions[0])
    try:
        return read_bundle(path)
    except BundleError as exc:
        raise UserError(str(exc)) from exc


@dataclass(frozen=True)
class Evaluation:
    bundle: Bundle
    metrics: dict[str, Any]
    skipped: int


def evaluate_bundle(
    bundle: Bundle, data: Path, *, backend: Backend = "onnx", batch_size: int = 64, workers: int = 0
) -> Evaluation:
    """Metrics of ``bundle`` on the ImageFolder ``data``, whose class folders must be among the bundle's labels."""
    spec = bundle.spec
    folder = scan_image_folder(data, spec.labels)
    loader = make_loader(
        eval_dataset(folder.samples, spec.preprocessing), batch_size=batch_size, train=False, seed=0, workers=workers
    )
    logits_list, labels_list = [], []
    if backend == "onnx":
        session = build_session(bundle.file(ONNX_FILE))
        for images, labels in loader:
            logits_list.append(session.run([tensors.LOGITS], {tensors.INPUT: images.numpy()})[0])
            labels_list.append(labels.numpy())
    else:
        from modelspec.network import load_network

        network = load_network(bundle)
        with torch.no_grad():
            for images, labels in loader:
                logits_list.append(network(images)[0].numpy())
                labels_list.append(labels.numpy())
    metrics = classification_metrics(np.concatenate(logits_list), np.concatenate(labels_list), spec.labels)
    metrics["backend"] = backend
    return Evaluation(bundle, metrics, len(folder.skipped))


def write_evaluation(evaluation: Evaluation, output: Path) -> None:
    """``metrics.json`` and ``confusion.png`` in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    report.write_json(output / "metrics.json", evaluation.metrics)
    spec = evaluation.bundle.spec
    report.plot_confusion(
        evaluation.metrics["confusion_matrix"],
        spec.labels,
        output / "confusion.png",
        f"{spec.name} v{spec.version}: confusion matrix",
    )
