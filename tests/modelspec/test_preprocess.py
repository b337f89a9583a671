from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from modelspec import Preprocessing, preprocess, to_rgb

LITE0 = Preprocessing(resize_size=256, crop_size=224, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)
IMAGENET = Preprocessing(resize_size=256, crop_size=224, interpolation="bilinear")


@pytest.mark.parametrize("prep", [LITE0, IMAGENET], ids=["lite0-bicubic", "imagenet-bilinear"])
@pytest.mark.parametrize("size", [(451, 300), (300, 451), (224, 224), (1000, 257)])
def test_matches_torchvision_eval_transform(
    photo: Callable[[str], Image.Image], prep: Preprocessing, size: tuple[int, int]
) -> None:
    from torchvision import transforms

    image = photo("chelsea").resize(size)
    reference = transforms.Compose(
        [
            transforms.Resize(
                prep.resize_size,
                interpolation=transforms.InterpolationMode.BICUBIC
                if prep.interpolation == "bicubic"
                else transforms.InterpolationMode.BILINEAR,
            ),
            transforms.CenterCrop(prep.crop_size),
            transforms.ToTensor(),
            transforms.Normalize(prep.mean, prep.std),
        ]
    )(image).numpy()
    ours = preprocess(image, prep)
    assert ours.dtype == np.float32 and ours.shape == (3, 224, 224)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "RGBA", "CMYK", "I;16", "I", "F", "1", "YCbCr"])
def test_every_mode_becomes_rgb(photo: Callable[[str], Image.Image], mode: str) -> None:
    image = photo("coffee").convert(mode) if mode not in ("I;16", "I", "F") else photo("coffee").convert("L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image, dtype=np.uint16) * 257)
        assert image.mode.startswith("I;16")
    elif mode in ("I", "F"):
        image = image.convert(mode)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == image.size
    # The picture survives the conversion: mid-grey stays mid-grey rather than being clipped to white.
    assert 40 < np.asarray(rgb).mean() < 215


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(to_rgb(image))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    buffer.seek(0)
    assert to_rgb(Image.open(buffer)).size == (20, 40)


@pytest.mark.parametrize("prep", [LITE0, IMAGENET], ids=["lite0", "imagenet"])
def test_normalize_is_bit_identical_to_the_direct_formula(prep: Preprocessing) -> None:
    from modelspec.preprocess import normalize

    pixels = np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    pixels[0, :3] = [[0, 0, 0], [255, 255, 255], [128, 64, 32]]
    direct = (pixels.astype(np.float32) * np.float32(1 / 255) - np.asarray(prep.mean, dtype=np.float32)) * np.asarray(
        [1 / s for s in prep.std], dtype=np.float32
    )
    ours = normalize(Image.fromarray(pixels), prep)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous and ours.shape == (3, 37, 53)
    np.testing.assert_array_equal(ours, direct.transpose(2, 0, 1))


def test_upright_rgb_image_is_not_copied() -> None:
    image = Image.new("RGB", (8, 8), "red")
    assert to_rgb(image) is image
