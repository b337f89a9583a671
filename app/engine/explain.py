"""Occlusion sensitivity (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", arXiv:1311.2901):
slide a grey square over the image the model sees and record how much the probability of a class drops at each
position. Where the drop is large, the model relied on that part of the image.

It needs forward passes only, so it works on any backend (ONNX Runtime included) and needs no gradients. The image
is decoded by the service's pipeline; its occluded copies go to the model's own backend in batches of at most
``max_batch_size``, one batch after the other, on the backend's session for batches that run side by side (one
intra-op thread per batch on a small machine) and not through the prediction batcher, on threads of their own that
run at a lower CPU priority (nice +10). So an explanation is background work: it never takes every core (a batch
that runs alone would), never shares a batch with predictions or queues ahead of them, and yields the CPU to them
when both want it. Measured in alternating pairs on 2 busy cores (load 9-12), /v1/predict's p50 while an
explanation ran was 127 ms through the batcher, 81 ms on the shared-load session, and 55 ms (against 73) once the
explanation's threads were niced.

The occluder is grey by default: the normalised value 0, i.e. the mean colour the model was normalised with (a
mid-grey for the default model, whose mean is 0.5; about the average photo for ImageNet statistics). That is Zeiler
& Fergus's grey square, the input that carries the least information for a network normalised that way, and what its
zero padding looks like to it. On images drawn on black (digits, X-rays, night sky) grey is not neutral: a grey
square *adds* a shape (in the hole of a 0 it draws an 8), so ``fill="black"`` (or ``"white"`` for drawings on
paper) occludes with the background instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt

from app.engine.inference import InferenceFailedError, ModelReloadingError
from app.engine.model import LoadedModel
from modelspec import Preprocessing
from modelspec.preprocess import Float32Array

Fill = Literal["mean", "black", "white"]
"""The occluder's colour: the normalisation mean (grey, the default), or black or white pixels."""

logger = logging.getLogger(__name__)

REFERENCE_CROP, REFERENCE_PATCH = 224, 32
"""The default window is 32 px on a 224 px crop (stride 16: a 13 x 13 grid), and scales with the crop size."""


class ExplainError(ValueError):
    """An explanation that cannot be made as asked; ``code`` is stable, the message says what to change."""

    code: ClassVar[str] = "invalid_parameter"


class ExplainBusyError(RuntimeError):
    """Every explanation slot is taken; retry in a moment."""

    code: ClassVar[str] = "explain_busy"


@dataclass(frozen=True)
class OcclusionGrid:
    """Square windows of ``patch`` pixels every ``stride`` pixels over a ``crop_size`` square, in both directions.

    The last window of each row and column is aligned with the far edge, so every pixel is covered even when the
    stride does not divide ``crop_size - patch``.
    """

    crop_size: int
    patch: int
    stride: int

    @classmethod
    def for_crop(cls, crop_size: int, patch: int | None = None, stride: int | None = None) -> OcclusionGrid:
        """The grid for a crop; a missing ``patch`` scales 32 px at 224 with the crop, a missing ``stride`` is half
        the patch."""
        patch = patch if patch is not None else max(1, round(crop_size * REFERENCE_PATCH / REFERENCE_CROP))
        stride = stride if stride is not None else max(1, patch // 2)
        if not 1 <= patch <= crop_size:
            raise ExplainError(f"patch: must be between 1 and the model's crop size, {crop_size} px")
        if not 1 <= stride <= crop_size:
            raise ExplainError(f"stride: must be between 1 and the model's crop size, {crop_size} px")
        return cls(crop_size=crop_size, patch=patch, stride=stride)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Where the windows of a row (and of a column) start, in crop pixels."""
        last = self.crop_size - self.patch
        starts = list(range(0, last + 1, self.stride))
        if starts[-1] != last:
            starts.append(last)
        return tuple(starts)

    @property
    def rows(self) -> int:
        return len(self.offsets)

    @property
    def cols(self) -> int:
        return len(self.offsets)

    @property
    def positions(self) -> int:
        return self.rows * self.cols

    def windows(self) -> Iterator[tuple[int, int]]:
        """``(top, left)`` of every window, row by row."""
        for top in self.offsets:
            for left in self.offsets:
                yield top, left


def check_cost(grid: OcclusionGrid, max_positions: int) -> None:
    if grid.positions > max_positions:
        raise ExplainError(
            f"patch {grid.patch} and stride {grid.stride} make {grid.positions} positions, more than the limit of "
            f"{max_positions} (IMGCLF_EXPLAIN_MAX_POSITIONS); use a larger stride"
        )


def resolve_class(
    name_or_index: str | None, labels: Sequence[str], default: int, *, listed_by: str = "GET /v1/models/{name}"
) -> int:
    """A class given by its label, else by its index; ``default`` (the top-1) when none is given."""
    if name_or_index is None or name_or_index == "":
        return default
    if name_or_index in labels:
        return labels.index(name_or_index)
    if name_or_index.strip().isdigit():
        index = int(name_or_index)
        if index < len(labels):
            return index
        raise ExplainError(f"class: index {index} is out of range; this model has {len(labels)} classes (0-based)")
    raise ExplainError(
        f"class: {name_or_index!r} is not one of this model's labels; give a label or an index (the labels are "
        f"listed by {listed_by})"
    )


def fill_value(fill: Fill, prep: Preprocessing) -> Float32Array:
    """The occluder's normalised value per channel (C x 1 x 1)."""
    level = {"mean": np.asarray(prep.mean), "black": np.zeros(3), "white": np.ones(3)}[fill]
    value: Float32Array = ((level - np.asarray(prep.mean)) / np.asarray(prep.std)).astype(np.float32)
    return value[:, None, None]


def occluded(
    image: Float32Array, grid: OcclusionGrid, windows: Sequence[tuple[int, int]], fill: Float32Array
) -> Float32Array:
    """Copies of ``image`` (CHW), each with one window covered by ``fill`` (C x 1 x 1)."""
    batch = np.repeat(image[None], len(windows), axis=0)
    for row, (top, left) in enumerate(windows):
        batch[row, :, top : top + grid.patch, left : left + grid.patch] = fill
    return batch


@dataclass(frozen=True)
class Occlusion:
    """The answer: the class, its probability on the whole image, and the drop at every window (rows x cols)."""

    class_index: int
    probabilities: npt.NDArray[np.float64]  # the unoccluded image's, every class
    drops: npt.NDArray[np.float64]  # rows x cols
    grid: OcclusionGrid

    @property
    def score(self) -> float:
        return float(self.probabilities[self.class_index])

    def top(self, k: int) -> list[tuple[int, float]]:
        """The ``k`` most probable classes of the unoccluded image, best first, as ``(index, probability)``."""
        best = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(i), float(self.probabilities[i])) for i in best]


