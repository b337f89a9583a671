"""A small trained bundle with an int8 graph: the digits LeNet-5 quantised by ``training.quantize`` (seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

from modelspec import Bundle, read_bundle
from modelspec.bundle import update_bundle
from training.quantize.command import recorded_splits
from training.quantize.core import quantize_bundle


def quantised_copy(bundle: Bundle, models_dir: Path, test_data: Path) -> Bundle:
    """A copy of ``bundle`` in ``models_dir`` with ``model.int8.onnx``, checked on its validation split and on
    ``test_data`` as fit's export does (the default bound: at most 1 top-1 point lost)."""
    target = models_dir / bundle.name / str(bundle.version)
    shutil.copytree(bundle.path, target)
    splits = recorded_splits(target, None, None, test_data)
    result = quantize_bundle(target, splits.train, splits.val, splits.test, calibration_images=128)
    assert result.record.within_bound, result.record.reason  # the tests below need int8 to be servable
    return read_bundle(target)


def mark_beyond_bound(bundle: Bundle) -> Bundle:
    """The same bundle, its int8 graph still listed but its record saying it is beyond its bound (as written by a
    tool that kept the file, or an older release): serving must not trust the file alone."""
    record = bundle.spec.quantization
    assert record is not None
    beyond = record.model_copy(update={"within_bound": False, "reason": "int8 lost 7.00 top-1 points: beyond"})
    return update_bundle(bundle.path, bundle.spec.model_copy(update={"quantization": beyond}), {})
