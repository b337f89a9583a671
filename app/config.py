"""Service settings: one pydantic-settings class, read from ``IMGCLF_*`` environment variables."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modelspec.runtime import Spinning


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this container in cores (``docker --cpus``, a Kubernetes CPU limit), or None if unlimited.

    A quota does not show in the affinity mask: a container limited to 2 CPUs on a 64-core host still sees 64.
    """
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return int(quota) / int(period) if quota != "max" else None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """CPU cores this process may use: the affinity mask (taskset, cpusets), capped by a container's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


class Settings(BaseSettings):
    """Every knob of the service. The README's configuration table is generated from these descriptions."""

    model_config = SettingsConfigDict(env_prefix="IMGCLF_", env_file=None, extra="ignore")

    # Where models come from
    models_dir: Path = Field(default=Path("models"), description="Folder of bundles: <name>/<version>/.")
    default_model: str | None = Field(
        default="efficientnet-lite0",
        description=(
            "Model served by /v1/predict and /v1/features. Empty: the only model, else efficientnet-lite0, "
            "else the first by name."
        ),
    )
    versions_loaded: int = Field(default=2, ge=1, description="Newest versions of each model kept loaded.")
    watch_interval: float = Field(
        default=2.0, ge=0, description="Seconds between scans of the models folder for new versions; 0 = off."
    )
    api_key: SecretStr | None = Field(
        default=None, description="Key for admin endpoints (X-API-Key header); admin endpoints are off when unset."
    )

    # Inference
    backend: Literal["auto", "onnx", "torch"] = Field(
        default="auto", description="auto: PyTorch on CUDA when available, else ONNX Runtime."
    )
    precision: Literal["auto", "fp32", "int8"] = Field(
        default="auto",
        description="ONNX Runtime graph served. auto: the bundle's int8 graph (model.int8.onnx) when it is within its "
        "recorded accuracy bound and a short measurement at load shows it faster than fp32 on this machine, else "
        "fp32; int8: int8 whenever the bundle has a usable one (else fp32, with a warning and the reason in the "
        "model's metadata); fp32: always fp32. The torch backend serves fp32.",
    )
    speed_memory_days: float = Field(
        default=30.0,
        ge=0,
        description="Days IMGCLF_PRECISION=auto's load-time timing of int8 against fp32 is remembered on this machine "
        "(per bundle, thread settings, CPU and ONNX Runtime version, under $IMGCLF_CACHE_DIR/speeds, default "
        "~/.cache/imgclf), so a restart or a batch job skips it; 0: measure at every load.",
    )
    device: str = Field(default="cuda", description="Torch device used by the torch backend when CUDA exists.")
    fp16: bool = Field(
        default=False,
        description="Half precision for the torch backend on CUDA. It keeps the top-5 and runs a batch ~1.6x faster "
        "on an H100, but cuDNN then compiles kernels for each new batch size (~2 s each, measured), which makes "
        "start-up and the first request of each size slow.",
    )
    intra_op_threads: int = Field(default=0, ge=0, description="Inference threads; 0 = one per available core.")
    intra_op_spinning: bool = Field(
        default=False,
        description="Let idle ONNX Runtime threads keep spin-waiting for work after a batch ends (they always spin "
        "between the operators of a batch, which makes a lone request about 1 ms faster): under load the spinning "
        "would take CPU the decode threads need.",
    )
    inference_workers: int = Field(
        default=0,
        ge=0,
        description="Batches of one model that may run at the same time; 0 = one per intra-op thread on ONNX "
        "Runtime (under load each batch then runs on its own thread; a batch alone still gets them all), 1 on torch.",
    )
    decode_threads: int = Field(default=0, ge=0, description="Image decoding threads; 0 = one per available core.")
    max_batch_size: int = Field(default=16, ge=1, description="Largest batch the batcher forms.")
    max_batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="Extra time the batcher waits for a batch to fill; 0 = take what is queued and go.",
    )
    batching: bool = Field(default=True, description="Combine concurrent requests into batches.")
    warmup: bool = Field(default=True, description="Run a dummy batch at load so the first request is fast.")
    draft_decode: bool = Field(
        default=True, description="Decode JPEGs at reduced scale (DCT scaling, any M/8) before resizing."
    )

    # Request limits
    max_body_bytes: int = Field(default=20 * 1024 * 1024, gt=0, description="Largest request body.")
    max_images_per_request: int = Field(default=32, ge=1, description="Most images in one request.")
    max_image_pixels: int = Field(default=40_000_000, gt=0, description="Most pixels (width x height) per image.")
    max_top_k: int = Field(default=100, ge=1, description="Largest top_k a client may ask for.")

    # Server
    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0 in a container).")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on.")
    workers: int = Field(
        default=1, ge=1, description="Server processes, each with its own models; threads are split between them."
    )
    access_log: bool = Field(default=True, description="Log one line per request.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # The web page and explanations (app/static, app/engine/explain.py, app/api/explain_overlay.py)
    ui: bool = Field(default=True, description="Serve the web page at / (try a model, see its card); false: 404.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (comma-separated, e.g. https://a.example,https://b.example) whose pages may call the "
        "API from a browser (CORS); empty: none.",
    )
    explain_concurrency: int = Field(
        default=1,
        ge=1,
        description="Explanations that may run at once; one more is answered 429 (retry later), so explanations "
        "cannot starve predictions.",
    )
    explain_max_positions: int = Field(
        default=1024, ge=1, description="Most occlusion positions (forward passes) one explanation may ask for."
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    # Reliability: what a reverse proxy would enforce, and load shedding (README "Reliability")
    max_header_line_bytes: int = Field(
        default=16 * 1024,
        ge=256,
        description="Longest request line or header line (name + value); 414 / 431 above it.",
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Most bytes of request line and headers together; 431 above it."
    )
    max_headers: int = Field(default=100, ge=1, description="Most header lines in a request; 431 above it.")
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client has to send the request line and headers, counted from its first byte (or "
        "from connecting); 408 and the connection closed after it.",
    )
    body_timeout: float = Field(
        default=20.0,
        gt=0,
        description="Seconds the body may stall between two reads; 408 and the connection closed after it.",
    )
    max_queue: int = Field(
        default=512,
        ge=0,
        description="Requests that may wait for a model (beyond those it is serving); 503 overloaded above it.",
    )
    queue_timeout: float = Field(
        default=2.0,
        ge=0,
        description="Seconds a request may wait for its model before it is refused with 503 overloaded and "
        "Retry-After; under overload the requests let in are answered within about this long.",
    )
    reload_settle_seconds: float = Field(
        default=5.0,
        ge=0,
        description="A new version that does not load while its files changed less than this long ago is still "
        "being copied: it is retried, not reported as failed.",
    )

    def cores_per_worker(self) -> int:
        return max(1, available_cores() // self.workers)

    def resolved_intra_op_threads(self) -> int:
        return self.intra_op_threads or self.cores_per_worker()

    def spinning(self) -> Spinning:
        """How ONNX Runtime's idle intra-op threads wait (``modelspec.runtime.Spinning``)."""
        return "always" if self.intra_op_spinning else "within-run"

    def resolved_decode_threads(self) -> int:
        return self.decode_threads or self.cores_per_worker()

    def resolved_inference_workers(self, backend: str) -> int:
        if self.inference_workers:
            return self.inference_workers
        return self.resolved_intra_op_threads() if backend == "onnx" else 1

    def admission_slots(self, backend: str) -> tuple[int, int]:
        """The fewest and most requests a model serves at once (``app.engine.admission`` adapts between them): one for
        each decode thread and inference worker; enough for full batches on every worker too."""
        decode, workers = self.resolved_decode_threads(), self.resolved_inference_workers(backend)
        return decode + workers, decode + self.max_batch_size * workers
