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
import numpy.typing as npt
import torch

from modelspec import tensors
from modelspec.bundle import ONNX_FILE, Bundle, BundleError, list_versions, read_bundle, versions_to_open
from modelspec.runtime import build_session
from modelspec.trust import TrustScorer, ece
from modelspec.trust.calibration import ECE_BINS
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
    logits_list, embeddings_list, labels_list = [], [], []
    if backend == "onnx":
        session = build_session(bundle.file(ONNX_FILE))
        for images, labels in loader:
            logits, embeddings = session.run([tensors.LOGITS, tensors.EMBEDDING], {tensors.INPUT: images.numpy()})
            logits_list.append(logits)
            embeddings_list.append(embeddings)
            labels_list.append(labels.numpy())
    else:
        from modelspec.network import load_network

        network = load_network(bundle)
        with torch.no_grad():
            for images, labels in loader:
                logits, embeddings = network(images)
                logits_list.append(logits.numpy())
                embeddings_list.append(embeddings.numpy())
                labels_list.append(labels.numpy())
    all_logits, all_labels = np.concatenate(logits_list), np.concatenate(labels_list)
    metrics = classification_metrics(all_logits, all_labels, spec.labels)
    metrics["backend"] = backend
    metrics["trust"] = trust_metrics(bundle, all_logits, np.concatenate(embeddings_list), all_labels)
    return Evaluation(bundle, metrics, len(folder.skipped))


SET_COVERAGE = 0.9


def trust_metrics(
    bundle: Bundle, logits: npt.NDArray[np.float32], embeddings: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]
) -> dict[str, Any]:
    """What the service's trust numbers are worth on these images: ECE (15 bins) of the probabilities it serves
    (with the bundle's temperature), and where the bundle has the data, the empirical coverage and mean size of
    90 % prediction sets and the share of images flagged out-of-distribution."""
    scorer = TrustScorer.from_bundle(bundle)
    probs = scorer.probabilities(logits)
    result: dict[str, Any] = {
        "calibrated": scorer.calibrated,
        "temperature": scorer.temperature,
        "ece": ece(probs, labels, ECE_BINS),
        "ece_bins": ECE_BINS,
    }
    if scorer.coverage_range is not None and scorer.coverage_range[1] >= SET_COVERAGE:
        sets = scorer.sets(probs, SET_COVERAGE)
        result["sets"] = {
            "coverage_asked": SET_COVERAGE,
            "coverage": float(sets.mask[np.arange(len(labels)), labels].mean()),
            "mean_size": float(sets.sizes.mean()),
        }
    if scorer.ood is not None:
        flagged = scorer.ood_scores(logits, probs, embeddings) > scorer.ood.threshold
        result["ood"] = {"method": scorer.ood.method, "threshold": scorer.ood.threshold,
                         "flagged": int(flagged.sum()), "flagged_share": float(flagged.mean())}  # fmt: skip
    return result


def trust_summary(trust: dict[str, Any], images: int) -> list[str]:
    """``evaluate``'s lines about the trust numbers (``trust_metrics``)."""
    if trust["calibrated"]:
        calibration = f"calibrated (temperature {trust['temperature']:.3f})"
    else:
        calibration = "not calibrated (plain softmax)"
    lines = [f"served probabilities: {calibration}, ECE {trust['ece']:.4f} ({trust['ece_bins']} bins)"]
    if "sets" in trust:
        sets = trust["sets"]
        lines.append(
            f"prediction sets at {sets['coverage_asked']:.0%}: they hold the true label for {sets['coverage']:.1%} "
            f"of the {images} images, {sets['mean_size']:.2f} labels on average"
        )
    else:
        lines.append("prediction sets: none (the bundle has no conformal data for 90 %)")
    if "ood" in trust:
        ood = trust["ood"]
        lines.append(
            f"out-of-distribution: {ood['flagged']} of {images} images flagged ({ood['flagged_share']:.1%}; "
            f"{ood['method']} score above {ood['threshold']:.4g})"
        )
    else:
        lines.append("out-of-distribution: no score (the bundle has no OOD reference)")
    return lines


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
