"""Prometheus metrics, on a registry of the app's own (two apps in one process, as in tests, do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "imgclf_requests_total", "HTTP requests handled.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "imgclf_request_duration_seconds",
            "Time from request to response.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("imgclf_errors_total", "Error responses by error code.", ["code"], registry=r)
        self.images = Counter("imgclf_images_total", "Images run through a model.", ["model"], registry=r)
        self.batch_size = Histogram(
            "imgclf_batch_size", "Images per inference batch.", ["model"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "imgclf_queue_wait_seconds",
            "Time a request waited in the batch queue.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "imgclf_inference_seconds",
            "Time of one batch's forward pass.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decode = Histogram(
            "imgclf_decode_seconds", "Time to decode and preprocess one image.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.models_loaded = Gauge("imgclf_models_loaded", "Model versions loaded and serving.", registry=r)
        self.model_precision = Gauge(
            "imgclf_model_precision_info",
            "1 for each loaded model version, labelled with the precision its graph runs in (fp32 or int8).",
            ["model", "version", "precision"],
            registry=r,
        )
        self.load_failures = Counter(
            "imgclf_model_load_failures_total", "Bundles refused at load (corrupt, incomplete).", registry=r
        )

    def batch_observer(self, model: str) -> BatchRecorder:
        return BatchRecorder(self, model)


class BatchRecorder:
    """Records one model's batches; handed to its batcher."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._batch = metrics.batch_size.labels(model)
        self._wait = metrics.queue_wait.labels(model)
        self._inference = metrics.inference.labels(model)
        self._images = metrics.images.labels(model)

    def __call__(self, batch_size: int, queue_waits: list[float], inference_seconds: float) -> None:
        self._batch.observe(batch_size)
        self._inference.observe(inference_seconds)
        self._images.inc(batch_size)
        for wait in queue_waits:
            self._wait.observe(wait)
