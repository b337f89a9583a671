"""Classification metrics from logits and labels, in numpy so ONNX Runtime and torch results go through one path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.integer[Any]]


def cross_entropy(logits: FloatArray, labels: IntArray) -> float:
    """Mean negative log-likelihood of the true labels (a numerically stable log-softmax)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def topk_accuracy(logits: FloatArray, labels: IntArray, k: int) -> float:
    """Share of samples whose label is among the ``k`` highest logits."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(labels: IntArray, predictions: IntArray, num_classes: int) -> IntArray:
    """Counts with true classes as rows and predicted classes as columns."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_scores(matrix: IntArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Precision, recall, F1 and support of each class from a confusion matrix (true rows, predicted columns)."""
    num_classes = len(matrix)
    true_positives = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(true_positives, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(true_positives, actual, out=np.zeros(num_classes), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(num_classes), where=both > 0)
    return precision, recall, f1, actual


def macro_f1(matrix: IntArray) -> float:
    """The mean F1 over the classes that occur (rows with samples): each class counts the same, however rare."""
    _, _, f1, actual = per_class_scores(matrix)
    present = actual > 0
    return float(f1[present].mean()) if present.any() else 0.0


def classification_metrics(logits: FloatArray, labels: IntArray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, top-5 accuracy (five classes or more), loss, per-class precision/recall/F1 and their macro
    averages, and the confusion matrix. A class never predicted has precision 0 (not a warning)."""
    if len(labels) == 0:
        raise ValueError("no samples to evaluate")
    num_classes = len(class_names)
    predictions = logits.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, num_classes)
    precision, recall, f1, actual = per_class_scores(matrix)
    present = actual > 0  # macro averages over the classes that occur in this data
    metrics: dict[str, Any] = {
        "samples": len(labels),
        "accuracy": float((predictions == labels).mean()),
        "loss": cross_entropy(logits, labels),
    }
    if num_classes >= 5:
        metrics["top5_accuracy"] = topk_accuracy(logits, labels, 5)
    metrics["macro_precision"] = float(precision[present].mean())
    metrics["macro_recall"] = float(recall[present].mean())
    metrics["macro_f1"] = float(f1[present].mean())
    metrics["per_class"] = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(actual[i]),
        }
        for i, name in enumerate(class_names)
    }
    metrics["confusion_matrix"] = matrix.tolist()
    return metrics


def summary_line(metrics: dict[str, Any]) -> str:
    """``accuracy 97.2%, top-5 99.9%, loss 0.091, macro F1 0.971 (360 images)``."""
    parts = [f"accuracy {metrics['accuracy']:.1%}"]
    if "top5_accuracy" in metrics:
        parts.append(f"top-5 {metrics['top5_accuracy']:.1%}")
    parts += [f"loss {metrics['loss']:.3f}", f"macro F1 {metrics['macro_f1']:.3f}"]
    return ", ".join(parts) + f" ({metrics['samples']} images)"
