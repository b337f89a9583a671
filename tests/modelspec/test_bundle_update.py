"""``update_bundle``: derived files (the int8 graph) join an existing bundle without a reader ever seeing half of it;
``model.json`` without a quantisation record (every bundle written before it existed) reads as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modelspec import SPEC_FILE, WEIGHTS_FILE, read_bundle
from modelspec.bundle import INT8_ONNX_FILE, ONNX_FILE, update_bundle
from modelspec.quantization import Bound, Calibration, PrecisionCheck, Quantization

RECORD = Quantization(
    file=INT8_ONNX_FILE,
    within_bound=True,
    bound=Bound(max_top1_drop_points=1.0),
    reason="test",
    calibration=Calibration(method="minmax", per_channel=True, images=4, source="test images"),
    checks=[PrecisionCheck(split="validation", images=4, top1_fp32=1.0, top1_int8=1.0, top1_agreement=1.0)],
)


@pytest.fixture
def bundle_dir(tiny_models_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models" / "tiny" / "1"
    shutil.copytree(tiny_models_dir / "tiny" / "1", target)
    return target


def test_a_bundle_without_a_record_reads_and_writes_unchanged(bundle_dir: Path) -> None:
    raw = json.loads((bundle_dir / SPEC_FILE).read_text())
    assert "quantization" not in raw

    spec = read_bundle(bundle_dir).spec

    assert spec.quantization is None
    assert spec.model_dump(mode="json") == raw  # a fp32 bundle's model.json gains no new key


def test_the_int8_file_joins_whole_and_is_verified(bundle_dir: Path) -> None:
    before = read_bundle(bundle_dir)
    seen_while_writing: list[set[str]] = []

    def write(path: Path) -> None:
        path.write_bytes((bundle_dir / ONNX_FILE).read_bytes())
        seen_while_writing.append(set(read_bundle(bundle_dir).spec.files))  # a reader meanwhile: the old bundle

    updated = update_bundle(
        bundle_dir, before.spec.model_copy(update={"quantization": RECORD}), {INT8_ONNX_FILE: write}
    )

    assert seen_while_writing == [set(before.spec.files)]
    again = read_bundle(bundle_dir)
    assert again.spec == updated.spec and again.spec.quantization == RECORD
    assert set(again.spec.files) == {*before.spec.files, INT8_ONNX_FILE}
    assert not list(bundle_dir.parent.parent.glob(".tmp-*"))  # the work folder is gone

    withdrawn = before.spec.model_copy(update={"quantization": RECORD.model_copy(update={"file": None})})
    update_bundle(bundle_dir, withdrawn, {}, remove=[INT8_ONNX_FILE])
    assert not (bundle_dir / INT8_ONNX_FILE).exists()
    assert set(read_bundle(bundle_dir).spec.files) == set(before.spec.files)


@pytest.mark.parametrize("name", [ONNX_FILE, WEIGHTS_FILE, SPEC_FILE])
def test_the_weights_and_the_fp32_graph_are_never_replaced(bundle_dir: Path, name: str) -> None:
    spec = read_bundle(bundle_dir).spec
    with pytest.raises(ValueError, match="may be added"):
        update_bundle(bundle_dir, spec, {name: lambda path: path.write_bytes(b"")})
