"""The test split scored through the exported bundle: its ``model.onnx`` on ONNX Runtime, each image read by
``modelspec`` as the service reads it. Two to three times faster than the torch network on CPU (the test split is
scored once, after export), and the numbers are the ones the service will give.

Without a bundle (``--no-export``) ``training.scoring`` scores the test split through torch instead.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np

from modelspec import tensors
from modelspec.bundle import ONNX_FILE, Bundle, update_bundle
from modelspec.decode import load_input, read_file
from modelspec.runtime import build_session
from training.data.folders import Sample
from training.metrics import classification_metrics

logger = logging.getLogger(__name__)

BATCH = 64


def onnx_logits(bundle: Bundle, samples: list[Sample]) -> np.ndarray:
    session = build_session(bundle.file(ONNX_FILE), spinning="within-run")  # images are decoded between runs
    prep = bundle.spec.preprocessing
    found = []
    for start in range(0, len(samples), BATCH):
        batch = np.stack([load_input(read_file(path), prep) for path, _ in samples[start : start + BATCH]])
        found.append(session.run([tensors.LOGITS], {tensors.INPUT: batch})[0])
    return np.concatenate(found)


def add_test_metrics(
    bundle: Bundle, samples: list[Sample], metrics: dict[str, Any], max_classes_in_matrix: int
) -> tuple[dict[str, Any], Bundle]:
    """``metrics`` with ``test`` added, and the bundle with them in its ``model.json``."""
    started = time.perf_counter()
    labels = np.array([label for _, label in samples], dtype=np.int64)
    test = classification_metrics(onnx_logits(bundle, samples), labels, bundle.spec.labels)
    logger.info(
        "test split scored through model.onnx: %d images in %.1f s", len(samples), time.perf_counter() - started
    )
    metrics = {**metrics, "test": test}
    spec_metrics = copy.deepcopy(bundle.spec.metrics)
    spec_metrics["test"] = copy.deepcopy(test)
    if len(bundle.spec.labels) > max_classes_in_matrix:
        spec_metrics["test"].pop("confusion_matrix", None)
    updated = update_bundle(bundle.path, bundle.spec.model_copy(update={"metrics": spec_metrics}), {})
    return metrics, updated
