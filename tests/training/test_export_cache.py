"""The export reuses a cached ONNX graph when only verbatim weights changed (a feature extractor's new head), and
the bundle's graph still gives the network's own outputs; a changed backbone is exported afresh."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from modelspec import Architecture, read_bundle, tensors
from modelspec.bundle import ONNX_FILE
from modelspec.network import build_network
from modelspec.runtime import build_session
from tests.conftest import tiny_spec
from training.export import export_bundle

REUSED = "ONNX graph reused"


def onnx_matches(bundle_dir: Path, network: torch.nn.Module) -> None:
    batch = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, embedding = (t.numpy() for t in network.eval()(batch))
    got = build_session(read_bundle(bundle_dir).file(ONNX_FILE)).run(
        list(tensors.OUTPUTS), {tensors.INPUT: batch.numpy()}
    )
    np.testing.assert_allclose(got[0], logits, atol=1e-4)
    np.testing.assert_allclose(got[1], embedding, atol=1e-4)


def test_a_new_head_reuses_the_graph_and_a_new_backbone_does_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "cache"))  # empty: other tests export this backbone too
    caplog.set_level(logging.INFO)
    torch.manual_seed(0)
    network = build_network(tiny_spec())
    first = export_bundle(network, tiny_spec(), tmp_path)
    assert REUSED not in caplog.text

    with torch.no_grad():  # a feature extractor's next run: same frozen backbone, another head
        network.classifier.weight.mul_(-2.0)
        network.classifier.bias.add_(0.5)
    caplog.clear()
    second = export_bundle(network, tiny_spec(), tmp_path)
    assert REUSED in caplog.text and second.version == first.version + 1
    onnx_matches(second.path, network)


def test_a_changed_folded_weight_is_exported_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With batch norm the exporter folds weights into the convolutions: those must match to reuse a graph."""
    caplog.set_level(logging.INFO)
    spec = tiny_spec().model_copy(update={"architecture": Architecture(family="lenet", name="lenet5",
                                                                       kwargs={"batch_norm": True})})  # fmt: skip
    torch.manual_seed(0)
    network = build_network(spec)
    export_bundle(network, spec, tmp_path)
    with torch.no_grad():  # fine-tuned: the backbone's weights moved
        for parameter in network.backbone.parameters():
            parameter.add_(0.01)
    caplog.clear()
    moved = export_bundle(network, spec, tmp_path)
    assert REUSED not in caplog.text
    onnx_matches(moved.path, network)


def test_the_cache_can_be_turned_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("IMGCLF_EXPORT_CACHE", "0")
    network = build_network(tiny_spec())
    export_bundle(network, tiny_spec(), tmp_path)
    export_bundle(network, tiny_spec(), tmp_path)
    assert REUSED not in caplog.text
