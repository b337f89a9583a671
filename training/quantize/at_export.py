"""``fit``'s int8 step: right after the bundle is published, quantise it (``core.quantize_bundle``) with the run's
own training, validation and test samples, unless ``--no-int8``.

A failure here never costs the user the fp32 bundle: it is logged and the bundle stays as exported.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from modelspec.bundle import Bundle

if TYPE_CHECKING:
    from modelspec.quantization import Quantization
    from training.engine.run import RunContext

logger = logging.getLogger(__name__)

FIT_CALIBRATION_IMAGES = 128
"""Calibration images at fit (``python -m training quantize`` takes 256 by default): on the Fashion-MNIST bundle
the agreement was the same within noise, in half the calibration time."""


def quantize_after_export(context: RunContext, bundle: Bundle) -> Bundle:
    """The bundle with its int8 graph and record added (``--int8``, the default), or as it is."""
    config, data = context.config, context.data
    if not config.int8:
        return bundle
    from training.quantize.core import quantize_bundle  # onnxruntime.quantization: only when quantising

    started = time.perf_counter()
    try:
        result = quantize_bundle(
            bundle.path,
            data.train,
            data.val,
            list(data.test.samples) if data.test is not None else None,
            max_top1_drop=config.max_top1_drop,
            calibration_images=FIT_CALIBRATION_IMAGES,
            calibration_source="the training split",
        )
    except Exception:
        logger.exception("int8 quantisation failed; the bundle serves fp32 (retry: python -m training quantize)")
        return bundle
    logger.info("int8: %s (%.1f s)", outcome_line(result.record), time.perf_counter() - started)
    return result.bundle


def outcome_line(record: Quantization | None) -> str:
    """One line for the log and the report: kept or not, and why."""
    if record is None:
        return "not quantised (--no-int8)"
    kept = f"kept as {record.file}" if record.file else "not kept, serves fp32"
    return f"{kept}: {record.reason}"
