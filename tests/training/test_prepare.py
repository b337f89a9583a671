"""Demo datasets: Fashion-MNIST IDX files and scikit-learn digits written as ImageFolder trees."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import prepare
from training.cli import main
from training.errors import DataError


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion_mnist(tmp_path: Path) -> Path:
    """The package's four files, with 30 training and 20 test images whose pixels encode their index."""
    source = tmp_path / "source"
    source.mkdir()
    for split, count in (("train", 30), ("t10k", 20)):
        images = np.stack([np.full((28, 28), i, dtype=np.uint8) for i in range(count)])
        write_idx(source / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(source / f"{split}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    return source


def test_read_idx_returns_the_array(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(path := tmp_path / "x.gz", array)
    np.testing.assert_array_equal(prepare.read_idx(path), array)
    path.write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00"))
    with pytest.raises(DataError, match="not an IDX file"):
        prepare.read_idx(path)


def test_fashion_mnist_tree_with_class_names(fake_fashion_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "fashion"
    counts = prepare.prepare_fashion_mnist(out, source=fake_fashion_mnist)
    assert counts == {"train": 30, "test": 20}
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(prepare.FASHION_MNIST_CLASSES)
    first_bag = out / "train" / "bag" / "00000.png"  # label 8: the images with index 8, 18, 28
    with Image.open(first_bag) as image:
        assert image.size == (28, 28) and image.mode == "L" and image.getpixel((0, 0)) == 8
    assert len(list((out / "test" / "ankle_boot").iterdir())) == 2


def test_limit_takes_the_first_images_of_each_class(fake_fashion_mnist: Path, tmp_path: Path) -> None:
    counts = prepare.prepare_fashion_mnist(tmp_path / "small", limit=1, source=fake_fashion_mnist)
    assert counts == {"train": 10, "test": 10}


def test_preparing_again_is_a_no_op_and_a_different_recipe_needs_force(
    fake_fashion_mnist: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fashion"
    prepare.prepare_fashion_mnist(out, limit=2, source=fake_fashion_mnist)
    marker = (out / prepare.MARKER).stat().st_mtime_ns
    assert prepare.prepare_fashion_mnist(out, limit=2, source=fake_fashion_mnist) == {"train": 20, "test": 20}
    assert (out / prepare.MARKER).stat().st_mtime_ns == marker
    with pytest.raises(DataError, match="--force"):
        prepare.prepare_fashion_mnist(out, limit=1, source=fake_fashion_mnist)
    assert prepare.prepare_fashion_mnist(out, limit=1, force=True, source=fake_fashion_mnist)["train"] == 10


def test_missing_package_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="sudo apt-get install dataset-fashion-mnist"):
        prepare.ensure_fashion_mnist(tmp_path / "absent", install=False)
    with pytest.raises(DataError, match="IDX files not found"):
        prepare.ensure_fashion_mnist(tmp_path / "elsewhere")


@pytest.mark.skipif(not prepare.FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_prepare_command_on_the_real_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fmnist"
    assert main(["prepare", "fashion-mnist", "--out", str(out), "--limit", "3", "--no-install"]) == 0
    assert "30 train images" in capsys.readouterr().out
    assert len(list((out / "test").glob("*/*.png"))) == 30


def test_digits_tree(digits_data: Path) -> None:
    assert len(list((digits_data / "train").glob("*/*.png"))) == 1347
    assert len(list((digits_data / "test").glob("*/*.png"))) == 450
    assert sorted(p.name for p in (digits_data / "test").iterdir()) == [str(d) for d in range(10)]
    with Image.open(next((digits_data / "train" / "0").iterdir())) as image:
        assert image.size == (32, 32)
        assert np.asarray(image).max() > 200  # ink at full strength after scaling 0..16 to 0..255
