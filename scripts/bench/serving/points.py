"""Load points against the running service: the load generator's view (rate, latency, errors) next to the
service's own (batch size, queue wait, CPU time) over the same interval."""

from __future__ import annotations

import time
from dataclasses import dataclass

from scripts.bench.load import Load, LoadGenerator, Request
from scripts.bench.machine import load_average
from scripts.bench.serving.inprocess import InProcess, InProcessBench, Rate
from scripts.bench.serving.service import Server

WARM_UP_S = 2.0
PAIRED_CLIENTS = 16


@dataclass
class Point:
    scenario: str  # the name of the load scenario
    batching: bool
    clients: int
    load: Load
    mean_batch: float
    mean_queue_wait_ms: float
    mean_inference_ms: float
    images_counted: float
    server_cpu: float  # cores busy on average
    load_average: float

    @property
    def cpu_ms_per_image(self) -> float:
        return self.server_cpu * 1000 / self.load.rate if self.load.rate else float("nan")


def measure_point(
    server: Server,
    scenario: str,
    request: Request,
    batching: bool,
    clients: int,
    seconds: float,
    generate: LoadGenerator,
) -> Point:
    """``clients`` clients sending the scenario's ``request`` for ``seconds``, after a warm-up at the same
    concurrency."""
    generate(server.port, request, clients, min(WARM_UP_S, seconds))  # not measured
    server.wait_until_idle()
    before, cpu_before, wall_before = server.batcher_metrics(), server.cpu_seconds(), time.time()
    average = load_average()
    load = generate(server.port, request, clients, seconds)
    cpu = (server.cpu_seconds() - cpu_before) / (time.time() - wall_before)
    after = server.batcher_metrics()
    server.wait_until_idle()  # before the next point (or in-process round) starts

    def delta(name: str) -> float:
        return after[name] - before[name]

    batches = delta("imgclf_batch_size_count") or 1.0
    waits = delta("imgclf_queue_wait_seconds_count") or 1.0
    point = Point(
        scenario=scenario,
        batching=batching,
        clients=clients,
        load=load,
        mean_batch=delta("imgclf_batch_size_sum") / batches,
        mean_queue_wait_ms=delta("imgclf_queue_wait_seconds_sum") / waits * 1000,
        mean_inference_ms=delta("imgclf_inference_seconds_sum") / batches * 1000,
        images_counted=delta("imgclf_images_total"),
        server_cpu=cpu,
        load_average=average,
    )
    print(
        f"  {scenario} batching {'on ' if batching else 'off'} c={clients:>2}: {load.rate:6.1f} img/s  "
        f"p50 {load.p50_ms:6.1f} p90 {load.p90_ms:6.1f} p99 {load.p99_ms:6.1f} ms  "
        f"non-2xx {load.non2xx} errors {load.socket_errors}  batch {point.mean_batch:4.1f}  server CPU {cpu:.2f}  "
        f"load {average:.2f}",
        flush=True,
    )
    return point


@dataclass
class Pair:
    in_process: Rate
    http: Point

    @property
    def ratio(self) -> float:
        return self.http.load.rate / self.in_process.images_per_second if self.in_process.images_per_second else 0.0


def measure_pairs(
    bench: InProcessBench,
    in_process: InProcess,
    server: Server,
    scenario: str,
    request: Request,
    generate: LoadGenerator,
    rounds: int,
    in_process_seconds: float,
    http_seconds: float,
) -> list[Pair]:
    """Alternate the best in-process arrangement with the service at 16 clients, so that each HTTP number has an
    in-process number measured under the same background load beside it."""
    arrangement, batch, _ = in_process.limit
    pairs: list[Pair] = []
    print(f"paired rounds: {arrangement}, batch {batch} vs HTTP at {PAIRED_CLIENTS} clients", flush=True)
    for _ in range(rounds):
        reference = bench.rate(arrangement, batch, in_process_seconds)
        point = measure_point(server, scenario, request, True, PAIRED_CLIENTS, http_seconds, generate)
        pairs.append(Pair(reference, point))
        print(f"  in-process {reference.images_per_second:.1f} img/s: HTTP/in-process {pairs[-1].ratio:.0%}")
    return pairs


def measure_alternating(
    server: Server, requests: list[tuple[str, Request]], generate: LoadGenerator, rounds: int, seconds: float
) -> list[list[Point]]:
    """Each round runs every scenario once at 16 clients, one right after the other (A/B), so that each number has
    the others measured beside it under the same background load; every other round runs them in reverse order,
    so that a drifting load favours none. The points of a round are in the order of ``requests``."""
    print(f"alternating rounds at {PAIRED_CLIENTS} clients: {', '.join(name for name, _ in requests)}", flush=True)
    results: list[list[Point]] = []
    for number in range(rounds):
        order = list(range(len(requests)))
        if number % 2:
            order.reverse()
        measured = {
            i: measure_point(server, requests[i][0], requests[i][1], True, PAIRED_CLIENTS, seconds, generate)
            for i in order
        }
        results.append([measured[i] for i in range(len(requests))])
    return results
