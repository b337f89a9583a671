"""What the parts of the reliability suite share: the run's sizes, a scratch models folder, the service."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from modelspec import list_models
from scripts.bench import ROOT
from scripts.bench.load import Request
from scripts.bench.serving.service import Server, free_port, stop, wait_ready

QUIET = {"IMGCLF_ACCESS_LOG": "false"}  # one log line per request would cost the service more than some figures


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each part does; ``--quick`` shrinks them all for a check of the suite itself."""

    load_requests: int = 20_000
    load_clients: int = 64
    peak_clients: tuple[int, ...] = (16, 64)
    overload_clients: int = 512
    overload_seconds: float = 20.0
    overload_rounds: int = 3
    point_seconds: float = 10.0
    deadline: float = 2.0  # a client's patience: the answers that count for goodput
    slow_clients: int = 250
    drain_requests: int = 16
    reload_seconds: float = 20.0
    reload_versions: int = 3
    kills: int = 8
    fuzz_examples: int = 30
    fuzz_seconds: float = 90.0
    protocol_rounds: int = 8

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            load_requests=500,
            load_clients=16,
            peak_clients=(16,),
            overload_clients=128,
            overload_seconds=4.0,
            overload_rounds=1,
            point_seconds=3.0,
            slow_clients=20,
            drain_requests=4,
            reload_seconds=6.0,
            reload_versions=1,
            kills=2,
            fuzz_examples=3,
            fuzz_seconds=20.0,
            protocol_rounds=1,
        )


@dataclasses.dataclass(frozen=True)
class Context:
    source: Path  # the models folder the bundle comes from
    models_dir: Path  # a scratch copy: parts write new versions into it
    model: str
    image: bytes
    work: Path
    sizes: Sizes
    baseline: Path | None = None  # another source tree, for the protocol part's A/B

    def predict(self) -> Request:
        return Request("/v1/predict", self.image, "image/jpeg")

    def service(self, label: str, **env: str) -> contextlib.AbstractContextManager[Server]:
        """``python -m app`` on the scratch models folder, with ``IMGCLF_*`` overrides."""
        return self.serve_command([sys.executable, "-m", "app"], label, ROOT, **env)

    @contextlib.contextmanager
    def serve_command(self, command: Sequence[str], label: str, cwd: Path = ROOT, **env: str) -> Iterator[Server]:
        """The service started by ``command`` until the block ends (SIGINT then), its output in ``work``."""
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("IMGCLF_")}
        environ.update(QUIET, IMGCLF_MODELS_DIR=str(self.models_dir), IMGCLF_DEFAULT_MODEL=self.model)
        environ.update(env, IMGCLF_PORT=str(port))
        log = self.work / f"server-{label}.log"
        with log.open("wb") as sink:
            started = time.perf_counter()
            process = subprocess.Popen(list(command), cwd=cwd, env=environ, stdout=sink, stderr=sink)
            try:
                wait_ready(process, port, log)
                yield Server(process, port, time.perf_counter() - started, log)
            finally:
                stop(process, grace=30)

    def fresh_models(self) -> None:
        """Reset the scratch folder to the source bundle's newest version alone."""
        shutil.rmtree(self.models_dir, ignore_errors=True)
        version = max(list_models(self.source)[self.model])
        shutil.copytree(self.source / self.model / str(version), self.models_dir / self.model / str(version))


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def metric_sum(server: Server, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric over the series whose labels include ``labels``."""
    total = 0.0
    for line in server.get("/metrics")[1].decode().splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            head, value = line.rsplit(" ", 1)
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


def connect(port: int, timeout: float = 30.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)
