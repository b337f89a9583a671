"""The local engine: this process's decode pool, batcher and backend, sized from its cores as the service is."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.batch.classifier import Classifier, RowSink
from app.batch.inputs import ImagePath
from app.batch.rows import RowOptions
from app.config import Settings
from app.engine.metrics import Metrics
from app.engine.model import load_model
from modelspec import Bundle


class LocalEngine:
    name = "local"

    def __init__(self, settings: Settings, bundle: Bundle, options: RowOptions) -> None:
        metrics = Metrics()
        self._classifier = Classifier(settings, load_model(bundle.path, settings, metrics), options, metrics)

    @property
    def description(self) -> str:
        model = self._classifier.model
        backend, precision = model.backend, model.precision
        return f"local engine, {backend.name} on {backend.device}, {precision.reason}"

    def run(self, images: Sequence[ImagePath], emit: RowSink) -> None:
        asyncio.run(self._classifier.run(images, emit))

    def close(self) -> None:
        self._classifier.close()
