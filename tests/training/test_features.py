"""Cached features: frozen phases train the head on embeddings computed once, with the same results as running
the frozen backbone every epoch, the same kind of bundle, a key that follows what the embeddings depend on, and
resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from modelspec import list_versions, read_bundle
from tests.training.folders import FolderFactory
from training.cli import main
from training.config import FitConfig
from training.engine import checkpoint
from training.engine.distributed import DistInfo
from training.engine.features import FEATURES_DIR, feature_key, weights_digest
from training.engine.run import prepare_run

NUMBERS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1")


def frozen_args(data: Path, run: Path, *extra: str, backbone: str = "lenet5") -> list[str]:
    size = "16" if backbone == "lenet5" else "32"
    return ["fit", "--data", str(data), "--backbone", backbone, "--image-size", size, "--mode", "feature-extractor",
            "--epochs", "3", "--batch-size", "8", "--lr", "0.05", "--augment", "none", "--dropout", "0.3",
            "--workers", "0", "--run-dir", str(run), "--quiet", *extra]  # fmt: skip


def history(run: Path) -> list[dict[str, Any]]:
    return json.loads((run / "history.json").read_text())


def test_cached_training_matches_running_the_frozen_backbone_every_epoch(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_folder({"red": 12, "green": 12, "blue": 12})
    assert main(frozen_args(data, tmp_path / "plain", "--no-cache-features", "--no-export")) == 0
    assert "feature cache: off: turned off with --no-cache-features" in capsys.readouterr().out
    assert main(frozen_args(data, tmp_path / "cached", "--no-export")) == 0
    printed = capsys.readouterr().out
    assert "feature cache: on: the frozen backbone's embeddings of 30 training and 6 validation images" in printed

    # Same dropout masks, same order, same embeddings: the same epochs, to float rounding.
    for plain, cached in zip(history(tmp_path / "plain"), history(tmp_path / "cached"), strict=True):
        for key in NUMBERS:
            assert cached[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-6), key
    plain_weights = load_file(str(tmp_path / "plain" / "checkpoint" / "last.safetensors"))
    cached_weights = load_file(str(tmp_path / "cached" / "checkpoint" / "last.safetensors"))
    assert plain_weights.keys() == cached_weights.keys()  # the whole network is checkpointed either way
    for key, value in plain_weights.items():
        torch.testing.assert_close(cached_weights[key], value, rtol=1e-4, atol=1e-5)

    (cache,) = (tmp_path / "cached" / FEATURES_DIR).glob("*.safetensors")
    with safe_open(str(cache), framework="pt") as handle:
        assert sorted(handle.keys()) == ["train", "train_labels", "val", "val_labels"]
        assert handle.get_tensor("train").shape == (30, 84)  # LeNet-5's embedding
        assert len((handle.metadata() or {})["key"]) == 64
    assert not (tmp_path / "plain" / FEATURES_DIR).exists()


def test_cached_run_exports_the_whole_network_as_usual(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default pretrained backbone, frozen: the bundle holds backbone and head, and ONNX Runtime agrees."""
    import onnxruntime as ort

    data = image_folder({"red": 10, "green": 10}, size=40)
    models = tmp_path / "models"
    args = frozen_args(data, tmp_path / "run", "--models-dir", str(models), "--name", "frozen",
                       backbone="efficientnet_lite0")  # fmt: skip
    assert main(args) == 0
    assert "feature cache: on" in capsys.readouterr().out
    bundle = read_bundle(models / "frozen" / str(list_versions(models, "frozen")[-1]))
    weights = load_file(str(bundle.path / "model.safetensors"))
    assert any(key.startswith("backbone.") for key in weights) and "classifier.weight" in weights
    assert bundle.spec.hyperparameters["mode"] == "feature-extractor"
    session = ort.InferenceSession(str(bundle.path / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    logits, embedding = session.run(["logits", "embedding"], {"images": batch})
    assert logits.shape == (2, 2) and embedding.shape == (2, 1280)
    # The validation accuracy in model.json is the exported network's (from the embeddings it computes).
    assert bundle.spec.metrics["val"]["samples"] == 4


def test_augmentation_turns_caching_off_and_the_report_says_why(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_folder({"a": 8, "b": 8})
    args = frozen_args(data, tmp_path / "run", "--no-export", "--epochs", "1")
    args[args.index("--augment") + 1] = "light"
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "feature cache: off: --augment light changes the training images every epoch" in printed
    assert "with --augment none (and no mixup/cutmix) they are cached" in printed
    assert not (tmp_path / "run" / FEATURES_DIR).exists()


def test_two_phase_caches_the_head_phase_only(
    image_folder: FolderFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = image_folder({"a": 10, "b": 10})
    args = frozen_args(data, tmp_path / "run", "--no-export")
    args[args.index("--mode") + 1] = "two-phase"
    assert main([*args, "--head-epochs", "1"]) == 0
    assert "phase head only trains the classifier on cached features" in caplog.text
    assert "phase fine-tune trains the classifier on cached features" not in caplog.text
    assert [row["phase"] for row in history(tmp_path / "run")] == ["head only", "fine-tune", "fine-tune"]


def test_interrupted_cached_run_resumes_to_the_same_result(
    image_folder: FolderFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = image_folder({"a": 10, "b": 10, "c": 10})
    assert main(frozen_args(data, tmp_path / "straight", "--no-export")) == 0

    save = checkpoint.save_checkpoint

    def save_then_interrupt(folder: Path, network: torch.nn.Module, state: dict[str, Any]) -> None:
        save(folder, network, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_interrupt)
    interrupted = tmp_path / "interrupted"
    assert main(frozen_args(data, interrupted, "--no-export")) == 130
    (cache,) = (interrupted / FEATURES_DIR).glob("*.safetensors")
    written = cache.stat().st_mtime_ns
    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    caplog.clear()
    assert main(["fit", "--resume", str(interrupted), "--quiet"]) == 0
    assert "frozen features of" not in caplog.text  # read back, not computed again
    assert cache.stat().st_mtime_ns == written

    def numbers(run: Path) -> list[list[float]]:
        return [[row[key] for key in NUMBERS] for row in history(run)]

    assert numbers(interrupted) == numbers(tmp_path / "straight")
    expected = load_file(str(tmp_path / "straight" / "checkpoint" / "last.safetensors"))
    resumed = load_file(str(interrupted / "checkpoint" / "last.safetensors"))
    assert all(torch.equal(resumed[key], value) for key, value in expected.items() if key.startswith("model/"))


def test_the_key_follows_data_preprocessing_and_weights(image_folder: FolderFactory, tmp_path: Path) -> None:
    data = image_folder({"a": 6, "b": 6})

    def context(**changes: Any) -> Any:
        values = {"data": data, "backbone": "lenet5", "image_size": 16, "run_dir": tmp_path / "run", **changes}
        return prepare_run(FitConfig(**values), None, DistInfo(), torch.device("cpu"))

    first = context()
    assert feature_key(first) == feature_key(context())  # same seed: same weights, same everything
    assert feature_key(context(image_size=20)) != feature_key(first)  # preprocessing
    assert feature_key(context(seed=1)) != feature_key(first)  # another split and other weights
    assert feature_key(context(val_fraction=0.5)) != feature_key(first)  # another split
    before = weights_digest(first.network.backbone)
    with torch.no_grad():
        next(first.network.backbone.parameters())[0].add_(1e-3)
    assert weights_digest(first.network.backbone) != before
