"""Prometheus metrics, on a registry of the app's own (two apps in one process, as in tests, do not collide)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_PROBABILITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
_OOD_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
"""OOD scores have the scale of the bundle's method (Mahalanobis: squared distances in a few hundred dimensions);
the flag threshold of each bundle is in ``GET /v1/models/{name}`` (trust.ood.threshold)."""


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
        self.top1_probability = Histogram(
            "imgclf_top1_probability",
            "Top-1 probability of each image answered (calibrated where the model is).",
            ["model", "version"],
            buckets=_PROBABILITY_BUCKETS,
            registry=r,
        )
        self.ood_score = Histogram(
            "imgclf_ood_score",
            "Out-of-distribution score of each image answered (models with an OOD reference only).",
            ["model", "version"],
            buckets=_OOD_BUCKETS,
            registry=r,
        )
        self.ood_flagged = Counter(
            "imgclf_ood_flagged_images_total",
            "Images answered with out_of_distribution true.",
            ["model", "version"],
            registry=r,
        )
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

    def trust_observer(self, model: str, version: int) -> TrustRecorder:
        return TrustRecorder(self, model, version)


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


class TrustRecorder:
    """Records what one model version answered (top-1 probability, OOD score, flags): the series drift alerts
    watch (deploy/prometheus)."""

    def __init__(self, metrics: Metrics, model: str, version: int) -> None:
        self._top1 = metrics.top1_probability.labels(model, str(version))
        self._ood = metrics.ood_score.labels(model, str(version))
        self._flagged = metrics.ood_flagged.labels(model, str(version))

    def __call__(
        self,
        top1: npt.NDArray[np.floating],
        ood_score: npt.NDArray[np.floating] | None,
        flagged: npt.NDArray[np.bool_] | None,
    ) -> None:
        for value in top1.tolist():
            self._top1.observe(value)
        if ood_score is not None:
            for value in ood_score.tolist():
                self._ood.observe(value)
        if flagged is not None:
            self._flagged.inc(int(flagged.sum()))
