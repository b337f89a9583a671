"""Decode + preprocess hot path: this checkout against an older one, in one process (min of 7 repeats).

    git archive 3ddac24 | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    python scripts/compare_preprocess.py --baseline /tmp/base

Loads ``modelspec/preprocess.py`` from both trees, checks they give identical arrays, and times each step.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from modelspec import Preprocessing  # noqa: E402
from modelspec.decode import DecodeLimits, open_image  # noqa: E402
from scripts.bench.images import test_jpeg  # noqa: E402

LITE0 = Preprocessing(resize_size=256, crop_size=224, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_ms(fn: Callable[[], object], number: int, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - started) / number)
    return min(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="an older checkout of this repository")
    args = parser.parse_args()
    old = load("baseline_preprocess", args.baseline / "modelspec" / "preprocess.py")
    new = load("current_preprocess", ROOT / "modelspec" / "preprocess.py")
    limits = DecodeLimits(max_pixels=40_000_000)
    photo, large = test_jpeg((640, 480)), test_jpeg((4000, 3000))

    def pipeline(module: ModuleType, data: bytes, draft: bool = True) -> np.ndarray:
        image = open_image(data, limits)
        if draft:
            image.draft("RGB", (LITE0.resize_size, LITE0.resize_size))
        image.load()
        result: np.ndarray = module.normalize(module.resize_and_crop(module.to_rgb(image), LITE0), LITE0)
        return result

    decoded = Image.open(io.BytesIO(photo))
    decoded.load()
    cropped = new.resize_and_crop(decoded, LITE0)
    assert np.array_equal(old.normalize(cropped, LITE0), new.normalize(cropped, LITE0))
    assert np.array_equal(pipeline(old, photo), pipeline(new, photo))
    rows = [
        ("normalize, 224x224 RGB -> CHW float32", lambda m: lambda: m.normalize(cropped, LITE0), 300),
        ("to_rgb, upright 640x480 RGB", lambda m: lambda: m.to_rgb(decoded), 300),
        ("decode + preprocess, 640x480 JPEG", lambda m: lambda: pipeline(m, photo), 100),
        ("decode + preprocess, 4000x3000 JPEG (draft)", lambda m: lambda: pipeline(m, large), 5),
    ]
    print("identical outputs; ms per call, best of 7:")
    for name, make, number in rows:
        before, after = best_ms(make(old), number), best_ms(make(new), number)
        print(f"  {name:45s} before {before:8.3f}  after {after:8.3f}  ({before / after:.2f}x)")
    print(f"  {'4000x3000 JPEG without draft':45s} {best_ms(lambda: pipeline(new, large, draft=False), 2, 3):8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
