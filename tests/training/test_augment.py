"""The stronger augmentation presets (TrivialAugment, RandAugment) and batch mixing (MixUp, CutMix): they change
the training images, leave the evaluation inputs identical to the service's, and a short fit with each exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modelspec import list_versions, read_bundle
from tests.training.digits import service_input
from tests.training.folders import FolderFactory
from training.cli import main
from training.config import FitConfig
from training.data.transforms import batch_mix, train_transform
from training.engine.distributed import DistInfo
from training.engine.run import prepare_run
from training.engine.trainer import Trainer

POLICIES = ["trivialaugment", "randaugment"]


@pytest.mark.parametrize("preset", POLICIES)
def test_policy_presets_change_training_images_but_not_evaluation_inputs(
    preset: str, tmp_path: Path, photo: object
) -> None:
    folder = tmp_path / "data"
    for name, source in (("cat", "chelsea"), ("cup", "coffee")):
        (folder / name).mkdir(parents=True)
        for index in range(3):
            image = photo(source).resize((96, 64))  # type: ignore[operator]
            image.save(folder / name / f"{index}.jpg", quality=90)
    config = FitConfig(data=folder, backbone="lenet5", image_size=32, augment=preset, val_fraction=0.34, workers=0,
                       seed=1, run_dir=tmp_path / "run")  # fmt: skip
    context = prepare_run(config, None, DistInfo(), torch.device("cpu"))
    trainer = Trainer(context)

    # Validation reads each file exactly as the service does.
    val_set = trainer.val_loader.dataset
    for index, (path, _) in enumerate(context.data.val):
        np.testing.assert_array_equal(val_set[index][0].numpy(), service_input(path, context.prep))  # type: ignore[index]

    # Training images differ from the service's input and from each other, draw after draw.
    train_set = trainer.train_loader.dataset
    path, _ = context.data.train[0]
    torch.manual_seed(0)
    draws = [train_set[0][0] for _ in range(6)]  # type: ignore[index]
    assert all(draw.shape == (3, 32, 32) and draw.dtype == torch.float32 for draw in draws)
    assert not any(np.array_equal(draw.numpy(), service_input(path, context.prep)) for draw in draws)
    assert len({round(float(draw.sum()), 3) for draw in draws}) >= 5


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixed_batches_have_soft_targets_that_sum_to_one(mixup: float, cutmix: float) -> None:
    mix = batch_mix(mixup, cutmix, num_classes=5)
    assert mix is not None
    torch.manual_seed(0)
    images, labels = torch.randn(8, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    mixed, targets = mix(images.clone(), labels)
    assert mixed.shape == images.shape and not torch.equal(mixed, images)
    assert targets.shape == (8, 5) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(8))
    assert (targets >= 0).all()
    # Each image is mostly itself: its own label keeps a share, and the rest goes to the image it was mixed with.
    assert (targets[torch.arange(8), labels] > 0).all()
    assert batch_mix(0.0, 0.0, num_classes=5) is None


def test_presets_keep_the_image_size_and_normalisation() -> None:
    from modelspec import Preprocessing

    prep = Preprocessing(resize_size=40, crop_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    for preset in POLICIES:
        out = train_transform(prep, preset, hflip=True)(image)  # type: ignore[arg-type]
        assert out.shape == (3, 32, 32) and float(out.min()) >= -1.0 - 1e-6 and float(out.max()) <= 1.0 + 1e-6


@pytest.mark.parametrize(
    "extra",
    [["--augment", "trivialaugment"], ["--augment", "randaugment"], ["--mixup", "0.2"], ["--cutmix", "1.0"],
     ["--augment", "trivialaugment", "--mixup", "0.2", "--cutmix", "1.0"]],
    ids=["trivialaugment", "randaugment", "mixup", "cutmix", "all"],
)  # fmt: skip
def test_a_short_fit_with_each_preset_runs_and_exports(
    extra: list[str], image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_folder({"red": 8, "green": 8, "blue": 8}, size=20)
    models = tmp_path / "models"
    args = ["fit", "--data", str(data), "--backbone", "lenet5", "--image-size", "16", "--epochs", "1", "--batch-size",
            "8", "--workers", "0", "--models-dir", str(models), "--name", "aug", "--run-dir", str(tmp_path / "run"),
            "--quiet", *extra]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    bundle = read_bundle(models / "aug" / str(list_versions(models, "aug")[-1]))
    hyper = bundle.spec.hyperparameters
    assert hyper["augment"] == (extra[1] if extra[0] == "--augment" else "light")
    if "--mixup" in extra:
        assert hyper["mixup"] == 0.2 and "MixUp (alpha 0.2)" in printed
    if "--cutmix" in extra:
        assert hyper["cutmix"] == 1.0 and "CutMix (alpha 1)" in printed
    assert (bundle.path / "model.onnx").is_file()
