"""The request lifecycle: decode (thread pool) -> batch (batcher) -> predict (backend) -> unbatch -> encode.

Decoding runs on a bounded pool, so it overlaps with inference and never blocks the event loop. A bad image fails
only its own entry; the others in the request are still answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from PIL import Image

from app.batching import BatcherClosedError
from app.config import Settings
from app.metrics import Metrics
from app.model import LoadedModel
from app.uploads import Upload
from modelspec import Preprocessing
from modelspec.decode import DecodeLimits, ImageError, load_input
from modelspec.preprocess import Float32Array

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


class InferenceError(RuntimeError):
    """Running a model failed; ``code`` is stable, the message says what to do."""

    code: ClassVar[str] = "inference_failed"


class InferenceFailedError(InferenceError):
    code = "inference_failed"


class InvalidInputError(InferenceError):
    """A preprocessed array that does not fit the model."""

    code = "invalid_input"


class ModelReloadingError(InferenceError):
    code = "model_reloading"


ItemError = ImageError | InferenceError
"""Why one input got no answer."""


@dataclass(frozen=True)
class ImageOutcome:
    """One image's result: its logits and embedding, or the error that stopped it."""

    filename: str | None
    logits: FloatArray | None = None
    embedding: FloatArray | None = None
    error: ItemError | None = None


class InferencePipeline:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._limits = DecodeLimits(max_pixels=settings.max_image_pixels, draft=settings.draft_decode)
        self._metrics = metrics
        self._decode_threads = settings.resolved_decode_threads()
        self._pool = ThreadPoolExecutor(self._decode_threads, thread_name_prefix="decode")

    async def run(
        self, resolve: Callable[[], LoadedModel], uploads: Sequence[Upload]
    ) -> tuple[LoadedModel, list[ImageOutcome]]:
        """Run ``uploads`` through the model ``resolve`` returns; resolve again once if it was unloaded meanwhile
        (a hot reload), since the new version may preprocess differently."""
        for attempt in (1, 2):
            model = resolve()
            try:
                return model, await self._run_on(model, uploads)
            except BatcherClosedError:
                if attempt == 2:
                    raise ModelReloadingError("the model is being reloaded; retry in a moment") from None
        raise AssertionError("unreachable")

    async def warm_up(self) -> None:
        """Start every decode thread and run a photo-sized JPEG through each, so that the first requests find the
        threads started and Pillow's JPEG plugin loaded. Nothing is recorded in the metrics."""
        prep = Preprocessing.for_crop(224, interpolation="bicubic")
        together = threading.Barrier(self._decode_threads)

        def decode_together() -> Float32Array:
            # Each task waits for the others, so the pool has to start all its threads (it reuses an idle one
            # otherwise).
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait(timeout=10)
            return load_input(sample_jpeg(), prep, self._limits)

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, decode_together) for _ in range(self._decode_threads)))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run_on(self, model: LoadedModel, uploads: Sequence[Upload]) -> list[ImageOutcome]:
        prep = model.spec.preprocessing
        if len(uploads) == 1:  # the common case: no task per image, one loop iteration less
            decoded: Sequence[Float32Array | ImageError] = [await self._decode(uploads[0].data, prep)]
        else:
            decoded = await asyncio.gather(*(self._decode(upload.data, prep) for upload in uploads))
        arrays = {i: item for i, item in enumerate(decoded) if not isinstance(item, ImageError)}
        outcomes = [
            ImageOutcome(upload.filename, error=item if isinstance(item, ImageError) else None)
            for upload, item in zip(uploads, decoded, strict=True)
        ]
        if not arrays:
            return outcomes
        good = list(arrays)
        batch = arrays[good[0]][None] if len(good) == 1 else np.stack([arrays[i] for i in good])
        try:
            logits, embeddings = await model.batcher.infer(batch)
        except BatcherClosedError:
            raise
        except Exception:
            logger.exception("inference failed for %s version %d", model.name, model.version)
            failure = InferenceFailedError("the model failed on this input; it has been logged")
            for i in good:
                outcomes[i] = ImageOutcome(uploads[i].filename, error=failure)
            return outcomes
        for row, i in enumerate(good):
            outcomes[i] = ImageOutcome(uploads[i].filename, logits=logits[row], embedding=embeddings[row])
        return outcomes

    async def _decode(self, data: bytes, prep: Preprocessing) -> Float32Array | ImageError:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._timed_decode, data, prep)
        except ImageError as error:
            return error

    def _timed_decode(self, data: bytes, prep: Preprocessing) -> Float32Array:
        started = time.perf_counter()
        array = load_input(data, prep, self._limits)
        self._metrics.decode.observe(time.perf_counter() - started)
        return array


def softmax(logits: FloatArray) -> FloatArray:
    shifted = np.exp(logits - logits.max())
    result: FloatArray = shifted / shifted.sum()
    return result


def top_k(logits: FloatArray, k: int) -> list[tuple[int, float]]:
    """The ``k`` most probable classes, best first, as ``(index, probability)``."""
    probabilities = softmax(logits.astype(np.float64)).astype(np.float32)
    k = min(k, len(probabilities))
    candidates = np.argpartition(-probabilities, k - 1)[:k]
    best = candidates[np.argsort(-probabilities[candidates], kind="stable")]
    return [(int(i), float(probabilities[i])) for i in best]


def l2_normalize(vector: FloatArray) -> FloatArray:
    norm = float(np.linalg.norm(vector))
    result: FloatArray = vector / norm if norm > 0 else vector
    return result


@functools.cache
def sample_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A synthetic photo-sized JPEG (smooth gradients), for warming up the decode path at start-up."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
