"""The local engine: this process's decode pool, batcher and backend, sized from its cores as the service is, but
for throughput rather than a lone request's latency (``throughput_settings``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.batch.classifier import Classifier, RowSink
from app.batch.inputs import ImagePath
from app.batch.rows import RowOptions
from app.config import Settings
from app.engine.metrics import Metrics
from app.engine.model import load_model
from app.engine.process import settled
from modelspec import Bundle

BATCH_SIZE = 8
"""Images per inference batch unless the user sets one (``--batch-size``, ``IMGCLF_MAX_BATCH_SIZE``). On 2,000
photos of 640x480 here (2 cores), img/s at batches of 4, 8 and 16: fp32 Lite0 143, 145, 142; int8 212, 223, 217."""


def throughput_settings(settings: Settings) -> Settings:
    """The service's settings re-sized for a job that only counts images per second: no warm-up (the first chunk
    warms the sessions; the dummy batches cost 0.15 s of start-up), one intra-op thread per inference worker and one
    worker per core (no session with every thread for a lone request: there is none, and its threads synchronise
    inside every operator), and ``BATCH_SIZE``. Whatever the user set explicitly is kept."""
    chosen = settings.model_fields_set
    update: dict[str, object] = {"warmup": False}
    if not {"intra_op_threads", "inference_workers"} & chosen:
        update |= {"intra_op_threads": 1, "inference_workers": settings.cores_per_worker()}
    if "max_batch_size" not in chosen:
        update["max_batch_size"] = BATCH_SIZE
    return settings.model_copy(update=update)


class LocalEngine:
    name = "local"

    def __init__(self, settings: Settings, bundle: Bundle, options: RowOptions) -> None:
        metrics = Metrics()
        settings = throughput_settings(settings)
        self._classifier = Classifier(settings, load_model(bundle.path, settings, metrics), options, metrics)

    @property
    def description(self) -> str:
        model = self._classifier.model
        backend, precision = model.backend, model.precision
        return f"local engine, {backend.name} on {backend.device}, {precision.reason}"

    def run(self, images: Sequence[ImagePath], emit: RowSink) -> None:
        with settled():  # one OpenBLAS thread, start-up's objects frozen (app.engine.process)
            asyncio.run(self._classifier.run(images, emit))

    def close(self) -> None:
        self._classifier.close()
