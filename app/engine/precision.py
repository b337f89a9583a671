"""Which graph ONNX Runtime serves, fp32 or int8, and why (``IMGCLF_PRECISION``).

int8 is served only where it is both honest and faster: the bundle's int8 graph must be within the accuracy bound
that training measured and recorded (``modelspec.quantization``), and, under ``auto``, faster than fp32 on *this*
machine. int8 kernels ran ~2x fp32 on a CPU with AVX-512 VNNI and may gain nothing without it, so the speed is
measured at load (both graphs warmed, alternating timed runs, the serving thread count), never guessed from the CPU.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.config import Settings
from app.engine.speed_memory import memory_key, recall, remember
from modelspec import ONNX_FILE, Bundle, tensors
from modelspec.machine import measured_on
from modelspec.quantization import Quantization
from modelspec.runtime import Spinning, build_session
from modelspec.trust import Precision

logger = logging.getLogger(__name__)


MARGIN = 1.10
"""int8 must run at least this many times fp32's speed at every batch size measured: a smaller gain is within the
noise of a one-second measurement on a busy machine, and not worth int8's accuracy cost."""
MEASURE_SECONDS = 1.0
"""Timed runs at load stop after this long (at least ``MIN_ROUNDS`` rounds): a second per int8 model loaded."""
MIN_ROUNDS = 3
MAX_ROUNDS = 50


@dataclass(frozen=True)
class PrecisionChoice:
    """The graph a model serves, and the sentence that says why (shown in its metadata, the page and the log)."""

    precision: Precision
    reason: str
    file: str = ONNX_FILE
    speedups: Mapping[int, float] = field(default_factory=dict)
    """int8's speed over fp32's by batch size, when measured at load (empty otherwise)."""


FP32_ON_TORCH = PrecisionChoice("fp32", "fp32: the PyTorch backend serves fp32")


@dataclass(frozen=True)
class SpeedProbe:
    """What the load-time measurement runs: both graphs, with the serving thread settings, at these batch sizes."""

    fp32: Path
    int8: Path
    threads: int
    spinning: Spinning
    image_shape: tuple[int, int, int]
    batch_sizes: tuple[int, ...]
    seconds: float = MEASURE_SECONDS


SpeedMeasure = Callable[[SpeedProbe], dict[int, float]]
"""int8's speed over fp32's (fp32 time / int8 time) by batch size; tests pass their own to force the outcome."""


def measure_speedups(probe: SpeedProbe) -> dict[int, float]:
    """Both graphs warmed at every size, then timed in alternating rounds (the order flipped each round, so a burst
    of background load hits both alike); the ratio of their median times per batch size."""
    sessions = {
        name: build_session(path, threads=probe.threads, spinning=probe.spinning, shared_arena=True)
        for name, path in (("fp32", probe.fp32), ("int8", probe.int8))
    }
    rng = np.random.default_rng(0)
    batches = {size: rng.standard_normal((size, *probe.image_shape), dtype=np.float32) for size in probe.batch_sizes}
    outputs = list(tensors.OUTPUTS)
    for session in sessions.values():
        for batch in batches.values():
            session.run(outputs, {tensors.INPUT: batch})
    times: dict[tuple[str, int], list[float]] = {(name, size): [] for name in sessions for size in batches}
    started = time.perf_counter()
    for round_ in range(MAX_ROUNDS):
        if round_ >= MIN_ROUNDS and time.perf_counter() - started > probe.seconds:
            break
        order = list(sessions.items()) if round_ % 2 == 0 else list(reversed(sessions.items()))
        for size, batch in batches.items():
            for name, session in order:
                begun = time.perf_counter()
                session.run(outputs, {tensors.INPUT: batch})
                times[name, size].append(time.perf_counter() - begun)
    return {size: statistics.median(times["fp32", size]) / statistics.median(times["int8", size]) for size in batches}


def usable_int8(record: Quantization | None, files: Mapping[str, str]) -> str | None:
    """None when the bundle has an int8 graph within its bound; else why int8 cannot be served."""
    if record is None:
        return "the bundle has no int8 graph (python -m training quantize BUNDLE adds one)"
    if record.file is None or record.file not in files:
        return f"the bundle keeps no int8 graph ({record.reason})"
    if not record.within_bound:
        return f"its int8 graph is beyond its bound ({record.reason})"
    return None


