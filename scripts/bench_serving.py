"""Serving benchmark: the in-process limit and the real service over HTTP, measured in one run on one machine.

What it measures (``make bench`` runs it and writes the "## Serving" section of BENCHMARKS.md):

* the in-process limit: decode threads turning the test JPEG into tensors while the model runs batches, no HTTP,
  at several batch sizes, with the service's backend and (ONNX Runtime) other session options and thread
  arrangements too; the best of them all is "the limit";
* the in-process single-image time: decode + preprocess + forward of one image, nothing else running;
* a real ``python -m app`` subprocess under a closed-loop load of 1, 4, 16 and 64 clients posting the JPEG as a raw
  ``image/jpeg`` body (``wrk`` with a Lua script when installed, else a small asyncio client), with batching on and
  with batching off: throughput, p50/p90/p99 latency, non-2xx responses and socket errors, the batcher's own
  Prometheus numbers (mean batch size, queue wait) and the server's CPU use;
* start-up to ready (process start to ``/health/ready`` 200) and the first request against the next ones;
* a 4000x3000 JPEG decoded with and without Pillow's ``draft`` (JPEG DCT scaling).

Speeds on a shared machine drift, so compare numbers from the same run; the load average is recorded with each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: import this checkout's packages, not an installed copy
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from app.config import Settings, available_cores  # noqa: E402
from modelspec import Bundle, Preprocessing, list_models, read_bundle, tensors  # noqa: E402
from modelspec.decode import DecodeLimits, load_input  # noqa: E402

CONCURRENCY = (1, 4, 16, 64)
SECTION = "## Serving"

WRK_SCRIPT = r"""
-- POST the benchmark image as a raw image/jpeg body; count non-2xx responses per thread.
local path = os.getenv("BENCH_IMAGE")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  non2xx = 0
end
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


# Machine and inputs


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"Python": platform.python_version()}
    for package in ("onnxruntime", "numpy", "pillow", "fastapi", "starlette", "uvicorn", "uvloop", "httptools"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    wrk = shutil.which("wrk")
    if wrk:
        text = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False).stdout
        match = re.search(r"wrk (\S+)", text)
        found["wrk"] = match.group(1) if match else "?"
    return found


def test_jpeg(size: tuple[int, int], quality: int = 90) -> bytes:
    """scikit-image's ``chelsea`` resized to ``size``, as a JPEG."""
    import skimage.data

    image = Image.fromarray(np.asarray(skimage.data.chelsea())).resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def find_bundle(models_dir: Path, name: str) -> Bundle:
    versions_on_disk = list_models(models_dir).get(name)
    if not versions_on_disk:
        raise SystemExit(
            f"no bundle {name!r} in {models_dir}; build it with: "
            f"python -m training export-pretrained efficientnet_lite0 --models-dir {models_dir}"
        )
    return read_bundle(models_dir / name / str(max(versions_on_disk)))


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


# In-process

Runner = Callable[[np.ndarray], object]


