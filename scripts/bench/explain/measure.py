"""The measurements: one explanation at a time (its cost), and predictions with and without one running."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass

from scripts.bench.load import Load, LoadGenerator, Request
from scripts.bench.machine import load_average
from scripts.bench.serving.service import Server

EXPLAIN_PATH = "/v1/explain"


def post(port: int, path: str, body: bytes, timeout: float = 300.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass(frozen=True)
class Cost:
    """Explanations run one after another on an otherwise idle service."""

    seconds: list[float]  # wall time of each, as the client saw it
    cpu_seconds: list[float]  # the service's CPU time for each (user + system, all threads)
    forward_passes: int
    grid: dict[str, int]

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(self.cpu_seconds)


def explanation_cost(server: Server, image: bytes, count: int) -> Cost:
    """``count`` explanations (after one not measured), each alone."""
    status, body = post(server.port, EXPLAIN_PATH, image)
    if status != 200:
        raise SystemExit(f"the service answered {status} to an explanation: {body[:300]!r}")
    answer = json.loads(body)
    seconds, cpu = [], []
    for _ in range(count):
        cpu_before, started = server.cpu_seconds(), time.perf_counter()
        status, _ = post(server.port, EXPLAIN_PATH, image)
        seconds.append(time.perf_counter() - started)
        cpu.append(server.cpu_seconds() - cpu_before)
        if status != 200:
            raise SystemExit(f"the service answered {status} to an explanation")
    grid = {key: answer["grid"][key] for key in ("rows", "cols", "patch", "stride", "crop_size")}
    print(f"explanation: median {statistics.median(seconds):.2f} s, {statistics.median(cpu):.2f} CPU s", flush=True)
    return Cost(seconds, cpu, answer["forward_passes"], grid)


class BackgroundExplanations:
    """Explanations back to back on a thread, so that one is always running while the block runs."""

    def __init__(self, port: int, image: bytes) -> None:
        self._port, self._image = port, image
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="explainer", daemon=True)
        self.seconds: list[float] = []  # wall time of each explanation that finished
        self.failed = 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            status, _ = post(self._port, EXPLAIN_PATH, self._image)
            if status == 200:
                self.seconds.append(time.perf_counter() - started)
            else:
                self.failed += 1

    def __enter__(self) -> BackgroundExplanations:
        self._thread.start()
        time.sleep(0.5)  # the first one is decoded and its first batches are queued
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()  # the one in flight finishes


@dataclass(frozen=True)
class Window:
    load: Load
    cpu_ms_per_request: float  # the service's CPU time over the window per answered request (explanations too)


@dataclass(frozen=True)
class Round:
    clients: int
    without: Window
    with_explanation: Window
    explanation_s: float  # the explanations' median wall time while predictions ran beside them
    load_average: float

    @property
    def p50_ratio(self) -> float:
        return self.with_explanation.load.p50_ms / self.without.load.p50_ms


def _window(server: Server, generate: LoadGenerator, request: Request, clients: int, seconds: float) -> Window:
    cpu_before = server.cpu_seconds()
    load = generate(server.port, request, clients, seconds)
    cpu = server.cpu_seconds() - cpu_before
    return Window(load, cpu * 1000 / max(load.requests, 1))


def with_and_without(
    server: Server, generate: LoadGenerator, request: Request, image: bytes, clients: int, seconds: float, index: int
) -> Round:
    """One round at ``clients`` predicting clients: without an explanation, then with one (or the other way round
    on odd rounds, so that a drift in the background load does not favour either)."""
    average = load_average()
    generate(server.port, request, clients, 2.0)  # warm-up, not measured
    results: dict[bool, Window] = {}
    durations: list[float] = []
    for running in (False, True) if index % 2 == 0 else (True, False):
        server.wait_until_idle()
        if running:
            with BackgroundExplanations(server.port, image) as background:
                results[True] = _window(server, generate, request, clients, seconds)
            durations = background.seconds  # the last one finishes after the window
        else:
            results[False] = _window(server, generate, request, clients, seconds)
    explanation_s = statistics.median(durations) if durations else float("nan")
    result = Round(clients, results[False], results[True], explanation_s, average)
    print(
        f"  c={clients} round {index + 1}: predict p50 {result.without.load.p50_ms:.1f} ms without, "
        f"{result.with_explanation.load.p50_ms:.1f} ms with an explanation running (which took {explanation_s:.1f} s); "
        f"load {average:.2f}",
        flush=True,
    )
    return result
