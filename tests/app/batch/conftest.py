"""Image folders for the batch command's tests: small real images of a few shapes and colours, and bad files."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.conftest import encode

BAD_FILES = {
    # name -> (bytes, the error code its row must carry)
    "notes.jpg": (b"this is a text file with an image's name\n", "unsupported_image_format"),
    "empty.png": (b"", "empty_image"),
}


def shape_image(i: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """The ``i``-th of a family of different pictures (shape, colours and position vary with ``i``)."""
    rng = np.random.default_rng(i)
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    x, y = int(rng.integers(0, size[0] // 2)), int(rng.integers(0, size[1] // 2))
    box = (x, y, x + size[0] // 2, y + size[1] // 2)
    (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colour)
    return image


def truncated_jpeg() -> bytes:
    data = encode(shape_image(999, (320, 240)), "JPEG", quality=90)
    return data[: len(data) // 2]


def make_images(folder: Path, count: int, *, bad: bool = True, subfolders: int = 3) -> list[str]:
    """``count`` JPEG/PNG images spread over ``subfolders`` subfolders (plus the bad files); their paths as listed."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        sub = folder / f"set{i % subfolders}"
        sub.mkdir(exist_ok=True)
        fmt, suffix = ("PNG", "png") if i % 5 == 0 else ("JPEG", "jpg")
        (sub / f"img{i:05d}.{suffix}").write_bytes(encode(shape_image(i), fmt))
    if bad:
        for name, (data, _) in BAD_FILES.items():
            (folder / name).write_bytes(data)
        (folder / "broken.jpg").write_bytes(truncated_jpeg())
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


def expected_error_codes(folder: Path) -> dict[str, str]:
    codes = {str(folder / name): code for name, (_, code) in BAD_FILES.items()}
    codes[str(folder / "broken.jpg")] = "invalid_image"
    return codes


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The output's rows as dicts of ``path``, ``model``, ``labels``, ``indices``, ``scores``, ``error_code`` (and
    ``embedding_row`` / ``embedding`` when there), whatever the format."""
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            return [_csv_row(record) for record in csv.DictReader(handle)]
    if path.suffix == ".jsonl":
        return [_jsonl_row(json.loads(line)) for line in path.read_text().splitlines()]
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return [
        {**row, "labels": row["labels"] or [], "indices": row["indices"] or [], "scores": row["scores"] or []}
        for row in table.to_pylist()
    ]


def _csv_row(record: dict[str, str]) -> dict[str, Any]:
    k = sum(1 for key in record if key.startswith("label_"))
    ranks = [i for i in range(1, k + 1) if record[f"label_{i}"]]
    row: dict[str, Any] = {
        "path": record["path"],
        "model": record["model"],
        "labels": [record[f"label_{i}"] for i in ranks],
        "indices": [int(record[f"index_{i}"]) for i in ranks],
        "scores": [float(record[f"score_{i}"]) for i in ranks],
        "error_code": record["error_code"] or None,
    }
    if "embedding_row" in record:
        row["embedding_row"] = int(record["embedding_row"]) if record["embedding_row"] else None
    return row


def _jsonl_row(record: dict[str, Any]) -> dict[str, Any]:
    predictions = record.get("predictions", [])
    row = {
        "path": record["path"],
        "model": record["model"],
        "labels": [p["label"] for p in predictions],
        "indices": [p["index"] for p in predictions],
        "scores": [p["score"] for p in predictions],
        "error_code": record["error"]["code"] if "error" in record else None,
    }
    if "embedding_row" in record:
        row["embedding_row"] = record["embedding_row"]
    return row


@pytest.fixture
def batch_env(tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the batch command's settings at the tiny models folder (default model: the only one there)."""

    def configure(**values: str) -> None:
        monkeypatch.setenv("IMGCLF_MODELS_DIR", str(tiny_models_dir))
        monkeypatch.setenv("IMGCLF_DEFAULT_MODEL", "")
        monkeypatch.setenv("IMGCLF_DECODE_THREADS", "2")
        monkeypatch.setenv("IMGCLF_INTRA_OP_THREADS", "1")
        for key, value in values.items():
            monkeypatch.setenv(f"IMGCLF_{key.upper()}", value)

    configure()
    return configure
