"""int8-versus-fp32 speeds measured at load, remembered on this machine for ``IMGCLF_SPEED_MEMORY_DAYS`` days, so
that a model's next load (a restart, every batch job) skips the measurement: 1.3 s per int8 model here.

A measurement is remembered under a key made of everything it depends on: both graphs' hashes (from the bundle's
manifest), the thread settings and batch sizes, the CPU (model and int8 extensions) and the ONNX Runtime version. One
JSON file per key under ``$IMGCLF_CACHE_DIR/speeds`` (default ``~/.cache/imgclf``), written to a temporary file and
renamed; a folder that cannot be read or written only means measuring again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelspec.files import write_text_atomically
from modelspec.machine import cache_root

logger = logging.getLogger(__name__)

FOLDER = "speeds"
DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class Remembered:
    speedups: dict[int, float]
    measured_at: float  # seconds since the epoch

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.measured_at))


def memory_key(described: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def _path(key: str, root: Path | None) -> Path:
    return (root or cache_root()) / FOLDER / f"{key}.json"


def recall(key: str, max_age_days: float, root: Path | None = None) -> Remembered | None:
    """The speeds remembered under ``key`` if measured within ``max_age_days``, else None."""
    try:
        raw = json.loads(_path(key, root).read_text(encoding="utf-8"))
        remembered = Remembered({int(size): float(ratio) for size, ratio in raw["speedups"].items()}, raw["at"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not remembered.speedups or time.time() - remembered.measured_at > max_age_days * DAY_SECONDS:
        return None
    return remembered


def remember(key: str, speedups: Mapping[int, float], root: Path | None = None) -> None:
    """Keep ``speedups`` under ``key`` (best effort: a read-only home is not an error)."""
    path = _path(key, root)
    document = {"speedups": {str(size): ratio for size, ratio in speedups.items()}, "at": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(document))
    except OSError:
        logger.debug("could not remember the speed measurement in %s", path.parent, exc_info=True)
