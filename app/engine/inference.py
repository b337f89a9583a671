"""The inference pipeline, one stage each: decode (a thread pool) -> batch -> predict -> unbatch (the model's
batcher and backend); encoding the answer is the faces' job
(``app.api.encode``, ``app.batch.rows``).

Callers hand in encoded images (``Upload``: the HTTP routes), image files (``ImageFile``: the batch command, read
on the decode pool too) or arrays already preprocessed for the model (a tensor protocol, an explanation that
perturbs an image). Decoding runs on the pipeline's own bounded pool, so it overlaps with inference and never
blocks the event loop. A bad input fails only its own entry; the others are still answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import io
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from app.config import Settings
from app.engine.batching import BatcherClosedError
from app.engine.metrics import Metrics
from app.engine.model import LoadedModel
from modelspec import Preprocessing
from modelspec.decode import DEFAULT_MAX_PIXELS, DecodeLimits, ImageError, load_input, read_file
from modelspec.preprocess import Float32Array

logger = logging.getLogger(__name__)


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


class ClientDisconnectedError(Exception):
    """The client closed the connection before its answer was ready: nobody's fault, nobody to answer. Not an
    upload error (no status fits); ``app.api.errors`` logs it without a traceback and counts it apart."""

    code: ClassVar[str] = "client_disconnected"


@dataclass(frozen=True)
class Upload:
    """An encoded image as a client sent it (an HTTP upload, a v2 BYTES tensor)."""

    filename: str | None
    data: bytes


@dataclass(frozen=True)
class ImageFile:
    """An image on disk, read on a decode thread; ``filename`` is what its outcome reports."""

    path: Path
    filename: str


@dataclass(frozen=True)
class Admitted:
    """A request let in before it reached the pipeline (the HTTP edge sheds load): the model it was resolved to,
    one of whose admission slots the caller holds for it until it is answered."""

    model: LoadedModel


ModelInput = Upload | ImageFile | Float32Array
"""An encoded image, an image file, or one image already preprocessed for the model (float32, CHW)."""

DisconnectProbe = Callable[[], Awaitable[bool]]
"""Says whether the client is gone (``request.is_disconnected``): its work is then dropped."""


@dataclass(frozen=True)
class ImageOutcome:
    """One input's result: its logits and embedding, or the error that stopped it."""

    filename: str | None
    logits: Float32Array | None = None
    embedding: Float32Array | None = None
    error: ItemError | None = None


@dataclass(frozen=True)
class Inference:
    """What a model made of one request's inputs: an outcome per input, in order (the encode stage's input)."""

    model: LoadedModel
    outcomes: list[ImageOutcome]

    @property
    def errors(self) -> list[ItemError]:
        return [outcome.error for outcome in self.outcomes if outcome.error is not None]


