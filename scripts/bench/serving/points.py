"""Load points against the running service: the load generator's view (rate, latency, errors) next to the
service's own (batch size, queue wait, CPU time) over the same interval."""

from __future__ import annotations

import http.client
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
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


@dataclass(frozen=True)
class SideBySide:
    """Two scenarios loading the service at the same time, half the clients each: one server and one background
    load for both, so their ratio holds on a busy machine (where back-to-back points drift by tens of percent)."""

    primary: str
    other: str
    primary_load: Load
    other_load: Load
    load_average: float

    @property
    def ratio(self) -> float:
        """The other scenario's throughput as a share of the primary's."""
        return self.other_load.rate / self.primary_load.rate if self.primary_load.rate else 0.0


def measure_side_by_side(
    server: Server,
    primary: tuple[str, Request],
    other: tuple[str, Request],
    generate: LoadGenerator,
    seconds: float,
    clients_each: int = PAIRED_CLIENTS // 2,
) -> SideBySide:
    """``clients_each`` clients of each scenario at once for ``seconds``, after a warm-up the same way."""

    def both(duration: float) -> tuple[Load, Load]:
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(generate, server.port, primary[1], clients_each, duration)
            b = pool.submit(generate, server.port, other[1], clients_each, duration)
            return a.result(), b.result()

    both(min(WARM_UP_S, seconds))  # not measured
    server.wait_until_idle()
    average = load_average()
    primary_load, other_load = both(seconds)
    server.wait_until_idle()
    result = SideBySide(primary[0], other[0], primary_load, other_load, average)
    print(
        f"  side by side, {clients_each} clients each: {primary[0]} {primary_load.rate:.1f} img/s, {other[0]} "
        f"{other_load.rate:.1f} img/s ({result.ratio:.0%}); non-2xx {primary_load.non2xx + other_load.non2xx}  "
        f"load {average:.2f}",
        flush=True,
    )
    return result


@dataclass(frozen=True)
class RequestCost:
    """The server's CPU time per request of one scenario, one value per block of requests."""

    scenario: str
    cpu_ms: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.cpu_ms)


def measure_request_costs(
    server: Server, requests: list[tuple[str, Request]], blocks: int = 6, per_block: int = 40
) -> list[RequestCost]:
    """The server's CPU time per request of each scenario, sent one at a time on one connection, the scenarios
    interleaved block by block (every other round in reverse order). A request's CPU time depends little on how
    busy the machine is, so this compares what each scenario costs even where throughput is too noisy to."""
    costs: dict[str, list[float]] = {name: [] for name, _ in requests}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        for number in range(blocks):
            for name, request in requests if number % 2 == 0 else requests[::-1]:
                send(connection, request, 2)  # not counted: the connection and the path warm again
                cpu_before = server.cpu_seconds()
                send(connection, request, per_block)
                costs[name].append((server.cpu_seconds() - cpu_before) * 1000 / per_block)
    finally:
        connection.close()
    result = [RequestCost(name, values) for name, values in costs.items()]
    print("  server CPU per request: " + ", ".join(f"{c.scenario} {c.median_ms:.2f} ms" for c in result), flush=True)
    return result


def send(connection: http.client.HTTPConnection, request: Request, count: int) -> None:
    headers = {"Content-Type": request.content_type, **dict(request.headers)} if request.content_type else {}
    for _ in range(count):
        connection.request(request.method, request.path, body=request.body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"the service answered {response.status} to {request.path}")
