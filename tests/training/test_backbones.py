"""Backbones and their weights: offline lookups, fast failure, local files, and what the spec records."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import NoReturn

import pytest
import torch
from safetensors.torch import save_file

from modelspec.network import build_backbone
from tests.training.folders import FolderFactory
from training import backbones
from training.cli import main
from training.errors import ConfigError
from training.pretrained import LITE0_SOURCE, PretrainedWeightsUnavailableError


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point torch hub and the Hugging Face cache at empty folders (the state of a fresh offline machine)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every attempt to reach another machine (name lookups and connects), refused and recorded."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        attempts.append(args)
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_tiny", "timm:resnet18.a1_in1k"])
def test_unavailable_pretrained_weights_fail_fast_naming_the_alternatives(
    backbone: str,
    empty_caches: Path,
    connections: list[object],
    image_folder: FolderFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = image_folder({"a": 2, "b": 2})
    code = main(["fit", "--data", str(data), "--backbone", backbone, "--run-dir", str(empty_caches / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert connections == []  # fails on the local lookup alone: no download is even tried
    assert "no pretrained weights for" in err and "--backbone efficientnet_lite0" in err
    assert "--weights PATH" in err and "--pretrained none" in err
    assert "Traceback" not in err
    assert not (empty_caches / "run").exists()


def test_weights_found_in_the_torch_hub_cache_are_loaded(empty_caches: Path) -> None:
    info = backbones.resolve("resnet18")
    assert not backbones.find_weights(info).found
    reference, _ = build_backbone(info.architecture(pretrained=True, dropout=0.0))
    state = {**reference.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    lookup_path = backbones.find_weights(info).looked_in[0]
    assert lookup_path.endswith("hub/checkpoints/resnet18-f37072fd.pth")
    Path(lookup_path).parent.mkdir(parents=True)
    torch.save(state, lookup_path)
    assert backbones.find_weights(info).found
    built = backbones.build(info, backbones.starting_weights(info, "auto", None), dropout=0.1)
    torch.testing.assert_close(built.module.state_dict()["layer4.1.bn2.weight"], state["layer4.1.bn2.weight"])
    assert built.base_weights and "resnet18-f37072fd.pth" in built.base_weights
    assert built.architecture.dropout == 0.1 and built.embedding_size == 512


def test_default_backbone_has_imagenet_weights_offline() -> None:
    from training.pretrained import load_lite0_imagenet

    lite0 = backbones.resolve("efficientnet_lite0")
    built = backbones.build(lite0, backbones.starting_weights(lite0, "auto", None), dropout=0.2)
    assert built.base_weights == LITE0_SOURCE
    expected = load_lite0_imagenet().backbone.state_dict()
    for key, value in built.module.state_dict().items():
        torch.testing.assert_close(value, expected[key])


@pytest.mark.parametrize("form", ["safetensors", "state-dict", "whole-model-checkpoint", "bundle-weights"])
def test_local_weights_file_in_the_usual_forms(form: str, tmp_path: Path) -> None:
    info = backbones.resolve("lenet5")
    source, _ = build_backbone(info.architecture(pretrained=False, dropout=0.0))
    state = source.state_dict()
    if form == "safetensors":
        save_file(state, str(path := tmp_path / "w.safetensors"))
    elif form == "state-dict":
        torch.save(state, path := tmp_path / "w.pt")
    elif form == "whole-model-checkpoint":
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path := tmp_path / "w.pth")
    else:
        bundle_state = {f"backbone.{k}": v for k, v in state.items()}
        bundle_state |= {"classifier.weight": torch.zeros(5, 84), "classifier.bias": torch.zeros(5)}
        save_file(bundle_state, str(path := tmp_path / "model.safetensors"))
    built = backbones.build(info, backbones.starting_weights(info, "auto", path), dropout=0.0)
    for key, value in built.module.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert built.base_weights and path.name in built.base_weights and "sha256" in built.base_weights


class NotATensor:
    pass


def test_weights_files_are_never_unpickled_beyond_tensors(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(1), "payload": NotATensor()}, path := tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="cannot read weights"):
        backbones.read_state_dict(path)


def test_weights_for_another_model_are_refused(tmp_path: Path) -> None:
    save_file({"conv.weight": torch.zeros(3, 3)}, str(path := tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError, match="do not fit this backbone"):
        lenet = backbones.resolve("lenet5")
        backbones.build(lenet, backbones.starting_weights(lenet, "auto", path), dropout=0.0)


def test_from_scratch_needs_no_weights_and_lenet_has_none(empty_caches: Path) -> None:
    info = backbones.resolve("resnet18")
    built = backbones.build(info, backbones.starting_weights(info, "none", None), dropout=0.0)
    assert built.base_weights is None
    assert "transform_input" not in backbones.resolve("googlenet").architecture(pretrained=False, dropout=0).kwargs
    with pytest.raises(ConfigError, match="--pretrained none"):
        backbones.starting_weights(backbones.resolve("lenet5"), "imagenet", None)
    with pytest.raises(PretrainedWeightsUnavailableError):
        backbones.starting_weights(info, "imagenet", None)


def test_batch_norm_option_picks_variants() -> None:
    assert backbones.resolve("vgg16", batch_norm=True).model == "vgg16_bn"
    assert backbones.resolve("vgg11_bn", batch_norm=False).model == "vgg11"
    lenet = backbones.resolve("lenet5", batch_norm=True)
    assert lenet.architecture(pretrained=False, dropout=0.0, batch_norm=True).kwargs == {"batch_norm": True}


def test_preprocessing_keeps_the_crop_ratio_at_other_sizes() -> None:
    lite0 = backbones.resolve("efficientnet_lite0")
    assert backbones.preprocessing_for(lite0, None, None).resize_size == 256
    small = backbones.preprocessing_for(lite0, 64, None)
    assert (small.crop_size, small.resize_size, small.interpolation, small.mean) == (64, 73, "bicubic", (0.5,) * 3)
    assert backbones.preprocessing_for(lite0, 64, 1.0).resize_size == 64
    with pytest.raises(ConfigError, match="at least 75 px"):
        backbones.preprocessing_for(backbones.resolve("inception_v3"), 64, None)
