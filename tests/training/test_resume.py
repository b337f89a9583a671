"""Checkpoints: an interrupted run resumed from its checkpoint ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.training.folders import FolderFactory
from training.cli import main
from training.engine import checkpoint


def fit_args(data: Path, run_dir: Path, *extra: str) -> list[str]:
    # Augmentation and dropout draw random numbers, AdamW keeps moments, and the two phases switch optimisers:
    # everything a resume has to restore.
    return [
        "fit", "--data", str(data), "--backbone", "lenet5", "--image-size", "16", "--batch-size", "8",
        "--mode", "two-phase", "--epochs", "3", "--head-epochs", "1", "--augment", "light", "--dropout", "0.3",
        "--batch-norm", "--workers", "0", "--run-dir", str(run_dir), "--no-export", "--quiet", *extra,
    ]  # fmt: skip


def final_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors = load_file(str(run_dir / "checkpoint" / "last.safetensors"))
    history = json.loads((run_dir / "history.json").read_text())
    for row in history:
        row.pop("seconds"), row.pop("images_per_second")
    return tensors, history


@pytest.mark.parametrize(
    ("stop_after", "extra"),
    [(1, []), (2, []), (2, ["--balanced-sampling", "--mixup", "0.2"])],
    ids=["at-phase-change", "mid-phase", "mid-phase-balanced-mixup"],
)
def test_interrupted_then_resumed_equals_uninterrupted(
    stop_after: int,
    extra: list[str],
    image_folder: FolderFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = image_folder({"red": 16, "green": 16, "blue": 8})
    assert main(fit_args(data, tmp_path / "straight", *extra)) == 0

    save = checkpoint.save_checkpoint
    saved: list[int] = []

    def save_then_interrupt(folder: Path, network: torch.nn.Module, state: dict[str, Any]) -> None:
        save(folder, network, state)
        saved.append(1)
        if len(saved) == stop_after:
            raise KeyboardInterrupt  # as Ctrl-C right after a checkpoint

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_interrupt)
    interrupted = tmp_path / "interrupted"
    assert main(fit_args(data, interrupted, *extra)) == 130
    assert f"--resume {interrupted}" in capsys.readouterr().err
    assert len(json.loads((interrupted / "history.json").read_text())) == stop_after

    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    assert main(["fit", "--resume", str(interrupted), "--quiet"]) == 0

    expected_tensors, expected_history = final_state(tmp_path / "straight")
    tensors, history = final_state(interrupted)
    assert history == expected_history
    assert tensors.keys() == expected_tensors.keys()
    for key, value in expected_tensors.items():
        assert torch.equal(tensors[key], value), key


def test_resume_refuses_to_change_the_experiment(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_folder({"a": 8, "b": 8})
    args = fit_args(data, tmp_path / "run")
    args[args.index("--epochs") + 1] = "2"
    assert main(args) == 0
    assert main(["fit", "--resume", str(tmp_path / "run"), "--lr", "0.5"]) == 2
    assert "cannot change lr when resuming" in capsys.readouterr().err
    assert main(["fit", "--resume", str(tmp_path / "run")]) == 2
    assert "already finished" in capsys.readouterr().err
    assert main(["fit", "--resume", str(tmp_path / "run"), "--epochs", "3", "--quiet"]) == 0  # extend the last phase
    assert [row["epoch"] for row in json.loads((tmp_path / "run" / "history.json").read_text())] == [1, 2, 3]
    assert main(["fit", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_a_torn_checkpoint_is_detected(tmp_path: Path) -> None:
    network = torch.nn.Linear(2, 2)
    checkpoint.save_checkpoint(tmp_path, network, {"step": torch.tensor(3.0), "note": [1, (2, 3)], "none": None})
    loaded = checkpoint.load_checkpoint(tmp_path)
    assert loaded.state["step"].item() == 3.0 and loaded.state["note"] == [1, [2, 3]] and loaded.state["none"] is None
    torch.testing.assert_close(loaded.model["weight"], network.weight.detach())
    first = (tmp_path / checkpoint.LAST_TENSORS).read_bytes()
    checkpoint.save_checkpoint(tmp_path, network, {"step": torch.tensor(4.0)})
    (tmp_path / checkpoint.LAST_TENSORS).write_bytes(first)  # as if a crash came between the two renames
    with pytest.raises(checkpoint.UserError, match="incomplete"):
        checkpoint.load_checkpoint(tmp_path)


def test_optimizer_state_survives_the_json_and_safetensors_round_trip(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    checkpoint.save_checkpoint(tmp_path, model, {"optimizer": optimizer.state_dict(), "rng": checkpoint.rng_state()})
    restored = torch.optim.AdamW(model.parameters(), lr=0.5)
    loaded = checkpoint.load_checkpoint(tmp_path)
    restored.load_state_dict(checkpoint.optimizer_state(loaded.state["optimizer"]))
    assert restored.param_groups[0]["lr"] == 0.1 and tuple(restored.param_groups[0]["betas"]) == (0.8, 0.9)
    assert list(restored.state) == list(model.parameters())  # keyed by the parameters, as before saving
    for parameter in model.parameters():
        for key, value in optimizer.state[parameter].items():
            torch.testing.assert_close(restored.state[parameter][key], value)
    checkpoint.set_rng_state(loaded.state["rng"])
    draw = torch.rand(3)
    checkpoint.set_rng_state(loaded.state["rng"])
    assert torch.equal(torch.rand(3), draw)