def plain_ort_session(bundle: Bundle, threads: int) -> Runner:
    """ONNX Runtime with its default options (spinning thread pool) and ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(
        str(bundle.file("model.onnx")), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return lambda batch: session.run(None, {tensors.INPUT: batch})


@dataclass(frozen=True)
class Rate:
    images_per_second: float
    cpu_ms_per_image: float  # CPU time of the whole process per image: robust to other work on the machine


def pipeline_rate(
    run: Runner, data: bytes, prep: Preprocessing, batch: int, decode_threads: int, workers: int, seconds: float
) -> Rate:
    """Images per second of ``decode_threads`` threads decoding ``data`` while ``workers`` threads run batches of
    ``batch`` through ``run``: the in-process equivalent of the service at full load."""
    limits = DecodeLimits(max_pixels=40_000_000, draft=True)
    lock = threading.Lock()
    done = [0]
    with ThreadPoolExecutor(decode_threads) as pool:
        pending = deque(pool.submit(load_input, data, prep, limits) for _ in range(batch * 2 * workers))

        def take() -> list[Future[np.ndarray]]:
            with lock:
                futures = [pending.popleft() for _ in range(batch)]
                pending.extend(pool.submit(load_input, data, prep, limits) for _ in range(batch))
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

    def __init__(self, bundle: Bundle, data: bytes, settings: Settings) -> None:
        from app.backends import create_backend

        self.prep = bundle.spec.preprocessing
        self.data = data
        self.decode_threads = settings.resolved_decode_threads()
        self.limits = DecodeLimits(max_pixels=40_000_000, draft=True)
        self.backend = create_backend(settings, bundle)
        service = f"service ({self.backend.name} on {self.backend.device})"
        alone: Runner = self.backend.run_alone
        self.runners: dict[str, tuple[Runner, int]] = {f"{service}, 1 inference thread": (alone, 1)}
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
            for size in (1, 4, 8, 16):
                run(np.zeros((size, 3, self.prep.crop_size, self.prep.crop_size), np.float32))

    def rate(self, arrangement: str, batch: int, seconds: float) -> Rate:
        run, workers = self.runners[arrangement]
        return pipeline_rate(run, self.data, self.prep, batch, self.decode_threads, workers, seconds)

    def sweep(self, seconds: float) -> InProcess:
        result = InProcess()
        result.decode_ms = median_ms(lambda: load_input(self.data, self.prep, self.limits), 50)
        for arrangement, (run, workers) in self.runners.items():
            if workers == 1:

                def one_image(run: Runner = run) -> object:
                    return run(load_input(self.data, self.prep, self.limits)[None])

                result.single_ms[arrangement] = median_ms(one_image, 60)
                print(f"  single image, {arrangement}: {result.single_ms[arrangement]:.2f} ms", flush=True)
            for size in (1, 4, 8, 16):
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
    big = test_jpeg((4000, 3000))
    with_draft = median_ms(lambda: load_input(big, prep, DecodeLimits(40_000_000, draft=True)), 15)
    without = median_ms(lambda: load_input(big, prep, DecodeLimits(40_000_000, draft=False)), 5)
    return with_draft, without


# The service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    startup_s: float
    log: Path


@contextlib.contextmanager
def serve(models_dir: Path, model: str, extra_env: dict[str, str], log_dir: Path, label: str) -> Iterator[Server]:
    port = free_port()
    env = dict(os.environ)  # IMGCLF_* settings in the environment apply to the service as to the in-process part
    env.update(IMGCLF_MODELS_DIR=str(models_dir), IMGCLF_DEFAULT_MODEL=model, IMGCLF_PORT=str(port))
    env.update(extra_env)
    log = log_dir / f"server-{label}.log"
    with log.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=sink, stderr=sink)
        try:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the server exited with {process.returncode}; see {log}")
                with contextlib.suppress(OSError):
                    if http_get(port, "/health/ready", timeout=1.0)[0] == 200:
                        break
                if time.perf_counter() - started > 120:
                    raise SystemExit(f"the server was not ready after 120 s; see {log}")
                time.sleep(0.005)
            yield Server(process, port, time.perf_counter() - started, log)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def first_requests_ms(port: int, data: bytes, count: int = 30) -> list[float]:
    """Sequential request latencies on one keep-alive connection, the very first request included."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("POST", "/v1/predict", body=data, headers={"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            response.read()
            times.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"the service answered {response.status} to the benchmark image")
    finally:
        connection.close()
    return times


_METRIC = re.compile(r"^(imgclf_[a-z_]+?)(?:\{[^}]*\})? ([0-9.e+-]+)$")


def batcher_metrics(port: int) -> dict[str, float]:
    """Sums and counts of the batcher's histograms, from ``/metrics``."""
    wanted = {
        "imgclf_batch_size_sum",
        "imgclf_batch_size_count",
        "imgclf_queue_wait_seconds_sum",
        "imgclf_queue_wait_seconds_count",
        "imgclf_inference_seconds_sum",
        "imgclf_inference_seconds_count",
        "imgclf_images_total",
    }
    values = dict.fromkeys(wanted, 0.0)
    for line in http_get(port, "/metrics")[1].decode().splitlines():
        match = _METRIC.match(line)
        if match and match.group(1) in wanted:
            values[match.group(1)] += float(match.group(2))
    return values


