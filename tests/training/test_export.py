"""``export_bundle``'s extra files: written inside the bundle after the ONNX graph, hashed and checked on read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelspec import Architecture, ModelSpec, Preprocessing, read_bundle
from modelspec.bundle import ONNX_FILE, BundleError
from modelspec.network import build_network
from training.export import export_bundle


def test_extra_files_join_the_bundle_after_the_onnx_graph(tmp_path: Path) -> None:
    spec = ModelSpec(
        name="extra",
        architecture=Architecture(family="lenet", name="lenet5"),
        num_classes=2,
        labels=["a", "b"],
        preprocessing=Preprocessing(resize_size=36, crop_size=32),
        embedding_size=84,
    )
    torch.manual_seed(0)

    def write_note(path: Path) -> None:
        onnx = path.parent / ONNX_FILE  # the graph is already in the folder being written
        path.write_text(f"onnx bytes: {onnx.stat().st_size}\n", encoding="utf-8")

    bundle = export_bundle(build_network(spec), spec, tmp_path, extra_files={"note.txt": write_note})

    reread = read_bundle(bundle.path)
    onnx_size = (bundle.path / ONNX_FILE).stat().st_size
    assert (bundle.path / "note.txt").read_text(encoding="utf-8") == f"onnx bytes: {onnx_size}\n"
    assert set(reread.spec.files) == {"model.safetensors", "model.onnx", "note.txt"}
    (bundle.path / "note.txt").write_text("changed\n", encoding="utf-8")
    with pytest.raises(BundleError, match="note.txt"):
        read_bundle(bundle.path)
