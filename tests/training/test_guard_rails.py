"""Training where it used to be silent: --data at the parent of the splits, flips on digits, an underfit model, a
model from scratch called fine-tuned or named "train", prepare --limit for digits, and a full disk at export."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest

from modelspec import list_models, read_bundle
from tests.training.folders import FolderFactory, write_images
from training import diagnosis, export
from training.cli import main


def quick_fit(data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["fit", "--data", str(data), "--backbone", "lenet5", "--image-size", "16", "--epochs", "1",
            "--workers", "0", "--lr", "0.01", "--run-dir", str(tmp_path / "run"), "--quiet",
            "--models-dir", str(tmp_path / "models"), *extra]  # fmt: skip


def saved_config(tmp_path: Path) -> dict[str, object]:
    config: dict[str, object] = json.loads((tmp_path / "run" / "checkpoint" / "last.json").read_text())["state"][
        "config"
    ]
    return config


def test_class_folders_named_like_splits_warn_and_point_to_the_train_folder(
    image_folder: FolderFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    data = image_folder({"train": 8, "test": 8}, name="digits")
    assert main(quick_fit(data, tmp_path, "--no-export")) == 0
    hint = f"--data {data / 'train'}"
    assert any(hint in record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)
    text = (tmp_path / "run" / "report.md").read_text()
    assert "**warning**: the class folders of" in text and hint in text


def test_digit_classes_get_no_flips_unless_asked(
    image_folder: FolderFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data = image_folder({"0": 8, "1": 8, "7": 8})
    assert main(quick_fit(data, tmp_path, "--no-export")) == 0
    assert "no horizontal flips: every class name is a single character" in caplog.text
    assert saved_config(tmp_path)["hflip"] is False
    assert (
        "light, no horizontal flips (the class names look like digits or text"
        in (tmp_path / "run" / "report.md").read_text()
    )

    caplog.clear()
    assert main(quick_fit(data, tmp_path / "forced", "--no-export", "--hflip")) == 0
    assert "no horizontal flips" not in caplog.text
    assert saved_config(tmp_path / "forced")["hflip"] is True


def test_photo_classes_keep_their_flips(image_folder: FolderFactory, tmp_path: Path) -> None:
    data = image_folder({"cat": 8, "dog": 8})
    assert main(quick_fit(data, tmp_path, "--no-export")) == 0
    assert saved_config(tmp_path)["hflip"] is True
    assert "light, horizontal flips" in (tmp_path / "run" / "report.md").read_text()


def test_a_model_from_scratch_is_not_called_fine_tuned_nor_named_train(tmp_path: Path) -> None:
    data = write_images(tmp_path / "pets" / "train", {"cat": 8, "dog": 8})
    assert main(quick_fit(data, tmp_path)) == 0
    assert list_models(tmp_path / "models") == {"pets": [1]}
    spec = read_bundle(tmp_path / "models" / "pets" / "1").spec
    assert spec.description.startswith("lenet5 trained from scratch on pets (2 classes)")
    text = (tmp_path / "run" / "report.md").read_text()
    assert "trained from scratch (no pretrained weights" in text
    assert "fine-tune" not in text.split("## Network")[1].split("##")[0].replace("phase fine-tune", "")


def test_the_report_has_an_underfitting_line(image_folder: FolderFactory, tmp_path: Path) -> None:
    data = image_folder({"red": 8, "blue": 8})
    assert main(quick_fit(data, tmp_path, "--no-export")) == 0
    text = (tmp_path / "run" / "report.md").read_text()
    assert "- no sign of underfitting" in text or "**warning**: Underfit" in text


def history(val_loss: list[float], train_accuracy: float = 0.5) -> list[dict[str, object]]:
    return [
        {"epoch": i + 1, "phase": "fine-tune", "train_loss": 1.0, "val_loss": v, "train_accuracy": train_accuracy,
         "val_accuracy": 0.5}
        for i, v in enumerate(val_loss)
    ]  # fmt: skip


def test_underfit_is_flagged_below_the_probe_or_while_still_learning() -> None:
    note = diagnosis.underfitting_note(history([2.0, 1.9]), 0.25, 0.80, 10)
    assert note is not None and note.startswith("Underfit: validation accuracy is only 25.0% (chance: 10.0%)")
    assert "linear probe of the frozen pretrained features reached 80.0%" in note and "--epochs" in note
    still = diagnosis.underfitting_note(history([2.0, 1.2]), 0.40, None, 10)
    assert still is not None and "still falling steeply in the last epoch (2.000 -> 1.200)" in still
    assert diagnosis.underfitting_note(history([2.0, 1.9]), 0.75, 0.80, 10) is None  # close to the probe
    assert diagnosis.underfitting_note(history([2.0, 1.2]), 0.97, None, 10) is None  # right already


def test_validation_far_below_training_accuracy_is_flagged() -> None:
    note = diagnosis.generalisation_gap_note(history([1.0, 1.0], train_accuracy=0.99), 0.60)
    assert note is not None and "far below the training accuracy (99.0%, epoch 1)" in note
    assert diagnosis.generalisation_gap_note(history([1.0, 1.0], train_accuracy=0.70), 0.60) is None


def test_prepare_digits_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "digits"
    assert main(["prepare", "digits", "--out", str(out), "--limit", "3"]) == 0
    assert "digits: 30 train images" in capsys.readouterr().out
    for split in ("train", "test"):
        counts = {folder.name: len(list(folder.iterdir())) for folder in (out / split).iterdir()}
        assert counts == {str(d): 3 for d in range(10)}
    assert main(["prepare", "digits", "--out", str(tmp_path / "bad"), "--limit", "0"]) == 2
    assert "--limit 0: give at least 1" in capsys.readouterr().err


def test_a_full_disk_at_export_is_one_line_and_leaves_nothing(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "save_weights", no_space)
    data = image_folder({"red": 8, "blue": 8}, name="colours")
    assert main(quick_fit(data, tmp_path)) == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error")]  # the rest: the run's INFO log
    assert line.startswith(f"error: no space left on the disk of {tmp_path / 'models' / 'colours'}: the bundle needs")
    assert "bytes" in line and "Traceback" not in err
    models = tmp_path / "models"
    assert list_models(models) == {} and not [p for p in models.rglob("*") if p.is_dir() and p.name != "colours"]
