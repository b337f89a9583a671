"""Adaptive dynamic batching: requests queue, and a worker thread takes whatever is waiting the moment it is free.

Under load, batches grow by themselves (more requests arrive while a batch runs); a lone request never waits for a
batch to fill, because the worker starts as soon as it finds anything in the queue. An optional ``max_wait`` trades
latency for larger batches. Inference runs on the worker threads (one by default; more let several batches run at
once), so the event loop keeps accepting and decoding requests meanwhile (ONNX Runtime and torch release the GIL).

A request's images stay together as one job; when a combined batch fails, each job is retried alone, so one bad
input fails only its own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from app.engine.backends import Backend, Batch, Outputs

logger = logging.getLogger(__name__)


class BatcherClosedError(RuntimeError):
    """The batcher was closed (its model version was unloaded); resolve the model again and retry."""


class BatchObserver(Protocol):
    def __call__(self, batch_size: int, queue_waits: list[float], inference_seconds: float) -> None: ...


@dataclass(eq=False)
class _Job:
    images: Batch
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outputs]
    enqueued_at: float = field(default_factory=time.perf_counter)


_STOP = object()


class Batcher:
    """Runs ``backend.run(batch)`` for queued jobs on ``workers`` dedicated threads, combining jobs up to
    ``max_batch_size`` images.

    With several workers, a batch that runs alone (no other batch running or waiting) goes to
    ``backend.run_alone`` instead: a backend can then give it every thread, and split the threads between batches
    under load.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_batch_size: int = 16,
        max_wait: float = 0.0,
        combine: bool = True,
        observer: BatchObserver | None = None,
        name: str = "model",
        workers: int = 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._run = backend.run
        self._run_alone = backend.run_alone
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.combine = combine
        self._observer = observer
        self._observer_failures = 0
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._busy = 0  # workers running a batch, under _lock
        self._threads = [
            threading.Thread(target=self._work, name=f"batcher-{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken by a worker."""
        return self._queue.qsize()

    async def infer(self, images: Batch) -> Outputs:
        """Queue one request's images (NCHW) and wait for its ``(logits, embeddings)``."""
        loop = asyncio.get_running_loop()
        job = _Job(images=images, loop=loop, future=loop.create_future())
        with self._lock:
            if self._closed:
                raise BatcherClosedError("this model version is being unloaded")
            self._queue.put(job)
        return await job.future

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking jobs, finish the queued ones, and stop the worker thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # The worker thread

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Job)
            jobs, stopping = self._gather(first)
            with self._lock:
                # Alone: no other batch is running and none is waiting to, so this one may use every thread.
                alone = self._busy == 0 and (len(self._threads) == 1 or self._queue.empty())
                self._busy += 1
            try:
                self._process(jobs, self._run_alone if alone else self._run)
            except Exception as exc:  # a bug of ours: answer the batch's requests and keep the worker alive
                logger.exception("the batch worker failed; answering its %d requests with the error", len(jobs))
                for job in jobs:
                    self._deliver(job, exc)
            finally:
                with self._lock:
                    self._busy -= 1

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """Take ``first`` and whatever else is queued (waiting up to ``max_wait``), up to the batch size."""
        jobs, size = [first], len(first.images)
        if not self.combine:
            return jobs, False
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch_size:
            try:
                remaining = deadline - time.perf_counter()
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return jobs, True
            assert isinstance(item, _Job)
            jobs.append(item)
            size += len(item.images)
        return jobs, False

    def _process(self, jobs: list[_Job], run: Callable[[Batch], Outputs]) -> None:
        live = [job for job in jobs if not job.future.cancelled()]
        if not live:
            return
        started = time.perf_counter()
        try:
            outputs = self._run_in_chunks(
                run, np.concatenate([job.images for job in live]) if len(live) > 1 else live[0].images
            )
        except Exception as exc:
            if len(live) == 1:
                self._deliver(live[0], exc)
                return
            logger.warning("a batch of %d requests failed (%s); retrying each alone", len(live), exc)
            for job in live:
                self._process([job], run)
            return
        elapsed = time.perf_counter() - started
        self._observe(sum(len(j.images) for j in live), [started - j.enqueued_at for j in live], elapsed)
        offset = 0
        for job in live:
            count = len(job.images)
            self._deliver(job, (outputs[0][offset : offset + count], outputs[1][offset : offset + count]))
            offset += count

    def _observe(self, batch_size: int, queue_waits: list[float], inference_seconds: float) -> None:
        """Tell the observer (the metrics); its failure must not cost the requests their answers."""
        if self._observer is None:
            return
        try:
            self._observer(batch_size, queue_waits, inference_seconds)
        except Exception:
            self._observer_failures += 1
            if self._observer_failures == 1:  # the traceback once, not once per batch
                logger.exception("the batch observer failed; answers are delivered, metrics may be incomplete")
            else:
                logger.debug("the batch observer failed again (%d times)", self._observer_failures, exc_info=True)

    def _run_in_chunks(self, run: Callable[[Batch], Outputs], batch: Batch) -> Outputs:
        if len(batch) <= self.max_batch_size:
            return run(batch)
        parts = [run(batch[i : i + self.max_batch_size]) for i in range(0, len(batch), self.max_batch_size)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    @staticmethod
    def _deliver(job: _Job, result: Outputs | BaseException) -> None:
        def settle() -> None:
            if job.future.done():  # the client went away
                return
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is waiting any more
            job.loop.call_soon_threadsafe(settle)
