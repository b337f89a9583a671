"""``--tensorboard``: event logs that TensorBoard's own reader reads back: the history's scalars per epoch, the
confusion matrix as an image, the configuration in the HParams tab; a resumed run logs each epoch once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.training.folders import FolderFactory
from training.cli import main
from training.engine import checkpoint
from training.tensorboard import BOARD_DIR, EPOCH_SCALARS


def read_board(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_logs_read_back_with_tensorboards_reader(
    image_folder: FolderFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = image_folder({"red": 10, "green": 10, "blue": 10})
    run = tmp_path / "run"
    args = [
        "fit",
        "--data",
        str(data),
        "--backbone",
        "lenet5",
        "--image-size",
        "16",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--workers",
        "0",
        "--run-dir",
        str(run),
        "--no-export",
        "--quiet",
        "--tensorboard",
    ]

    # Interrupted after epoch 2 (as Ctrl-C right after its checkpoint), then resumed: the board must hold each
    # epoch once, with the numbers of history.json.
    save = checkpoint.save_checkpoint
    saved: list[int] = []

    def save_then_interrupt(folder: Path, network: torch.nn.Module, state: dict[str, Any]) -> None:
        save(folder, network, state)
        saved.append(1)
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_interrupt)
    assert main(args) == 130
    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    assert main(["fit", "--resume", str(run), "--quiet"]) == 0

    board = read_board(run / BOARD_DIR)
    history = json.loads((run / "history.json").read_text())
    assert set(EPOCH_SCALARS.values()) <= set(board.Tags()["scalars"])
    for column, tag in EPOCH_SCALARS.items():
        events = board.Scalars(tag)
        assert [event.step for event in events] == [1, 2, 3], tag
        assert [event.value for event in events] == pytest.approx([row[column] for row in history], rel=1e-6), tag

    metrics = json.loads((run / "metrics.json").read_text())
    assert board.Scalars("hparam/val_accuracy")[-1].value == pytest.approx(metrics["val"]["accuracy"])
    assert board.Scalars("hparam/val_macro_f1")[-1].value == pytest.approx(metrics["val"]["macro_f1"])
    (image,) = board.Images("confusion_matrix/val")
    assert image.step == metrics["best_epoch"] and image.width > 300 and image.encoded_image_string[:4] == b"\x89PNG"
    hparams = board.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in hparams and "_hparams_/session_start_info" in hparams
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["backbone"].string_value == "lenet5"
    assert start.hparams["epochs"].number_value == 3 and start.hparams["tensorboard"].number_value == 1  # true
