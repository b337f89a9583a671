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


def photo_like(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Smooth random colour blobs: something a JPEG encoder and a low-pass filter treat as they would a photo."""
    rng = np.random.default_rng(7)
    coarse = Image.fromarray(rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8))
    return coarse.resize((width, height), Image.Resampling.BICUBIC).convert(mode)


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **options)
    return buffer.getvalue()


FULL_SCALE = DecodeLimits(draft=False)


@pytest.mark.parametrize(
    ("size", "scaled"),
    [
        ((640, 480), (400, 300)),
        ((480, 640), (300, 400)),
        ((1000, 750), (375, 282)),
        ((4000, 3000), (500, 375)),
        ((451, 300), (451, 300)),
    ],
    ids=["640x480-at-5/8", "portrait-at-5/8", "1000x750-at-3/8", "4000x3000-at-1/8", "451x300-full-not-7/8"],
)
def test_a_jpeg_decodes_at_the_smallest_eighth_that_keeps_both_sides_at_the_resize_size(
    size: tuple[int, int], scaled: tuple[int, int]
) -> None:
    data = jpeg(photo_like(*size))
    assert decode_rgb(data, draft_size=256).size == scaled
    assert min(scaled) >= 256 and decode_rgb(data, FULL_SCALE, draft_size=256).size == size  # the switch still works


def test_a_scaled_decode_is_a_faithful_smaller_picture() -> None:
    """The DCT-scaled pixels differ from the full decode resized to the same size only by filtering: the mean
    difference is below one level of 255 (a different picture, a colour swap or a shift would be tens)."""
    data = jpeg(photo_like(640, 480))
    scaled = np.asarray(decode_rgb(data, draft_size=256), dtype=np.float64)
    full = decode_rgb(data, FULL_SCALE).resize((400, 300), Image.Resampling.BICUBIC)
    assert np.abs(scaled - np.asarray(full, dtype=np.float64)).mean() < 1.0


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("size", [(200, 150), (451, 300)], ids=["smaller-than-the-resize", "7/8-would-do"])
def test_a_jpeg_at_full_scale_decodes_exactly_as_pillow_does(mode: str, size: tuple[int, int]) -> None:
    """Never enlarged, and not scaled by 7/8 (slower than a full decode): the same pixels as Pillow's decoder."""
    data = jpeg(photo_like(*size, mode))
    decoded = decode_rgb(data, draft_size=256)
    assert decoded.mode == "RGB" and decoded.size == size
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(decode_rgb(data, FULL_SCALE)))


def test_a_scaled_jpeg_is_turned_upright_by_its_exif_orientation() -> None:
    picture = photo_like(640, 480)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned a quarter clockwise: shown upright as a 480x640 portrait
    turned = decode_rgb(jpeg(picture, exif=exif.tobytes()), draft_size=256)
    assert turned.size == (300, 400)
    as_stored = decode_rgb(jpeg(picture), draft_size=256)
    np.testing.assert_array_equal(np.asarray(turned), np.asarray(as_stored.transpose(Image.Transpose.ROTATE_270)))


def test_a_cmyk_jpeg_still_decodes_to_rgb_at_a_reduced_scale() -> None:
    decoded = decode_rgb(jpeg(photo_like(1024, 768, "CMYK")), draft_size=256)
    assert decoded.mode == "RGB" and decoded.size == (512, 384)  # Pillow's own halving: libjpeg-turbo has no CMYK->RGB


def test_a_jpeg_with_junk_between_its_segments_decodes_as_before() -> None:
    """libjpeg-turbo warns about extraneous bytes before a marker; Pillow's decoder reads such files, and still does."""
    data = jpeg(photo_like(640, 480))
    scan = data.index(b"\xff\xda")  # start of scan
    damaged = data[:scan] + b"\x00\x00\x00" + data[scan:]
    assert decode_rgb(damaged, draft_size=256).size == (640, 480)


def test_a_truncated_jpeg_is_an_invalid_image_not_a_grey_half() -> None:
    data = jpeg(photo_like(640, 480))
    with pytest.raises(ImageError) as raised:
        decode(data[: len(data) // 2], Preprocessing(resize_size=256, crop_size=224))
    assert raised.value.code == "invalid_image"
