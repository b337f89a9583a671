"""Metrics, early stopping, the overfitting sentence, and the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.training.folders import FolderFactory
from training import diagnosis, report
from training.cli import main
from training.engine import trainer as trainer_module
from training.engine.loop import EarlyStopping, EpochStats
from training.metrics import classification_metrics, cross_entropy, topk_accuracy


def test_classification_metrics_on_known_predictions() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(3)[[0, 1, 1, 1, 0, 2]] * 5.0  # predictions 0, 1, 1, 1, 0, 2
    metrics = classification_metrics(logits, labels, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert metrics["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert metrics["per_class"]["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert "top5_accuracy" not in metrics  # fewer than five classes


def test_top5_and_loss_match_torch() -> None:
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(50, 8)).astype(np.float32), rng.integers(0, 8, 50)
    expected_loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    assert cross_entropy(logits, labels) == pytest.approx(expected_loss, rel=1e-6)
    top5 = torch.from_numpy(logits).topk(5, dim=1).indices
    expected = (top5 == torch.from_numpy(labels)[:, None]).any(dim=1).float().mean().item()
    assert topk_accuracy(logits, labels, 5) == pytest.approx(expected)
    assert classification_metrics(logits, labels, list("abcdefgh"))["top5_accuracy"] == pytest.approx(expected)


def test_class_never_predicted_has_zero_precision_without_warnings() -> None:
    metrics = classification_metrics(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([0, 1]), ["x", "y"])
    assert metrics["per_class"]["y"]["precision"] == 0.0 and metrics["per_class"]["y"]["f1"] == 0.0


def test_early_stopping_by_loss_and_by_accuracy() -> None:
    stopper = EarlyStopping("val_loss", patience=2, min_delta=0.01)
    assert [stopper.update(v, e) for e, v in enumerate([1.0, 0.8, 0.795, 0.9], start=1)] == [True, True, False, False]
    assert stopper.should_stop and stopper.best_epoch == 2
    stopper.new_phase()
    assert not stopper.should_stop and stopper.best_epoch == 2
    by_accuracy = EarlyStopping("val_accuracy", patience=1)
    assert [by_accuracy.update(v, e) for e, v in enumerate([0.5, 0.7, 0.6], start=1)] == [True, True, False]
    assert by_accuracy.should_stop and by_accuracy.best_epoch == 2
    assert not EarlyStopping(patience=None).should_stop


def rows(train: list[float], val: list[float]) -> list[dict[str, Any]]:
    return [
        {"epoch": i + 1, "phase": "fine-tune", "train_loss": t, "val_loss": v, "train_accuracy": 0.5,
         "val_accuracy": 0.5}
        for i, (t, v) in enumerate(zip(train, val, strict=True))
    ]  # fmt: skip


def test_overfitting_sentence_only_when_validation_rises_as_training_falls() -> None:
    note = diagnosis.overfitting_note(rows([1.0, 0.6, 0.4, 0.2], [0.9, 0.7, 0.8, 0.95]))
    assert note is not None
    assert note.startswith("Validation loss rose from 0.700 (epoch 2) to 0.950 (epoch 4) while training loss kept")
    assert diagnosis.overfitting_note(rows([1.0, 0.6, 0.4, 0.2], [0.9, 0.7, 0.6, 0.5])) is None  # still improving
    assert diagnosis.overfitting_note(rows([1.0, 0.6, 0.7, 0.8], [0.9, 0.7, 0.8, 0.95])) is None  # both rose: diverging
    assert diagnosis.overfitting_note(rows([1.0, 0.6, 0.5], [0.9, 0.7, 0.705])) is None  # within noise


def test_figures_are_written(tmp_path: Path) -> None:
    history = rows([1.0, 0.6, 0.4], [0.9, 0.7, 0.8])
    history[2]["phase"] = "fine-tune all"
    report.plot_curves(history, tmp_path / "curves.png", best_epoch=2)
    report.plot_confusion([[5, 1], [0, 6]], ["cat", "dog"], tmp_path / "confusion.png", "test")
    for name in ("curves.png", "confusion.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.size[0] > 300


def test_early_stopping_restores_the_best_epoch_and_reports_overfitting(
    image_folder: FolderFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Validation loss that bottoms out at epoch 2 and then rises: training stops after ``patience`` bad epochs
    and the exported network is the one of epoch 2."""
    scripted = iter([0.9, 0.5, 0.6, 0.7, 0.8, 0.9])
    real_evaluate = trainer_module.evaluate

    def evaluate(*args: Any, **kwargs: Any) -> EpochStats:
        measured = real_evaluate(*args, **kwargs)
        return EpochStats(next(scripted), measured.accuracy, measured.samples, measured.seconds)

    monkeypatch.setattr(trainer_module, "evaluate", evaluate)
    data = image_folder({"a": 12, "b": 12})
    run = tmp_path / "run"
    args = ["fit", "--data", str(data), "--backbone", "lenet5", "--image-size", "16", "--epochs", "6", "--lr", "0.01",
            "--patience", "2", "--workers", "0", "--run-dir", str(run), "--models-dir", str(tmp_path / "models"),
            "--name", "stopped", "--quiet"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    best = load_file(str(run / "checkpoint" / "best.safetensors"))
    exported = load_file(str(tmp_path / "models" / "stopped" / "1" / "model.safetensors"))
    last = load_file(str(run / "checkpoint" / "last.safetensors"))
    assert all(torch.equal(exported[k], best[k]) for k in best)
    assert not all(torch.equal(last[f"model/{k}"], best[k]) for k in best)
    assert "best epoch 2" in printed
    assert history[-1]["train_loss"] < history[1]["train_loss"]
    assert "Validation loss rose from 0.500 (epoch 2) to 0.700 (epoch 4) while training loss kept falling" in printed