async def explain_occlusion(
    model: LoadedModel,
    image: Float32Array,
    grid: OcclusionGrid,
    class_name_or_index: str | None,
    fill: Fill = "mean",
    *,
    still_loaded: Callable[[], bool] = lambda: True,
    executor: Executor | None = None,
) -> Occlusion:
    """Run the image and its occluded copies through ``model``'s backend (one batch after another) and measure the
    drops. ``still_loaded`` tells a model that failed because it was unloaded meanwhile (a hot reload) from one
    that failed on the input. The batches run on ``executor`` (the event loop's default one if None)."""
    batch_size = model.batcher.max_batch_size
    windows = list(grid.windows())
    cover = fill_value(fill, model.spec.preprocessing)
    # The whole image first: the default class is its top-1.
    probabilities = (await _probabilities(model, image[None], still_loaded, executor))[0]
    top1 = int(np.argmax(probabilities))
    listed_by = f"GET /v1/models/{model.name}"
    class_index = resolve_class(class_name_or_index, model.spec.labels, top1, listed_by=listed_by)
    occluded_scores = np.empty(len(windows), dtype=np.float64)
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        rows = await _probabilities(model, occluded(image, grid, chunk, cover), still_loaded, executor)
        occluded_scores[start : start + len(chunk)] = rows[:, class_index]
    drops = probabilities[class_index] - occluded_scores.reshape(grid.rows, grid.cols)
    return Occlusion(class_index=class_index, probabilities=probabilities, drops=drops, grid=grid)


async def _probabilities(
    model: LoadedModel, batch: Float32Array, still_loaded: Callable[[], bool], executor: Executor | None
) -> npt.NDArray[np.float64]:
    """Probabilities (float64, calibrated where the model is, as predictions are) of each image of ``batch``, from
    the backend's shared-load session."""
    try:
        logits, _ = await asyncio.get_running_loop().run_in_executor(executor, model.backend.run, batch)
    except Exception as exc:
        if not still_loaded():
            raise ModelReloadingError("the model was reloaded during the explanation; send it again") from exc
        logger.exception("an explanation failed on %s version %d", model.name, model.version)
        raise InferenceFailedError("the model failed on this input; it has been logged") from exc
    return model.scorer.probabilities(logits)


BACKGROUND_NICENESS = 10
"""How much lower the explanation threads' CPU priority is than the service's: predictions win a contended core."""


def lower_priority() -> None:
    """Run by each explanation thread as it starts: raise its nice value (Linux gives each thread its own; ONNX
    Runtime runs a one-thread session's work on the calling thread, so the inference is niced too)."""
    if sys.platform.startswith("linux"):
        thread = threading.get_native_id()
        with contextlib.suppress(OSError):
            current = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(19, current + BACKGROUND_NICENESS))


class ExplainSlots:
    """At most ``limit`` explanations at a time in this process, and the threads they run on (``executor``, at a
    lower CPU priority). One more explanation is refused at once rather than queued: a queue of explanations would
    hold connections and memory and, once they start, CPU that predictions need. Taken from the event loop only, so
    a counter is enough."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running = 0
        self.executor = ThreadPoolExecutor(limit, thread_name_prefix="explain", initializer=lower_priority)

    @property
    def running(self) -> int:
        return self._running

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        if self._running >= self.limit:
            raise ExplainBusyError(
                f"{self._running} explanation(s) already running, the most allowed at once "
                "(IMGCLF_EXPLAIN_CONCURRENCY); retry in a moment"
            )
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
