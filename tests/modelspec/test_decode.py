"""The one decoding path: what it refuses (with a stable code) and that it feeds the network what preprocess does."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modelspec import DecodeLimits, ImageError, Preprocessing, decode, load_input, preprocess, tensors
from modelspec.decode import ALLOWED_FORMATS, FORMATS_TEXT, IMAGE_EXTENSIONS, decode_rgb, is_image_name

PREP = Preprocessing(resize_size=36, crop_size=32)


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_image"),
        (b"%PDF-1.7 not an image", "unsupported_image_format"),
        (png(300, 300), "image_too_large"),
        (png(40, 40)[:60], "invalid_image"),
    ],
    ids=["empty", "pdf", "too-many-pixels", "truncated"],
)
def test_unusable_images_raise_an_image_error_with_its_code(data: bytes, code: str) -> None:
    with pytest.raises(ImageError) as raised:
        decode(data, PREP, DecodeLimits(max_pixels=50_000))
    assert raised.value.code == code
    assert str(raised.value)  # a message that says what to do


def test_load_input_equals_preprocess_of_the_opened_image() -> None:
    data = png(50, 40, "L")
    with Image.open(io.BytesIO(data)) as image:
        expected = preprocess(image, PREP)
    np.testing.assert_array_equal(load_input(data, PREP), expected)
    assert load_input(data, PREP).shape == (3, 32, 32)


def test_tensor_names_are_the_bundle_contract() -> None:
    assert tensors.INPUT == "images" and tensors.OUTPUTS == ("logits", "embedding")


def phone_photo(fmt: str, orientation: int = 6) -> bytes:
    """A 40x20 landscape picture, red with a blue top-left corner, saved with an EXIF orientation (6: the camera was
    turned a quarter clockwise, so a viewer shows it upright as 20x40 with the blue corner at the top right)."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"], ids=["heic", "avif"])
def test_phone_photos_decode_upright(fmt: str) -> None:
    rgb = decode_rgb(phone_photo(fmt))
    assert rgb.mode == "RGB" and rgb.size == (20, 40)
    top_right, bottom_left = rgb.getpixel((19, 0)), rgb.getpixel((0, 39))
    assert isinstance(top_right, tuple) and isinstance(bottom_left, tuple)
    assert top_right[2] > 200 and top_right[0] < 50, top_right  # the blue corner, turned to the top right
    assert bottom_left[0] > 200 and bottom_left[2] < 50, bottom_left
    assert load_input(phone_photo(fmt), PREP).shape == (3, 32, 32)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"], ids=["heic", "avif"])
def test_phone_photo_over_the_pixel_cap_is_refused_before_decoding(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = phone_photo(fmt)
    plugin = type(Image.open(io.BytesIO(data)))

    def no_decoding(self: object) -> None:
        raise AssertionError("the pixels were decoded before the size was checked")

    monkeypatch.setattr(plugin, "load", no_decoding)
    with pytest.raises(ImageError) as raised:
        decode(data, PREP, DecodeLimits(max_pixels=40 * 20 - 1))
    assert raised.value.code == "image_too_large" and "800 pixels" in str(raised.value)


def test_modelspec_lists_the_readable_formats_once() -> None:
    assert {"HEIF", "AVIF", "JPEG", "PNG"} <= set(ALLOWED_FORMATS)
    assert {".heic", ".heif", ".avif", ".jpg", ".png"} <= IMAGE_EXTENSIONS
    assert is_image_name("IMG_0001.HEIC") and is_image_name("photo.avif") and not is_image_name("scan.pdf")
    assert "HEIC" in FORMATS_TEXT and "AVIF" in FORMATS_TEXT
    with pytest.raises(ImageError) as raised:
        decode(b"%PDF-1.7 not an image", PREP)
    assert "HEIC" in str(raised.value)  # the refusal names what would have worked
