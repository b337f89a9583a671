"""The learning-rate range test: ``find-lr`` on the digits suggests a rate at which a short fit converges; ``fit
--lr auto`` uses it and records it; the test leaves the network as it found it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from modelspec import read_bundle
from tests.training.digits import DIGITS_MODEL, fit_args
from tests.training.folders import FolderFactory
from training.cli import main
from training.config import FitConfig
from training.engine.distributed import DistInfo
from training.engine.run import prepare_run
from training.engine.trainer import Trainer
from training.lr_finder import range_test


def test_find_lr_on_digits_suggests_a_rate_at_which_a_short_fit_converges(
    digits_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finder = ["find-lr", "--data", str(digits_data / "train"), "--backbone", "lenet5", "--image-size", "32",
              "--batch-size", "32", "--augment", "none", "--workers", "0", "--run-dir", str(tmp_path / "finder"),
              "--steps", "120", "--quiet"]  # fmt: skip
    assert main(finder) == 0
    printed = capsys.readouterr().out
    match = re.search(r"suggested learning rate: (\S+)", printed)
    assert match, printed
    suggestion = float(match.group(1))
    assert 1e-5 < suggestion < 0.3, suggestion

    plot = tmp_path / "finder" / "lr_find.png"
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] >= 400
    found = json.loads((tmp_path / "finder" / "lr_find.json").read_text())
    assert found["suggestion"] == pytest.approx(suggestion, rel=1e-2)
    assert found["suggestion"] == pytest.approx(found["min_loss_lr"] / 10)
    assert len(found["lrs"]) == len(found["losses"]) == found["steps"] <= 120
    assert found["lrs"] == sorted(found["lrs"])  # growing rates
    assert min(found["losses"]) < found["losses"][0] * 0.8  # the loss fell somewhere along the way

    # Three epochs at the suggested rate: the loss falls and the digits are learnt (chance: 10 %).
    run = tmp_path / "fit"
    args = fit_args(digits_data, tmp_path / "models", run, "--epochs", "3", "--no-export")
    args[args.index("--lr") + 1] = f"{suggestion:.6g}"
    assert main(args) == 0
    history = json.loads((run / "history.json").read_text())
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"], history
    assert history[-1]["val_accuracy"] > 0.8, history


def test_fit_lr_auto_runs_the_test_first_and_records_its_choice(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_folder({"red": 16, "green": 16, "blue": 16}, size=16)
    models = tmp_path / "models"
    args = ["fit", "--data", str(data), "--backbone", "lenet5", "--image-size", "16", "--epochs", "2", "--batch-size",
            "8", "--lr", "auto", "--workers", "0", "--models-dir", str(models), "--name", DIGITS_MODEL,
            "--run-dir", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    spec = read_bundle(models / DIGITS_MODEL / "1").spec
    chosen = spec.hyperparameters["lr"]
    assert isinstance(chosen, float) and chosen == spec.hyperparameters["lr_finder"]["suggestion"]
    assert spec.hyperparameters["lr_finder"]["steps"] >= 10
    assert f"lr {chosen:.3g} (chosen by --lr auto)" in printed
    assert "--lr auto: the learning-rate range test" in printed
    assert (tmp_path / "run" / "lr_find.png").is_file()
    saved = json.loads((tmp_path / "run" / "checkpoint" / "last.json").read_text())["state"]
    assert saved["config"]["lr"] == chosen  # a resumed run keeps the number, and does not search again
    assert saved["choices"]["lr_finder"]["suggestion"] == chosen


def test_the_range_test_restores_weights_and_random_state(image_folder: FolderFactory, tmp_path: Path) -> None:
    data = image_folder({"a": 12, "b": 12}, size=16)
    config = FitConfig(data=data, backbone="lenet5", image_size=16, batch_size=8, batch_norm=True,
                       run_dir=tmp_path / "run", workers=0, quiet=True)  # fmt: skip
    context = prepare_run(config, None, DistInfo(), torch.device("cpu"))
    before = {key: value.clone() for key, value in context.network.state_dict().items()}
    state = torch.get_rng_state()
    result = range_test(Trainer(context), steps=30)
    assert result.steps <= 30 and result.lrs[0] == pytest.approx(1e-7)
    assert result.suggestion == pytest.approx(result.lrs[result.losses.index(min(result.losses))] / 10)
    after = context.network.state_dict()
    assert all(torch.equal(after[key], value) for key, value in before.items())  # BatchNorm statistics too
    assert torch.equal(torch.get_rng_state(), state)
    assert all(parameter.requires_grad for parameter in context.network.parameters())
