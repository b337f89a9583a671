"""Image folders: checks before training, the split, the fingerprint, and parity with the service's preprocessing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modelspec import Preprocessing, preprocess, to_rgb
from tests.training.digits import service_input
from tests.training.folders import FolderFactory
from training.data.datasets import eval_dataset
from training.data.folders import fingerprint, scan_image_folder
from training.data.loaders import make_loader
from training.data.splits import stratified_split
from training.data.transforms import EvalTransform, train_transform
from training.errors import DataError

PREP = Preprocessing(resize_size=40, crop_size=32, interpolation="bicubic", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))


def test_scan_lists_classes_in_order_and_counts(image_folder: FolderFactory) -> None:
    folder = scan_image_folder(image_folder({"dog": 3, "cat": 2, "bird": 4}))
    assert folder.classes == ("bird", "cat", "dog")
    assert folder.counts() == [4, 2, 3]
    assert folder.skipped == ()


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")


def test_folder_without_class_folders_is_a_clear_error(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    with pytest.raises(DataError, match="no class folders"):
        scan_image_folder(tmp_path)


def test_single_class_is_a_clear_error(image_folder: FolderFactory) -> None:
    with pytest.raises(DataError, match="single class folder \\('only'\\)"):
        scan_image_folder(image_folder({"only": 5}))


def test_empty_class_is_a_clear_error(image_folder: FolderFactory) -> None:
    root = image_folder({"cat": 3, "dog": 3})
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="no readable images in .*: empty"):
        scan_image_folder(root)


def test_class_of_only_unreadable_files_is_empty(image_folder: FolderFactory) -> None:
    root = image_folder({"cat": 3, "dog": 3})
    (root / "broken").mkdir()
    (root / "broken" / "a.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken \\(1 unreadable files skipped\\)"):
        scan_image_folder(root)


def test_unreadable_files_are_skipped_and_counted(image_folder: FolderFactory) -> None:
    root = image_folder({"cat": 4, "dog": 4})
    (root / "cat" / "notes.txt").write_text("not an image")
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(jpeg, format="JPEG")
    (root / "dog" / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / ".hidden.png").write_bytes(b"ignored silently")
    folder = scan_image_folder(root)
    assert folder.counts() == [4, 4]
    assert sorted(path.name for path, _ in folder.skipped) == ["empty.png", "notes.txt", "truncated.jpg"]
    assert all(reason for _, reason in folder.skipped)


def test_phone_photos_train_like_any_image(image_folder: FolderFactory) -> None:
    root = image_folder({"cat": 2, "dog": 2})
    Image.new("RGB", (40, 30), (10, 200, 10)).save(root / "cat" / "phone.heic", format="HEIF")
    Image.new("RGB", (40, 30), (10, 10, 200)).save(root / "dog" / "phone.avif", format="AVIF")
    folder = scan_image_folder(root)
    assert folder.counts() == [3, 3] and not folder.skipped
    assert {path.name for path, _ in folder.samples} >= {"phone.heic", "phone.avif"}


def test_validation_folder_keeps_training_class_indices(image_folder: FolderFactory) -> None:
    val = scan_image_folder(image_folder({"dog": 2}, name="val"), classes=("cat", "dog"))
    assert {label for _, label in val.samples} == {1}
    with pytest.raises(DataError, match="does not know: fish"):
        scan_image_folder(image_folder({"fish": 2}, name="other"), classes=("cat", "dog"))


def test_stratified_split_is_seeded_and_keeps_every_class(image_folder: FolderFactory) -> None:
    samples = scan_image_folder(image_folder({"a": 10, "b": 20, "c": 3})).samples
    train, val = stratified_split(samples, 0.2, seed=1)
    assert sorted(train + val) == sorted(samples)
    assert [sum(1 for _, label in val if label == k) for k in range(3)] == [2, 4, 1]
    assert stratified_split(samples, 0.2, seed=1) == (train, val)
    assert stratified_split(samples, 0.2, seed=2) != (train, val)


def test_fingerprint_follows_paths_and_sizes(image_folder: FolderFactory) -> None:
    root = image_folder({"a": 3, "b": 3})
    first = fingerprint([scan_image_folder(root)])
    assert first == fingerprint([scan_image_folder(root)]) and first.startswith("sha256:")
    Image.new("RGB", (30, 30)).save(root / "a" / "new.png")
    assert fingerprint([scan_image_folder(root)]) != first


def _photo_files(tmp_path: Path) -> list[Path]:
    """Files in the forms users have: grey PNG, RGBA PNG, palette GIF, JPEG with an EXIF rotation."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    rgb = Image.fromarray(pixels)
    paths = []
    rgb.convert("L").save(path := tmp_path / "grey.png")
    paths.append(path)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (45, 61), dtype=np.uint8)))
    rgba.save(path := tmp_path / "alpha.png")
    paths.append(path)
    rgb.convert("P").save(path := tmp_path / "palette.gif")
    paths.append(path)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    rgb.save(path := tmp_path / "rotated.jpg", exif=exif, quality=90)
    paths.append(path)
    return paths