# Load generation


@dataclass
class Load:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk_load(port: int, image: Path, script: Path, clients: int, seconds: float) -> Load:
    command = [
        "wrk",
        f"-t{min(clients, 2)}",
        f"-c{clients}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/v1/predict",
    ]
    env = dict(os.environ, BENCH_IMAGE=str(image))
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH_JSON "))
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    return Load(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        non2xx=raw["non2xx"],
        socket_errors=raw["socket_errors"] + raw["timeouts"],
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
    )


async def _python_load(port: int, data: bytes, clients: int, seconds: float) -> Load:
    request = (
        f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    latencies: list[float] = []
    counts = {"non2xx": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                latencies.append(time.perf_counter() - started)
                counts["non2xx"] += not 200 <= status < 300
        except (OSError, asyncio.IncompleteReadError):
            counts["errors"] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    quantiles = np.percentile(np.asarray(latencies) * 1000, [50, 90, 99]) if latencies else [0.0] * 3
    return Load(len(latencies), elapsed, counts["non2xx"], counts["errors"], *map(float, quantiles))


def python_load(port: int, data: bytes, clients: int, seconds: float) -> Load:
    return asyncio.run(_python_load(port, data, clients, seconds))


@dataclass
class Point:
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


def wait_until_idle(port: int, timeout: float = 60.0) -> None:
    """Wait until the service has answered every request the load generator abandoned when it stopped (wrk does
    not wait for the requests in flight at the end of its run); they would otherwise eat into the next measurement.
    """
    deadline = time.perf_counter() + timeout
    previous = -1.0
    while time.perf_counter() < deadline:
        handled = batcher_metrics(port)["imgclf_images_total"]
        if handled == previous:
            return
        previous = handled
        time.sleep(0.5)


def measure_point(server: Server, batching: bool, clients: int, seconds: float, generate: Callable[..., Load]) -> Point:
    generate(server.port, clients, min(2.0, seconds))  # warm-up at this concurrency, not measured
    wait_until_idle(server.port)
    before, cpu_before, wall_before = batcher_metrics(server.port), cpu_seconds(server.process.pid), time.time()
    average = load_average()
    load = generate(server.port, clients, seconds)
    cpu = (cpu_seconds(server.process.pid) - cpu_before) / (time.time() - wall_before)
    after = batcher_metrics(server.port)
    wait_until_idle(server.port)  # before the next point (or in-process round) starts

    def delta(name: str) -> float:
        return after[name] - before[name]

    batches = delta("imgclf_batch_size_count") or 1.0
    waits = delta("imgclf_queue_wait_seconds_count") or 1.0
    point = Point(
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
        f"  batching {'on ' if batching else 'off'} c={clients:>2}: {load.rate:6.1f} img/s  p50 {load.p50_ms:6.1f} "
        f"p90 {load.p90_ms:6.1f} p99 {load.p99_ms:6.1f} ms  non-2xx {load.non2xx} errors {load.socket_errors}  "
        f"batch {point.mean_batch:4.1f}  server CPU {cpu:.2f}  load {average:.2f}",
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
    args: argparse.Namespace,
    generate: Callable[..., Load],
) -> list[Pair]:
    """Alternate the best in-process arrangement with the service at 16 clients, so that each HTTP number has an
    in-process number measured under the same background load beside it."""
    arrangement, batch, _ = in_process.limit
    pairs = []
    print(f"paired rounds: {arrangement}, batch {batch} vs HTTP at 16 clients", flush=True)
    for _ in range(args.pairs):
        reference = bench.rate(arrangement, batch, args.in_process_seconds)
        pairs.append(Pair(reference, measure_point(server, True, 16, args.seconds / 2, generate)))
        print(f"  in-process {reference.images_per_second:.1f} img/s: HTTP/in-process {pairs[-1].ratio:.0%}")
    return pairs


# Report


@dataclass
class Report:
    started: str
    machine: dict[str, str]
    settings: Settings
    model: str
    image_bytes: int
    client: str
    backend: str
    seconds: float
    in_process_seconds: float
    in_process: InProcess
    points: list[Point]
    pairs: list[Pair]
    startups_s: list[float]
    first_ms: list[float]
    large_jpeg: tuple[float, float]
    load_before: float
    load_after: float = 0.0


def _point_row(point: Point, limit: float) -> str:
    load = point.load
    return (
        f"| {'on' if point.batching else 'off'} | {point.clients} | {load.rate:.1f} | {load.rate / limit:.0%} | "
        f"{load.p50_ms:.1f} | {load.p90_ms:.1f} | {load.p99_ms:.1f} | {load.non2xx + load.socket_errors} | "
        f"{point.mean_batch:.1f} | {point.mean_queue_wait_ms:.1f} | {point.mean_inference_ms:.1f} | "
        f"{point.server_cpu:.2f} | {point.cpu_ms_per_image:.1f} | {point.load_average:.2f} |"
    )


def render(report: Report) -> str:
    options, batch, best = report.in_process.limit
    limit = best.images_per_second
    single_options, single_ms = report.in_process.best_single
    on = {p.clients: p for p in report.points if p.batching}
    c16 = on.get(16)
    c1 = on.get(1)
    worst = max(report.points, key=lambda p: p.clients)
    settings = report.settings
    overrides = ", ".join(f"`{k}={v}`" for k, v in sorted(os.environ.items()) if k.startswith("IMGCLF_"))
    versions_text = ", ".join(f"{k} {v}" for k, v in report.machine.items() if k not in ("cpu", "cores", "host"))
    lines = [
        SECTION,
        "",
        f"Measured by `make bench` (`scripts/bench_serving.py`) on {report.started}, everything below in one run.",
        "",
        f"- Machine: {report.machine['cpu']}, {report.machine['cores']} cores available to the process; load average "
        f"(1 min) {report.load_before:.2f} before the run and {report.load_after:.2f} after (other work shares "
        "this machine: compare numbers from the same run, as ratios).",
        f"- Software: {versions_text}.",
        f"- Model: `{report.model}` (EfficientNet-Lite0, ImageNet) on the service's backend: {report.backend}. "
        "Image: scikit-image "
        f"`chelsea` resized to 640x480, JPEG quality 90 ({report.image_bytes / 1024:.0f} KiB), posted to "
        "`/v1/predict` as a raw `image/jpeg` body.",
        f"- Service: `python -m app` with {overrides or 'default settings'}: {settings.workers} worker, "
        f"{settings.resolved_intra_op_threads()} intra-op threads, {settings.resolved_decode_threads()} decode "
        f"threads, max batch {settings.max_batch_size}, max wait {settings.max_batch_wait_ms:g} ms. Load: "
        f"{report.client}, closed loop, {report.seconds:g} s per point after a 2 s warm-up at the same concurrency.",
        "",
        "### In-process limit (no HTTP)",
        "",
        f"{settings.resolved_decode_threads()} threads decode and preprocess the JPEG while one or more inference "
        "threads run batches through the model: the service's own backend and session options, and a plain ONNX "
        "Runtime session with its default options (spinning thread pool) as the reference setup used.",
        "",
        "| arrangement | batch | img/s | CPU ms/img |",
        "|---|---:|---:|---:|",
        *(
            f"| {o} | {b} | {r.images_per_second:.1f} | {r.cpu_ms_per_image:.1f} |"
            for o, b, r in report.in_process.rows
        ),
        "",
        f"**In-process limit: {limit:.1f} img/s** ({options}, batch {batch}). Single image (decode + preprocess + "
        f"forward, batch 1): **{single_ms:.2f} ms** ({single_options}); decode + preprocess alone "
        f"{report.in_process.decode_ms:.2f} ms.",
        "",
        "### Over HTTP",
        "",
        "img/s = successful responses per second (one image each); % = of the in-process limit above; errors = "
        "non-2xx responses + socket errors; mean batch, queue wait and inference (per batch) come from the "
        "service's own Prometheus histograms over the measured interval; server CPU = cores busy on average, and "
        "CPU ms/img the server's CPU time per image (the efficiency figure that other work on the machine disturbs "
        "least).",
        "",
        "| batching | clients | img/s | % of limit | p50 ms | p90 ms | p99 ms | errors | mean batch | queue wait ms "
        "| inference ms | server CPU | CPU ms/img | load 1m |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_point_row(p, limit) for p in report.points),
        "",
    ]
    if report.pairs:
        lines += [
            "### Paired check at 16 clients",
            "",
            f"The background load on a shared machine drifts between the sections above, so the best in-process "
            f"arrangement ({options}, batch {batch}) and the service at 16 clients were also run alternately, "
            f"{report.in_process_seconds:g} s and {report.seconds / 2:g} s at a time:",
            "",
            "| round | in-process img/s | HTTP c=16 img/s | HTTP / in-process | in-process CPU ms/img "
            "| server CPU ms/img | load 1m |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {i} | {pair.in_process.images_per_second:.1f} | {pair.http.load.rate:.1f} | {pair.ratio:.0%} | "
                f"{pair.in_process.cpu_ms_per_image:.1f} | {pair.http.cpu_ms_per_image:.1f} | "
                f"{pair.http.load_average:.2f} |"
                for i, pair in enumerate(report.pairs, 1)
            ),
            "",
        ]
    lines += ["### Targets", ""]
    if c16 is not None:
        ratio = c16.load.rate / limit
        lines.append(
            f"- c=16 throughput: {c16.load.rate:.1f} img/s = **{ratio:.0%}** of the in-process limit "
            f"(target >= 90%): {'met' if ratio >= 0.9 else 'NOT met'}."
        )
    if report.pairs:
        paired = statistics.median(pair.ratio for pair in report.pairs)
        efficiency = statistics.median(
            pair.in_process.cpu_ms_per_image / pair.http.cpu_ms_per_image for pair in report.pairs
        )
        lines.append(
            f"- Paired rounds: HTTP at 16 clients = **{paired:.0%}** of the in-process rate measured beside it "
            f"(median of {len(report.pairs)}): {'met' if paired >= 0.9 else 'NOT met'}. CPU efficiency (in-process "
            f"CPU ms per image / the server's): {efficiency:.0%}."
        )
    if c1 is not None:
        gap = c1.load.p50_ms - single_ms
        lines.append(
            f"- Single request: c=1 p50 {c1.load.p50_ms:.2f} ms vs in-process {single_ms:.2f} ms: "
            f"**{gap:+.2f} ms** (target within 3 ms): {'met' if gap <= 3 else 'NOT met'}."
        )
    errors = worst.load.non2xx + worst.load.socket_errors
    lines += [
        f"- Errors at c={worst.clients}: {errors} "
        f"(non-2xx {worst.load.non2xx}, socket {worst.load.socket_errors}); errors over all points: "
        f"{sum(p.load.non2xx + p.load.socket_errors for p in report.points)}.",
        "- Batcher metrics under load (`imgclf_images_total` over each measured interval vs responses counted by the "
        "load generator; requests in flight at the end make them differ by up to the client count): "
        + ", ".join(
            f"{'on' if p.batching else 'off'} c={p.clients}: {p.images_counted:.0f}/{p.load.requests}"
            for p in report.points
        )
        + ".",
        f"- 4000x3000 JPEG, decode + preprocess: **{report.large_jpeg[0]:.1f} ms** with `draft` (DCT scaling), "
        f"{report.large_jpeg[1]:.1f} ms without.",
        f"- Start-up to ready (`python -m app` start to `/health/ready` 200, bundle already built), median of "
        f"{len(report.startups_s)} starts: **{statistics.median(report.startups_s):.2f} s** "
        f"({', '.join(f'{s:.2f}' for s in report.startups_s)}; target < 3 s).",
        f"- Warm-up: the first request after ready took {report.first_ms[0]:.1f} ms, the median of the next "
        f"{len(report.first_ms) - 1} {statistics.median(report.first_ms[1:]):.1f} ms (sequential, one connection).",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace (or add) the "## Serving" section of ``path``, leaving the other sections as they are."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text.rstrip("\n") + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per HTTP load point")
    parser.add_argument("--in-process-seconds", type=float, default=3.0, help="seconds per in-process point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-batching-off", action="store_true", help="skip the runs with batching off")
    parser.add_argument(
        "--pairs", type=int, default=3, help="alternating in-process / HTTP c=16 rounds for the noise-robust ratio"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="'-' prints instead")
    return parser.parse_args(argv)


@dataclass
class HttpResults:
    points: list[Point] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    startups_s: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=lambda: [0.0])


