"""One round: the in-process limit (``scripts.bench.serving.inprocess``, the arrangement ``make bench`` finds best)
right before and after the batch command, run as a user runs it: ``python -m app.batch`` in a subprocess; then the
service (``python -m app``, started once for the run) at 16 clients sending the same photos in turn."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.bench import ROOT
from scripts.bench.load import LoadGenerator, Request
from scripts.bench.machine import load_average
from scripts.bench.serving.inprocess import InProcessBench, Rate
from scripts.bench.serving.service import Server

SERVICE_CLIENTS = 16
SERVICE_WARM_UP_S = 2.0

SUMMARY = re.compile(r"^([\d,]+) images in ([\d.]+) s: ([\d,.]+) img/s", re.MULTILINE)


@dataclass(frozen=True)
class BatchRun:
    images: int
    seconds: float  # the command's own: model loaded, first image to last row on disk
    images_per_second: float
    wall_seconds: float  # the whole subprocess, start-up included
    cpu_ms_per_image: float  # the subprocess's CPU time (start-up included) per image
    summary: str

    @property
    def whole_command_rate(self) -> float:
        """Images per second of the whole command, start-up included: what a user waits for."""
        return self.images / self.wall_seconds


@dataclass(frozen=True)
class ServiceRun:
    """The service at ``SERVICE_CLIENTS`` clients over the same photos."""

    images_per_second: float
    cpu_ms_per_image: float  # the server process's CPU time per answered image
    non2xx: int


@dataclass(frozen=True)
class Round:
    before: Rate
    batch: BatchRun
    after: Rate
    service: ServiceRun
    load: float

    @property
    def limit(self) -> float:
        """The in-process rate around the batch run: the mean of the measurements just before and just after."""
        return (self.before.images_per_second + self.after.images_per_second) / 2

    @property
    def ratio(self) -> float:
        return self.batch.images_per_second / self.limit

    @property
    def versus_service(self) -> float:
        """The whole batch command's rate over the service's at 16 clients."""
        return self.batch.whole_command_rate / self.service.images_per_second

    @property
    def limit_cpu_ms(self) -> float:
        return (self.before.cpu_ms_per_image + self.after.cpu_ms_per_image) / 2


def parse_summary(text: str) -> tuple[int, float, float]:
    """``(images, seconds, img/s)`` from the summary the command prints."""
    match = SUMMARY.search(text)
    if match is None:
        raise ValueError(f"no summary line in the batch command's output:\n{text}")
    images, seconds, rate = match.groups()
    return int(images.replace(",", "")), float(seconds), float(rate.replace(",", ""))


def run_batch(command: list[str], env: dict[str, str]) -> BatchRun:
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"the batch command failed ({done.returncode}):\n{done.stderr}")
    images, seconds, rate = parse_summary(done.stdout)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return BatchRun(images, seconds, rate, wall, cpu * 1000 / max(1, images), done.stdout.strip())


def batch_command(folder: Path, output: Path, models_dir: Path, model: str) -> list[str]:
    return [
        sys.executable, "-m", "app.batch", str(folder), "--output", str(output), "--overwrite", "--quiet",
        "--models-dir", str(models_dir), "--model", model,
    ]  # fmt: skip


def service_rate(server: Server, request: Request, generate: LoadGenerator, seconds: float) -> ServiceRun:
    """The service's throughput and CPU per image at ``SERVICE_CLIENTS`` clients, after a short warm-up."""
    generate(server.port, request, SERVICE_CLIENTS, SERVICE_WARM_UP_S)
    server.wait_until_idle()
    cpu_before = server.cpu_seconds()
    load = generate(server.port, request, SERVICE_CLIENTS, seconds)
    cpu = server.cpu_seconds() - cpu_before
    server.wait_until_idle()  # wrk leaves requests in flight: they must not run into the next measurement
    return ServiceRun(load.rate, cpu * 1000 / max(1, load.requests), load.non2xx + load.socket_errors)


@dataclass(frozen=True)
class Service:
    """The running service, the request that sends the photos in turn, and the load generator."""

    server: Server
    request: Request
    generate: LoadGenerator
    seconds: float


def measure_round(
    bench: InProcessBench,
    arrangement: str,
    batch: int,
    seconds: float,
    command: list[str],
    env: dict[str, str],
    service: Service,
) -> Round:
    before = bench.rate(arrangement, batch, seconds)
    print(f"  in-process: {before.images_per_second:.1f} img/s (load {load_average():.2f})", flush=True)
    run = run_batch(command, env)
    print(
        f"  batch command: {run.images_per_second:.1f} img/s, {run.wall_seconds:.1f} s wall, "
        f"{run.cpu_ms_per_image:.2f} CPU ms/img (load {load_average():.2f})",
        flush=True,
    )
    after = bench.rate(arrangement, batch, seconds)
    print(f"  in-process: {after.images_per_second:.1f} img/s (load {load_average():.2f})", flush=True)
    served = service_rate(service.server, service.request, service.generate, service.seconds)
    print(
        f"  service at {SERVICE_CLIENTS} clients: {served.images_per_second:.1f} img/s, "
        f"{served.cpu_ms_per_image:.2f} CPU ms/img (load {load_average():.2f}); whole batch command "
        f"{run.whole_command_rate:.1f} img/s = {run.whole_command_rate / served.images_per_second:.2f}x",
        flush=True,
    )
    return Round(before, run, after, served, load_average())