def test_validation_tensor_equals_service_preprocessing_of_the_same_file(tmp_path: Path) -> None:
    """Parity: what validation measures is what the service computes (PIL open + to_rgb + modelspec.preprocess)."""
    paths = _photo_files(tmp_path)
    dataset = eval_dataset([(path, 0) for path in paths], PREP)
    for index, path in enumerate(paths):
        service = service_input(path, PREP)
        tensor, label = dataset[index]
        assert tensor.dtype == torch.float32 and tensor.shape == (3, 32, 32)
        np.testing.assert_array_equal(tensor.numpy(), service, err_msg=path.name)
    # And through a DataLoader (batched, as validation reads it).
    images, _ = next(iter(make_loader(dataset, batch_size=4, train=False, seed=0, workers=0)))
    np.testing.assert_array_equal(images[3].numpy(), service_input(paths[3], PREP))


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    rotated = _photo_files(tmp_path)[3]
    tensor, _ = eval_dataset([(rotated, 0)], Preprocessing(resize_size=45, crop_size=45))[0]
    assert tensor.shape == (3, 45, 45)
    with Image.open(rotated) as image:
        assert to_rgb(image).size == (45, 61)  # portrait after rotation


def test_no_augmentation_is_the_evaluation_transform() -> None:
    assert isinstance(train_transform(PREP, "none", hflip=True), EvalTransform)


@pytest.mark.parametrize("preset", ["light", "standard", "trivialaugment", "randaugment"])
def test_augmentation_ends_in_the_same_normalisation(preset: str) -> None:
    image = Image.new("RGB", (50, 40), (255, 128, 0))  # a flat colour survives any crop, flip or resize
    augmented = train_transform(PREP, preset, hflip=True)  # type: ignore[arg-type]
    expected = torch.from_numpy(preprocess(image, PREP))
    torch.manual_seed(0)
    out = augmented(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    # Undone with PREP's mean and std, every value is an 8-bit level (k / 255): colour jitter may change which
    # level, but the scaling and normalisation must be the evaluation's (any other mean or std lands off the grid).
    mean, std = torch.tensor(PREP.mean).view(3, 1, 1), torch.tensor(PREP.std).view(3, 1, 1)
    levels = (out * std + mean) * 255
    torch.testing.assert_close(levels, levels.round(), atol=1e-3, rtol=0)
    assert levels.min() > -1e-3 and levels.max() < 255 + 1e-3
    if preset == "light":  # no colour jitter: the exact numbers of the evaluation transform
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_training_loader_order_depends_on_seed_and_epoch(image_folder: FolderFactory) -> None:
    folder = scan_image_folder(image_folder({"a": 8, "b": 8}))
    dataset = eval_dataset(list(folder.samples), Preprocessing(resize_size=8, crop_size=8))

    def order(seed: int, epoch: int) -> list[int]:
        loader = make_loader(dataset, batch_size=4, train=True, seed=seed, workers=0)
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        return list(loader.sampler)  # type: ignore[arg-type]

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2)
    assert order(0, 1) != order(1, 1)


def test_light_augmentation_keeps_the_evaluation_scale(tmp_path: Path) -> None:
    """Light crops at a random place in the evaluation-resized image: with nothing to crop and no flips it is
    exactly the evaluation transform, so objects are as large in training as in evaluation."""
    prep = Preprocessing(resize_size=32, crop_size=32, interpolation="bilinear")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    light = train_transform(prep, "light", hflip=False)(image)
    torch.testing.assert_close(light, torch.from_numpy(preprocess(image, prep)), atol=1e-5, rtol=0)


def test_light_augmentation_crops_at_random_places_and_mirrors() -> None:
    prep = Preprocessing(resize_size=40, crop_size=32)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 50, 3), dtype=np.uint8))
    augment = train_transform(prep, "light", hflip=True)
    torch.manual_seed(0)
    outputs = [augment(image) for _ in range(8)]
    assert all(out.shape == (3, 32, 32) for out in outputs)
    assert len({out.sum().item() for out in outputs}) > 4  # different crops
    torch.manual_seed(0)
    assert torch.equal(augment(image), outputs[0])  # the torch generator drives it: seeded, resumable
