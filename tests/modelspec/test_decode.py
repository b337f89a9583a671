"""The one decoding path: what it refuses (with a stable code) and that it feeds the network what preprocess does."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modelspec import DecodeLimits, ImageError, Preprocessing, decode, load_input, preprocess, tensors

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
