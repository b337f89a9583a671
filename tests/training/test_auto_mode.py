"""``--mode auto``: the quadrant as a decision, on two sets whose answer is clear: crops of real photos (an ImageNet
network's home ground) and handwritten digits (not), both small; and the table itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.sets import digits_subset, photo_crops
from training.auto_mode import SMALL_DATA_PER_CLASS, decide, decide_mode
from training.cli import main
from training.config import FitConfig
from training.engine.distributed import DistInfo
from training.engine.run import prepare_run


@pytest.mark.parametrize(
    ("per_class", "pretrained", "random_init", "mode"),
    [
        (50, 0.99, 0.99, "feature-extractor"),  # small; the pretrained features separate the classes
        (50, 0.90, 0.60, "feature-extractor"),  # small; pretraining cuts the errors to a quarter
        (50, 0.90, 0.88, "two-phase"),  # small; pretraining adds little
        (1000, 0.90, 0.60, "two-phase"),  # large, similar
        (1000, 0.80, 0.75, "fine-tune"),  # large, dissimilar
    ],
)
def test_quadrant(per_class: int, pretrained: float, random_init: float, mode: str) -> None:
    chosen, small, similar, reason = decide(per_class, pretrained, random_init, chance=0.1)
    assert chosen == mode
    assert small == (per_class < SMALL_DATA_PER_CLASS)
    assert f"{per_class} training images per class" in reason and f"{pretrained:.1%}" in reason
    assert f"random-init features {random_init:.1%}" in reason


def test_photo_crops_get_the_feature_extractor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cat, an espresso, an astronaut and a rocket, 20 crops each: few images, close to ImageNet."""
    data = photo_crops(tmp_path / "photos")
    run = tmp_path / "run"
    args = ["fit", "--data", str(data), "--mode", "auto", "--image-size", "64", "--epochs", "2", "--augment", "none",
            "--workers", "0", "--run-dir", str(run), "--no-export", "--quiet"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "transfer mode: feature-extractor (chosen by --mode auto)" in printed
    assert "16 training images per class (small" in printed
    assert "feature cache: on" in printed  # the probe's features are the ones the head trains on
    assert len(list((run / "features").glob("*.safetensors"))) == 1  # computed once, for the probe and the head
    saved = json.loads((run / "checkpoint" / "last.json").read_text())["state"]
    assert saved["config"]["mode"] == "feature-extractor"  # what a resumed run continues, and the bundle records
    auto = saved["choices"]["mode_auto"]
    assert auto["small_data"] is True and auto["similar"] is True
    assert auto["probe_accuracy_pretrained"] >= 0.95
    assert auto["probe_accuracy_pretrained"] - auto["probe_accuracy_random_init"] >= 0.1  # pretraining matters


def test_digits_get_two_phase(digits_data: Path, tmp_path: Path) -> None:
    """Thirty 8x8 handwritten digits per class, upscaled: few images, unlike ImageNet photos."""
    data = digits_subset(digits_data / "train", tmp_path / "digits", per_class=30)
    config = FitConfig(data=data, mode="auto", image_size=32, epochs=3, workers=0, run_dir=tmp_path / "run")
    context = decide_mode(prepare_run(config, None, DistInfo(), torch.device("cpu")))
    assert context.config.mode == "two-phase"
    auto = context.choices["mode_auto"]
    assert auto["small_data"] is True and auto["similar"] is False, auto
    # Random features do about as well as ImageNet's on digits: the pretraining is not what helps.
    assert auto["probe_accuracy_pretrained"] < auto["probe_accuracy_random_init"] + 0.1, auto
    assert "head trains first" in auto["reason"]


def test_without_pretrained_weights_auto_fine_tunes(tmp_path: Path) -> None:
    data = digits_subset_like(tmp_path)
    config = FitConfig(data=data, mode="auto", backbone="lenet5", image_size=16, workers=0, run_dir=tmp_path / "run")
    context = decide_mode(prepare_run(config, None, DistInfo(), torch.device("cpu")))
    assert context.config.mode == "fine-tune"
    assert "no pretrained weights" in context.choices["mode_auto"]["reason"]


def digits_subset_like(root: Path) -> Path:
    from tests.training.folders import write_images

    return write_images(root / "data", {"a": 5, "b": 5})