def measure_http(
    args: argparse.Namespace,
    models_dir: Path,
    data: bytes,
    work: Path,
    bench: InProcessBench,
    in_process: InProcess,
    generate: Callable[..., Load],
) -> HttpResults:
    """The service with batching on (and off), at each concurrency; the paired rounds with batching on."""
    results = HttpResults()
    for attempt in range(3):  # start-up alone, a few times: one start is at the mercy of the background load
        with serve(models_dir, args.model, {}, work, f"startup-{attempt}") as server:
            results.startups_s.append(server.startup_s)
            if attempt == 0:
                results.first_ms = first_requests_ms(server.port, data)
    print(f"start-up to ready: {', '.join(f'{s:.2f}' for s in results.startups_s)} s", flush=True)
    for batching in [True] if args.no_batching_off else [True, False]:
        env = {} if batching else {"IMGCLF_BATCHING": "false"}
        label = "batching-on" if batching else "batching-off"
        with serve(models_dir, args.model, env, work, label) as server:
            print(f"service ({label}): ready after {server.startup_s:.2f} s", flush=True)
            for clients in args.concurrency:
                results.points.append(measure_point(server, batching, clients, args.seconds, generate))
            if batching and args.pairs:
                results.pairs = measure_pairs(bench, in_process, server, args, generate)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    models_dir = args.models_dir.resolve()
    bundle = find_bundle(models_dir, args.model)
    settings = Settings(models_dir=models_dir)
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    if args.client == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk), or use --client python")
    data = test_jpeg((640, 480))
    machine = {"cpu": cpu_model(), "cores": str(available_cores()), **versions()}
    report_started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    print(f"imgclf serving benchmark: {machine['cpu']}, {machine['cores']} cores, load {load_before:.2f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
        work = Path(tmp)
        image = work / "chelsea-640x480.jpg"
        image.write_bytes(data)
        script = work / "post_image.lua"
        script.write_text(WRK_SCRIPT)

        def generate(port: int, clients: int, seconds: float) -> Load:
            if use_wrk:
                return wrk_load(port, image, script, clients, seconds)
            return python_load(port, data, clients, seconds)

        print("in-process:", flush=True)
        bench = InProcessBench(bundle, data, settings)
        backend_text = f"{bench.backend.name} on {bench.backend.device}"
        if bench.backend.name == "torch":
            backend_text += f" ({'fp16' if settings.fp16 and bench.backend.device.startswith('cuda') else 'fp32'})"
        in_process = bench.sweep(args.in_process_seconds)
        large = large_jpeg_ms(bundle.spec.preprocessing)
        print(f"  4000x3000 JPEG: {large[0]:.1f} ms with draft, {large[1]:.1f} ms without", flush=True)
        http = measure_http(args, models_dir, data, work, bench, in_process, generate)
        bench.close()

    report = Report(
        started=report_started,
        machine=machine,
        settings=settings,
        model=f"{bundle.name}` version `{bundle.version}",
        image_bytes=len(data),
        client=f"wrk {machine.get('wrk', '')} (Lua script)" if use_wrk else "asyncio Python client",
        backend=backend_text,
        seconds=args.seconds,
        in_process_seconds=args.in_process_seconds,
        in_process=in_process,
        points=http.points,
        pairs=http.pairs,
        startups_s=http.startups_s,
        first_ms=http.first_ms,
        large_jpeg=large,
        load_before=load_before,
        load_after=load_average(),
    )
    section = render(report)
    if str(args.output) == "-":
        print(section)
    else:
        write_section(args.output, section)
        print(f"wrote the {SECTION!r} section of {args.output}")
        print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
