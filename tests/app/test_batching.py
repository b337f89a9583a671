"""The batcher on its own, with fake models whose behaviour is known exactly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pytest

from app.engine.backends import Batch, Outputs
from app.engine.batching import Batcher, BatcherClosedError

Run = Callable[[Batch], Outputs]


def echo(batch: Batch) -> Outputs:
    """Logits = the per-image sum, embedding = the flattened image: each answer traceable to its input."""
    return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True), batch.reshape(len(batch), -1)


def images(*values: float) -> Batch:
    return np.stack([np.full((1, 2, 2), v, dtype=np.float32) for v in values])


class FakeBackend:
    """A backend made of functions: ``run`` for batches side by side, ``run_alone`` for a batch alone."""

    name = "fake"
    device = "cpu"

    def __init__(self, run: Run, run_alone: Run | None = None) -> None:
        self.run = run
        self.run_alone = run_alone or run

    def warm_up(self, image_shape: tuple[int, int, int], max_batch_size: int) -> None:
        pass

    def close(self) -> None:
        pass


class Recorder:
    """Records batch sizes; the first call can be held until released, so the queue fills behind it."""

    def __init__(self, hold_first: bool = False, fail_on_nan: bool = False) -> None:
        self.sizes: list[int] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.hold_first = hold_first
        self.fail_on_nan = fail_on_nan

    def __call__(self, batch: Batch) -> Outputs:
        self.sizes.append(len(batch))
        self.started.set()
        if self.hold_first and len(self.sizes) == 1:
            self.release.wait(5)
        if self.fail_on_nan and np.isnan(batch).any():
            raise FloatingPointError("NaN input")
        return echo(batch)


def test_lone_request_is_not_held_back_waiting_for_a_batch() -> None:
    adaptive_run, waiting_run = Recorder(), Recorder()
    adaptive = Batcher(FakeBackend(adaptive_run), max_batch_size=2)
    waiting = Batcher(FakeBackend(waiting_run), max_batch_size=2, max_wait=60.0)

    async def scenario() -> None:
        # Without a wait, a lone request runs at once although no other ever comes (the timeout is a safety net).
        await asyncio.wait_for(adaptive.infer(images(1.0)), timeout=10)
        # With a wait configured, a lone request is held for company: it runs when a second fills the batch.
        first = asyncio.ensure_future(waiting.infer(images(1.0)))
        await asyncio.sleep(0.05)
        assert not first.done() and waiting_run.sizes == []
        await asyncio.wait_for(asyncio.gather(first, waiting.infer(images(2.0))), timeout=10)

    try:
        asyncio.run(scenario())
    finally:
        adaptive.close()
        waiting.close()
    assert adaptive_run.sizes == [1]
    assert waiting_run.sizes == [2]


def test_batches_grow_with_load_up_to_the_maximum() -> None:
    recorder = Recorder(hold_first=True)
    batcher = Batcher(FakeBackend(recorder), max_batch_size=8)

    async def scenario() -> list[Outputs]:
        first = asyncio.ensure_future(batcher.infer(images(0.0)))
        await asyncio.to_thread(recorder.started.wait, 5)
        rest = [asyncio.ensure_future(batcher.infer(images(float(i)))) for i in range(1, 12)]
        await asyncio.sleep(0.05)  # let every job reach the queue while the first batch is held
        recorder.release.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(scenario())
    batcher.close()
    assert recorder.sizes == [1, 8, 3]
    for i, (logits, _) in enumerate(results):  # every request got its own answer back
        assert logits[0, 0] == pytest.approx(4.0 * i)


def test_one_bad_input_fails_only_its_own_request() -> None:
    recorder = Recorder(hold_first=True, fail_on_nan=True)
    batcher = Batcher(FakeBackend(recorder), max_batch_size=8)

    async def scenario() -> list[Outputs | BaseException]:
        first = asyncio.ensure_future(batcher.infer(images(0.0)))
        await asyncio.to_thread(recorder.started.wait, 5)
        jobs = [asyncio.ensure_future(batcher.infer(images(v))) for v in (1.0, float("nan"), 3.0)]
        await asyncio.sleep(0.05)
        recorder.release.set()
        return await asyncio.gather(first, *jobs, return_exceptions=True)

    results = asyncio.run(scenario())
    batcher.close()
    assert isinstance(results[2], FloatingPointError)
    for index, value in ((1, 1.0), (3, 3.0)):
        outputs = results[index]
        assert not isinstance(outputs, BaseException)
        assert outputs[0][0, 0] == pytest.approx(4 * value)
    assert recorder.sizes[:2] == [1, 3]  # combined first, then retried alone


def test_batching_off_runs_each_request_alone() -> None:
    recorder = Recorder(hold_first=True)
    batcher = Batcher(FakeBackend(recorder), max_batch_size=8, combine=False)

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher.infer(images(0.0, 0.5)))
        await asyncio.to_thread(recorder.started.wait, 5)
        rest = [asyncio.ensure_future(batcher.infer(images(float(i)))) for i in range(3)]
        await asyncio.sleep(0.05)
        recorder.release.set()
        await asyncio.gather(first, *rest)

    asyncio.run(scenario())
    batcher.close()
    assert recorder.sizes == [2, 1, 1, 1]


def test_a_request_larger_than_the_maximum_is_split() -> None:
    recorder = Recorder()
    batcher = Batcher(FakeBackend(recorder), max_batch_size=4)
    logits, embeddings = asyncio.run(batcher.infer(images(*range(10))))
    batcher.close()
    assert recorder.sizes == [4, 4, 2]
    assert logits[:, 0].tolist() == [4.0 * v for v in range(10)]
    assert embeddings.shape == (10, 4)


def test_close_finishes_queued_work_then_refuses_more() -> None:
    recorder = Recorder(hold_first=True)
    batcher = Batcher(FakeBackend(recorder), max_batch_size=2)

    async def scenario() -> list[Outputs]:
        jobs = [asyncio.ensure_future(batcher.infer(images(float(i)))) for i in range(4)]
        await asyncio.to_thread(recorder.started.wait, 5)
        closer = asyncio.ensure_future(asyncio.to_thread(batcher.close))
        await asyncio.sleep(0.05)
        recorder.release.set()
        await closer
        with pytest.raises(BatcherClosedError):
            await batcher.infer(images(9.0))
        return await asyncio.gather(*jobs)

    results = asyncio.run(scenario())
    assert [r[0][0, 0] for r in results] == [0.0, 4.0, 8.0, 12.0]


def test_a_batch_alone_gets_run_alone_and_batches_side_by_side_get_run() -> None:
    concurrent, alone = Recorder(), Recorder(hold_first=True)
    batcher = Batcher(FakeBackend(concurrent, alone), max_batch_size=8, workers=2)

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher.infer(images(1.0)))  # nothing else running: alone
        await asyncio.to_thread(alone.started.wait, 5)
        second = await batcher.infer(images(2.0))  # the first still runs: side by side, on the other worker
        assert second[0][0, 0] == pytest.approx(8.0)
        alone.release.set()
        await first

    asyncio.run(scenario())
    batcher.close()
    assert alone.sizes == [1] and concurrent.sizes == [1]


def test_one_worker_always_runs_alone() -> None:
    concurrent, alone = Recorder(), Recorder()
    batcher = Batcher(FakeBackend(concurrent, alone), max_batch_size=2)
    asyncio.run(batcher.infer(images(*range(5))))
    batcher.close()
    assert alone.sizes == [2, 2, 1] and concurrent.sizes == []


def test_a_failing_observer_costs_no_request_its_answer(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def broken_observer(batch_size: int, queue_waits: list[float], inference_seconds: float) -> None:
        calls.append(batch_size)
        raise RuntimeError("metrics backend down")

    batcher = Batcher(FakeBackend(echo), max_batch_size=4, observer=broken_observer)

    async def scenario() -> list[Outputs]:
        results = []
        for value in (1.0, 2.0, 3.0):  # one after another: the worker must survive each failure
            results.append(await asyncio.wait_for(batcher.infer(images(value)), timeout=10))
        return results

    try:
        results = asyncio.run(scenario())
    finally:
        batcher.close()
    assert [r[0][0, 0] for r in results] == [4.0, 8.0, 12.0]
    assert calls == [1, 1, 1]
    assert [r.levelname for r in caplog.records if r.exc_info] == ["ERROR"]  # the traceback once, not per batch