def bound_text(record: Quantization) -> str:
    """What the check measured, in a few words: the top-1 points lost on the last labelled split (the test split
    when there is one), else the agreement with fp32."""
    labelled = [check for check in record.checks if check.top1_drop_points is not None]
    if labelled:
        check = labelled[-1]
        return f"within its bound ({check.top1_drop_points:.2f} top-1 points lost on {check.split})"
    if record.checks:
        check = record.checks[-1]
        agreement = f"{check.top1_agreement:.1%} of {check.images} {check.split}"
        return f"within its bound (top-1 agrees with fp32 on {agreement})"
    return "within its bound"


def speed_text(speedups: Mapping[int, float]) -> str:
    """E.g. "1.90x fp32's speed at batch 1, 2.10x at batch 16"."""
    parts = [f"{ratio:.2f}x at batch {size}" for size, ratio in sorted(speedups.items())]
    return ", ".join(parts).replace("x at", "x fp32's speed at", 1) if parts else "not measured"


def choose_precision(
    settings: Settings,
    bundle: Bundle,
    threads: int,
    batch_sizes: tuple[int, ...],
    measure: SpeedMeasure | None = None,
) -> PrecisionChoice:
    """The graph to serve for ``settings.precision`` (see the module docstring). Under auto, int8 is timed against
    fp32 by ``measure``; by default the real measurement, remembered on this machine (``app.engine.speed_memory``)."""
    spec = bundle.spec
    if settings.precision == "fp32":
        return PrecisionChoice("fp32", "fp32: IMGCLF_PRECISION=fp32")
    record = spec.quantization
    why_not = usable_int8(record, spec.files)
    if why_not is not None or record is None or record.file is None:
        if settings.precision == "int8":
            logger.warning(
                "%s version %d: IMGCLF_PRECISION=int8, but %s: serving fp32", spec.name, spec.version, why_not
            )
            return PrecisionChoice("fp32", f"fp32: IMGCLF_PRECISION=int8, but {why_not}")
        return PrecisionChoice("fp32", f"fp32: {why_not}")
    bound = bound_text(record)
    if settings.precision == "int8":
        return PrecisionChoice("int8", f"int8: IMGCLF_PRECISION=int8; {bound}; speed not measured", record.file)
    crop = spec.preprocessing.crop_size
    probe = SpeedProbe(
        fp32=bundle.file(ONNX_FILE),
        int8=bundle.file(record.file),
        threads=threads,
        spinning=settings.spinning(),
        image_shape=(3, crop, crop),
        batch_sizes=batch_sizes,
    )
    speedups, when = _speedups(settings, spec.files, record.file, probe, measure)
    logger.info("%s version %d: int8 vs fp32 here: %s%s", spec.name, spec.version, speed_text(speedups), when)
    if speedups and min(speedups.values()) >= MARGIN:
        return PrecisionChoice("int8", f"int8: {bound}; {speed_text(speedups)} here{when}", record.file, speedups)
    return PrecisionChoice(
        "fp32",
        f"fp32: int8 is {bound} but runs at only {speed_text(speedups)} here{when} (it must reach {MARGIN:.2f}x at "
        "every batch size)",
        speedups=speedups,
    )


def _speedups(
    settings: Settings, files: Mapping[str, str], int8_file: str, probe: SpeedProbe, measure: SpeedMeasure | None
) -> tuple[dict[int, float], str]:
    """int8's speedups, and when they were measured if not now: an injected ``measure`` runs every time; the real
    one is remembered for ``IMGCLF_SPEED_MEMORY_DAYS`` days, keyed by what it depends on."""
    if measure is not None:
        return measure(probe), ""
    key = None
    if settings.speed_memory_days > 0:
        described = {
            "graphs": [files.get(ONNX_FILE), files.get(int8_file)],
            "threads": probe.threads,
            "spinning": probe.spinning,
            "image_shape": list(probe.image_shape),
            "batch_sizes": list(probe.batch_sizes),
            "machine": measured_on(),
        }
        key = memory_key(described)
        remembered = recall(key, settings.speed_memory_days)
        if remembered is not None:
            return remembered.speedups, f" (measured on {remembered.date}, remembered: IMGCLF_SPEED_MEMORY_DAYS)"
    started = time.perf_counter()
    speedups = measure_speedups(probe)
    logger.info("int8 vs fp32 measured in %.2f s", time.perf_counter() - started)
    if key is not None:
        remember(key, speedups)
    return speedups, ""
