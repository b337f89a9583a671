"""The pipeline without HTTP: decode threads turning the test JPEG into tensors while the model runs batches.

Its best rate over batch sizes and thread arrangements is "the limit" that the service over HTTP is measured
against; its single-image time is the floor for one request's latency.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.config import Settings, available_cores
from modelspec import ONNX_FILE, Bundle, Preprocessing, tensors
from modelspec.decode import DecodeLimits, load_input
from modelspec.runtime import build_session
from scripts.bench.images import test_jpeg
from scripts.bench.machine import load_average

BATCH_SIZES = (1, 4, 8, 16)
LIMITS = DecodeLimits(max_pixels=40_000_000, draft=True)

Runner = Callable[[np.ndarray], object]


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in ms, after one call that is not counted."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def plain_ort_session(bundle: Bundle, threads: int) -> Runner:
    """ONNX Runtime with its default options (spinning thread pool) and ``threads`` intra-op threads."""
    session = build_session(bundle.file(ONNX_FILE), threads=threads)
    return lambda batch: session.run(None, {tensors.INPUT: batch})


@dataclass(frozen=True)
class Rate:
    images_per_second: float
    cpu_ms_per_image: float  # CPU time of the whole process per image: robust to other work on the machine


def pipeline_rate(
    run: Runner,
    images: Sequence[bytes],
    prep: Preprocessing,
    batch: int,
    decode_threads: int,
    workers: int,
    seconds: float,
) -> Rate:
    """Images per second of ``decode_threads`` threads decoding ``images`` (in turn) while ``workers`` threads run
    batches of ``batch`` through ``run``: the in-process equivalent of the service at full load."""
    lock = threading.Lock()
    done = [0]
    turn = itertools.cycle(images)
    with ThreadPoolExecutor(decode_threads) as pool:
        pending = deque(pool.submit(load_input, next(turn), prep, LIMITS) for _ in range(batch * 2 * workers))

        def take() -> list[Future[np.ndarray]]:
            with lock:
                futures = [pending.popleft() for _ in range(batch)]
                pending.extend(pool.submit(load_input, next(turn), prep, LIMITS) for _ in range(batch))
            return futures

        def work(until: float) -> None:
            while time.perf_counter() < until:
                run(np.stack([future.result() for future in take()]))
                with lock:
                    done[0] += batch

        run(np.stack([future.result() for future in take()]))  # one batch to fill the pipeline
        started, cpu_started = time.perf_counter(), time.process_time()
        done[0] = 0
        threads = [threading.Thread(target=work, args=(started + seconds,)) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        for future in pending:
            future.cancel()
    return Rate(done[0] / elapsed, cpu * 1000 / max(1, done[0]))


@dataclass
class InProcess:
    rows: list[tuple[str, int, Rate]] = field(default_factory=list)  # (arrangement, batch, rate)
    single_ms: dict[str, float] = field(default_factory=dict)  # arrangement -> median ms of one image
    decode_ms: float = 0.0

    @property
    def limit(self) -> tuple[str, int, Rate]:
        return max(self.rows, key=lambda row: row[2].images_per_second)

    @property
    def best_single(self) -> tuple[str, float]:
        return min(self.single_ms.items(), key=lambda item: item[1])


class InProcessBench:
    """The pipeline without HTTP, for the service's own backend and, on ONNX Runtime, for its default options and
    other thread arrangements too: the best of them is the limit the service is measured against."""

    def __init__(self, bundle: Bundle, images: bytes | Sequence[bytes], settings: Settings) -> None:
        """``images``: one JPEG, or several decoded in turn (the batch benchmark's photos); the single-image and
        decode figures use the first."""
        from app.engine.backends import create_backend

        self.prep = bundle.spec.preprocessing
        self.images = [images] if isinstance(images, bytes) else list(images)
        self.data = self.images[0]
        self.decode_threads = settings.resolved_decode_threads()
        self.backend = create_backend(settings, bundle)
        service = f"service ({self.backend.name} on {self.backend.device})"
        self.runners: dict[str, tuple[Runner, int]] = {f"{service}, 1 inference thread": (self.backend.run_alone, 1)}
        workers = settings.resolved_inference_workers(self.backend.name)
        if workers > 1:
            # Under full load every batch has others beside it, so the batcher uses the backend's plain ``run``.
            self.runners[f"{service}, {workers} inference threads"] = (self.backend.run, workers)
        if self.backend.name == "onnx":
            cores = available_cores()
            self.runners[f"ORT defaults ({cores} threads, spinning)"] = (plain_ort_session(bundle, cores), 1)
            if cores > 1:
                self.runners[f"ORT defaults, 1 thread each, {cores} inference threads"] = (
                    plain_ort_session(bundle, 1),
                    cores,
                )
        for run, _ in self.runners.values():
            for size in BATCH_SIZES:
                run(np.zeros((size, 3, self.prep.crop_size, self.prep.crop_size), np.float32))

    def rate(self, arrangement: str, batch: int, seconds: float) -> Rate:
        run, workers = self.runners[arrangement]
        return pipeline_rate(run, self.images, self.prep, batch, self.decode_threads, workers, seconds)

    def sweep(self, seconds: float) -> InProcess:
        result = InProcess()
        result.decode_ms = median_ms(lambda: load_input(self.data, self.prep, LIMITS), 50)
        for arrangement, (run, workers) in self.runners.items():
            if workers == 1:

                def one_image(run: Runner = run) -> object:
                    return run(load_input(self.data, self.prep, LIMITS)[None])

                result.single_ms[arrangement] = median_ms(one_image, 60)
                print(f"  single image, {arrangement}: {result.single_ms[arrangement]:.2f} ms", flush=True)
            for size in BATCH_SIZES:
                rate = self.rate(arrangement, size, seconds)
                result.rows.append((arrangement, size, rate))
                print(
                    f"  {arrangement}, batch {size}: {rate.images_per_second:.1f} img/s, "
                    f"{rate.cpu_ms_per_image:.2f} CPU ms/img (load {load_average():.2f})",
                    flush=True,
                )
        return result

    def close(self) -> None:
        self.backend.close()


def large_jpeg_ms(prep: Preprocessing) -> tuple[float, float]:
    """Decode + preprocess of a 4000x3000 JPEG in ms, with and without Pillow's ``draft`` (JPEG DCT scaling)."""
    big = test_jpeg((4000, 3000))
    with_draft = median_ms(lambda: load_input(big, prep, DecodeLimits(40_000_000, draft=True)), 15)
    without = median_ms(lambda: load_input(big, prep, DecodeLimits(40_000_000, draft=False)), 5)
    return with_draft, without
