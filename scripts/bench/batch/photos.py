"""A folder of varied photo-sized JPEGs, made on the spot: crops of scikit-image's sample photos, flipped or not,
resized to 640x480, at a few JPEG qualities. Decoding them costs what decoding camera photos of that size costs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "hubble_deep_field", "immunohistochemistry")
VARIANTS = 120
SIZE = (640, 480)


def variants(count: int = VARIANTS, seed: int = 0) -> list[bytes]:
    """``count`` different JPEGs of ``SIZE``."""
    import skimage.data

    rng = np.random.default_rng(seed)
    sources = []
    for name in PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is not None:
            pixels = loader()
            sources.append(
                Image.fromarray(np.asarray(pixels[0] if isinstance(pixels, tuple) else pixels)).convert("RGB")
            )
    made = []
    for i in range(count):
        photo = sources[i % len(sources)]
        width, height = photo.size
        scale = rng.uniform(0.6, 1.0)
        w, h = int(width * scale), int(height * scale)
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        image = photo.crop((left, top, left + w, top + h)).resize(SIZE, Image.Resampling.BICUBIC)
        if i % 2:
            image = ImageOps.mirror(image)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.choice([80, 85, 90, 95])))
        made.append(buffer.getvalue())
    return made


def make_folder(folder: Path, count: int) -> int:
    """Write ``count`` JPEGs into ``folder`` (100 per subfolder), cycling through the variants; returns their bytes."""
    jpegs = variants()
    total = 0
    for i in range(count):
        sub = folder / f"{i // 100:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        data = jpegs[i % len(jpegs)]
        (sub / f"photo{i:06d}.jpg").write_bytes(data)
        total += len(data)
    return total
