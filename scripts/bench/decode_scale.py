"""``python -m scripts.bench.decode_scale``: what decoding JPEGs at M/8 DCT scale (``modelspec.decode``) gains and
what it changes, against decoding them at full size; writes "## JPEG decoding at M/8" of BENCHMARKS.md.

Per photo size: decode + preprocess CPU time both ways, measured alternately on the same photos. Over all of them:
how often the default model's top-1 class changes, next to how often re-saving the JPEG at quality 95 changes it
(the noise any re-encode, crop or resize by a client brings anyway). The photos are random crops, mirrored or not,
of the offline photos of scikit-image and scikit-learn, at the sizes cameras and web pages use, saved at quality 90.
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image, ImageOps

from modelspec import ONNX_FILE, read_bundle, tensors
from modelspec.decode import DecodeLimits, jpeg_scale, load_input, open_image, scaled_size
from modelspec.preprocess import Float32Array, normalize, resize_and_crop, to_rgb
from modelspec.spec import Preprocessing
from scripts.bench import ROOT
from scripts.bench.machine import load_average, software, this_machine
from scripts.bench.report import publish, section_header
from training.quantize.images import natural_photos

HEADING = "## JPEG decoding at M/8 (issue 17)"
SIZES = ((640, 480), (480, 640), (800, 600), (1024, 768), (600, 400), (451, 300), (1280, 960), (1920, 1080))
FULL = DecodeLimits(draft=False)
SCALED = DecodeLimits(draft=True)


@dataclass(frozen=True)
class SizeRow:
    size: tuple[int, int]
    eighths: int
    full_ms: float
    halving_ms: float
    scaled_ms: float


def halving_input(data: bytes, prep: Preprocessing) -> Float32Array:
    """The previous default: Pillow's ``draft``, which scales a JPEG by 1/2, 1/4 or 1/8 only."""
    image = open_image(data)
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", (prep.resize_size, prep.resize_size))
    image.load()
    return normalize(resize_and_crop(to_rgb(image), prep), prep)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "efficientnet-lite0" / "1")
    parser.add_argument("--photos", type=int, default=800, help="distinct photos for the top-1 agreement")
    parser.add_argument("--timed", type=int, default=40, help="photos per size for the timing")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (medians)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="'-' prints instead")
    return parser.parse_args(argv)


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@functools.cache
def sources() -> list[Image.Image]:
    return [image for _, image in natural_photos()]


def photos(count: int, sizes: Sequence[tuple[int, int]], seed: int) -> list[bytes]:
    """``count`` random crops (a third to all of a photo's area) at ``sizes`` in turn, some mirrored, quality 90."""
    rng = np.random.default_rng(seed)
    made = []
    for index in range(count):
        photo = sources()[index % len(sources())]
        size = sizes[index % len(sizes)]
        width, height = photo.size
        scale = float(np.sqrt(rng.uniform(1 / 3, 1.0)))
        aspect = size[0] / size[1]
        w = min(width, int(scale * width))
        h = min(height, int(w / aspect))
        w = int(h * aspect)
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        image = photo.crop((left, top, left + w, top + h)).resize(size, Image.Resampling.BICUBIC)
        made.append(jpeg(ImageOps.mirror(image) if rng.random() < 0.5 else image, 90))
    return made


def cpu_ms(work: Callable[[bytes], object], data: Sequence[bytes]) -> float:
    started = time.process_time()
    for item in data:
        work(item)
    return (time.process_time() - started) * 1000 / len(data)


def time_sizes(prep: Preprocessing, count: int, rounds: int) -> list[SizeRow]:
    rows = []
    for size in SIZES:
        data = photos(count, [size], seed=size[0] * 10_000 + size[1])
        full, halving, scaled = [], [], []
        for _ in range(rounds):
            full.append(cpu_ms(lambda item: load_input(item, prep, FULL), data))
            halving.append(cpu_ms(lambda item: halving_input(item, prep), data))
            scaled.append(cpu_ms(lambda item: load_input(item, prep, SCALED), data))
        eighths = jpeg_scale(size[0], size[1], prep.resize_size)
        medians = (statistics.median(times) for times in (full, halving, scaled))
        rows.append(SizeRow(size, eighths, *medians))
    return rows


