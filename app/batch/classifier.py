"""The service's pipeline driven by a list of files instead of requests: decode -> batch -> predict -> rows.

Files go through ``app.engine.inference.InferencePipeline`` (read and decoded on its thread pool) and the model's
batcher and backend, a batch-sized chunk at a time, exactly as a request with that many images would; several
chunks are in flight at once, so the pool decodes the next ones while the backend runs the previous ones, and nothing
waits per image. Rows come out as each chunk completes (in completion order, not input order).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice

from app.batch.inputs import ImagePath
from app.batch.rows import ResultRow, RowOptions, model_id, result_row
from app.config import Settings
from app.engine.inference import ImageFile, InferencePipeline
from app.engine.metrics import Metrics
from app.engine.model import LoadedModel
from app.engine.trust import assess

RowSink = Callable[[list[ResultRow]], None]


def chunks_in_flight(settings: Settings, backend: str) -> int:
    """Enough chunks that every inference worker has a batch running and one waiting while the pool decodes."""
    return 2 * settings.resolved_inference_workers(backend) + 1


class Classifier:
    def __init__(self, settings: Settings, model: LoadedModel, options: RowOptions, metrics: Metrics) -> None:
        self.model = model
        self.options = options
        self.chunk_size = settings.max_batch_size
        self.in_flight = chunks_in_flight(settings, model.backend.name)
        self._pipeline = InferencePipeline(settings, metrics)
        self._model_id = model_id(model.name, model.version)
        self._warm = not settings.warmup

    async def run(self, images: Iterable[ImagePath], emit: RowSink) -> None:
        """Classify ``images``, handing each chunk's rows to ``emit`` (on the event loop) as soon as it is done."""
        if not self._warm:
            await self._pipeline.warm_up()
            self._warm = True
        slots = asyncio.Semaphore(self.in_flight)
        running: set[asyncio.Task[None]] = set()

        async def one(chunk: Sequence[ImagePath]) -> None:
            try:
                emit(await self.classify(chunk))
            finally:
                slots.release()

        try:
            for chunk in _chunks(images, self.chunk_size):
                await slots.acquire()
                for task in [t for t in running if t.done()]:
                    running.discard(task)
                    task.result()  # a failure in ``emit`` (the output) stops the run
                running.add(asyncio.create_task(one(chunk)))
            await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()

    async def classify(self, chunk: Sequence[ImagePath]) -> list[ResultRow]:
        inputs = [ImageFile(image.file, image.name) for image in chunk]
        # No shedding here: the job bounds its own work in flight, and every chunk is wanted however long it waits.
        inference = await self._pipeline.run(lambda: self.model, inputs, queue_timeout=math.inf)
        labels = self.model.spec.labels
        outcomes = inference.outcomes
        trusts = assess(self.model.scorer, outcomes, self.options.coverage, self.model.trust_recorder)
        return [
            result_row(outcome, trust, self._model_id, labels, self.options)
            for outcome, trust in zip(outcomes, trusts, strict=True)
        ]

    def close(self) -> None:
        self._pipeline.close()
        self.model.close()


def _chunks(images: Iterable[ImagePath], size: int) -> Iterator[list[ImagePath]]:
    iterator = iter(images)
    while chunk := list(islice(iterator, size)):
        yield chunk