class InferencePipeline:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._limits = DecodeLimits(max_pixels=settings.max_image_pixels, draft=settings.draft_decode)
        self._metrics = metrics
        self._decode_threads = settings.resolved_decode_threads()
        self._pool = ThreadPoolExecutor(self._decode_threads, thread_name_prefix="decode")

    async def run(
        self,
        resolve: Callable[[], LoadedModel],
        inputs: Sequence[ModelInput],
        *,
        admitted: Admitted | None = None,
        disconnected: DisconnectProbe | None = None,
        queue_timeout: float | None = None,
    ) -> Inference:
        """Run ``inputs`` through the model ``resolve`` returns; resolve again once if it was unloaded meanwhile
        (a hot reload), since the new version may preprocess differently.

        The request first waits for one of the model's slots (``app.engine.admission``): ``OverloadedError`` if
        none comes free within ``queue_timeout`` (default: the model's). An ``admitted`` request runs on its model
        with the slot its caller holds, without resolving or waiting. With ``disconnected``, the work of a client
        that went away is dropped before decoding and before inference (``ClientDisconnectedError``)."""
        model = admitted.model if admitted is not None else resolve()
        for attempt in (1, 2):
            try:
                if admitted is not None and model is admitted.model:
                    return Inference(model, await self._run_on(model, inputs, disconnected))
                async with model.admission.slot(queue_timeout):
                    return Inference(model, await self._run_on(model, inputs, disconnected))
            except BatcherClosedError:
                if attempt == 2:
                    raise ModelReloadingError("the model is being reloaded; retry in a moment") from None
            model = resolve()
        raise AssertionError("unreachable")

    async def warm_up(self) -> None:
        """Start every decode thread and run a photo-sized JPEG through each, so that the first requests find the
        threads started and Pillow's JPEG plugin loaded. Nothing is recorded in the metrics."""
        prep = Preprocessing.for_crop(224, interpolation="bicubic")
        # Our own sample, not a client's image: the per-request pixel cap (which may be set below its size) is not
        # what is being warmed up.
        limits = dataclasses.replace(self._limits, max_pixels=DEFAULT_MAX_PIXELS)
        together = threading.Barrier(self._decode_threads)

        def decode_together() -> Float32Array:
            # Each task waits for the others, so the pool has to start all its threads (it reuses an idle one
            # otherwise).
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait(timeout=10)
            return load_input(sample_jpeg(), prep, limits)

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, decode_together) for _ in range(self._decode_threads)))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def decode(self, upload: Upload, prep: Preprocessing) -> Float32Array:
        """One image decoded and preprocessed on the pipeline's pool, for a caller that changes it before running
        it (an explanation); raises ``ImageError``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._timed_decode, upload, prep)

    async def _run_on(
        self, model: LoadedModel, inputs: Sequence[ModelInput], disconnected: DisconnectProbe | None
    ) -> list[ImageOutcome]:
        filenames = [item.filename if isinstance(item, Upload | ImageFile) else None for item in inputs]
        await _drop_if_gone(disconnected, "decoding")
        prepared = await self._prepare(model, inputs)
        arrays = {i: item for i, item in enumerate(prepared) if not isinstance(item, ItemError)}
        outcomes = [
            ImageOutcome(filename, error=item if isinstance(item, ItemError) else None)
            for filename, item in zip(filenames, prepared, strict=True)
        ]
        if not arrays:
            return outcomes
        await _drop_if_gone(disconnected, "inference")
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
                outcomes[i] = ImageOutcome(filenames[i], error=failure)
            return outcomes
        for row, i in enumerate(good):
            outcomes[i] = ImageOutcome(filenames[i], logits=logits[row], embedding=embeddings[row])
        return outcomes

    async def _prepare(self, model: LoadedModel, inputs: Sequence[ModelInput]) -> Sequence[Float32Array | ItemError]:
        """Decode the encoded images (on the pool, side by side) and check the arrays."""
        if len(inputs) == 1:  # the common case: no task per image, one loop iteration less
            return [await self._prepare_one(model, inputs[0])]
        return await asyncio.gather(*(self._prepare_one(model, item) for item in inputs))

    async def _prepare_one(self, model: LoadedModel, item: ModelInput) -> Float32Array | ItemError:
        if not isinstance(item, Upload | ImageFile):
            return _checked_array(model, item)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._timed_decode, item, model.spec.preprocessing)
        except ImageError as error:
            return error

    def _timed_decode(self, item: Upload | ImageFile, prep: Preprocessing) -> Float32Array:
        started = time.perf_counter()
        array = load_input(item.data if isinstance(item, Upload) else read_file(item.path), prep, self._limits)
        self._metrics.decode.observe(time.perf_counter() - started)
        return array


async def _drop_if_gone(disconnected: DisconnectProbe | None, stage: str) -> None:
    if disconnected is not None and await disconnected():
        raise ClientDisconnectedError(f"the client went away before {stage}; its request was dropped")


def _checked_array(model: LoadedModel, array: Float32Array) -> Float32Array | InvalidInputError:
    if array.shape != model.input_shape:
        return InvalidInputError(
            f"an input has shape {list(array.shape)}, but {model.name} takes {list(model.input_shape)} (CHW, "
            f"preprocessed as GET /v1/models/{model.name} describes)"
        )
    return np.asarray(array, dtype=np.float32)


@functools.cache
def sample_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A synthetic photo-sized JPEG (smooth gradients), for warming up the decode path at start-up."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