def top1(session: ort.InferenceSession, arrays: list[Float32Array]) -> npt.NDArray[np.intp]:
    """The model's top-1 class of each array, 32 at a time."""
    logits = [
        np.asarray(session.run([tensors.LOGITS], {tensors.INPUT: np.stack(arrays[i : i + 32])})[0])
        for i in range(0, len(arrays), 32)
    ]
    best: npt.NDArray[np.intp] = np.concatenate(logits).argmax(axis=1)
    return best


def resaved(data: bytes, quality: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return jpeg(image.convert("RGB"), quality)


def shown(path: Path) -> Path:
    resolved = path.resolve()
    return resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    bundle = read_bundle(args.bundle)
    prep = bundle.spec.preprocessing
    session = ort.InferenceSession(str(bundle.file(ONNX_FILE)), providers=["CPUExecutionProvider"])
    rows = time_sizes(prep, args.timed, args.rounds)
    data = photos(args.photos, SIZES, seed=1)
    reference = top1(session, [load_input(item, prep, FULL) for item in data])
    scaled = top1(session, [load_input(item, prep, SCALED) for item in data])
    halved = top1(session, [halving_input(item, prep) for item in data])
    requality = top1(session, [load_input(resaved(item, 95), prep, FULL) for item in data])
    changed = scaled != reference
    reduced = np.array([jpeg_scale(*Image.open(io.BytesIO(item)).size, prep.resize_size) < 8 for item in data])
    lines = [
        *section_header(
            HEADING,
            "`python -m scripts.bench.decode_scale`",
            started,
            this_machine(),
            f"; load average (1 min) {load_before:.2f} before and {load_average():.2f} after: full and scaled "
            "decoding were timed alternately, read their ratio.",
            software(("pillow", "simplejpeg", "numpy", "onnxruntime")),
        ),
        f"- Model: `{bundle.spec.name}` (`{shown(args.bundle)}`), resize {prep.resize_size} px "
        f"({prep.interpolation}), crop {prep.crop_size} px.",
        "- Photos: random crops (a third to all of the area), mirrored or not, of the offline sample photos of "
        "scikit-image and scikit-learn, resized to each size and saved at JPEG quality 90.",
        "",
        f"CPU time per image of `modelspec.decode.load_input` (decode, resize, crop, normalise), {args.timed} photos "
        f"per size, median of {args.rounds} alternating rounds:",
        "",
        "| photo | decoded at | full size ms | Pillow's 1/2, 1/4, 1/8 ms (before) | M/8 ms (now) | now vs before |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        w, h = row.size
        sw, sh = scaled_size(w, h, row.eighths)
        at = "full size" if row.eighths == 8 else f"{row.eighths}/8 ({sw}x{sh})"
        lines.append(
            f"| {w}x{h} | {at} | {row.full_ms:.2f} | {row.halving_ms:.2f} | {row.scaled_ms:.2f} | "
            f"{row.scaled_ms / row.halving_ms - 1:+.0%} |"
        )
    resaving = requality != reference
    halving = halved != reference
    lines += [
        "",
        f"Top-1 of the model on {len(data)} photos ({len(SIZES)} sizes in turn; {int(reduced.sum())} of them "
        f"decode at a reduced scale): decoding at M/8 changes it on **{int(changed.sum())} "
        f"({changed.mean():.1%})**: {int(changed[reduced].sum())} of those decoded at a reduced scale "
        f"({changed[reduced].mean():.1%}), {int(changed[~reduced].sum())} of the others (decoded exactly as at "
        f"full size). For comparison, against the same full-size decode: the previous default (Pillow's 1/2, 1/4, "
        f"1/8) changes it on {int(halving.sum())} ({halving.mean():.1%}), and re-saving the photos at JPEG quality "
        f"95 on {int(resaving.sum())} ({resaving.mean():.1%}).",
    ]
    publish("\n".join(lines) + "\n", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
