"""Model assembly: a bundle folder -> a model ready to serve (bundle, backend and batcher), checked and warm.

The registry decides which versions to load and swaps them in; this module knows how to build one. A bundle whose
network does not return what its ``model.json`` promises is refused here, before anything can serve it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.config import Settings
from app.engine.admission import Admission
from app.engine.backends import Backend, create_backend
from app.engine.batching import Batcher
from app.engine.metrics import Metrics, TrustRecorder
from app.engine.precision import PrecisionChoice
from app.engine.trust import scorer_for
from modelspec import Bundle, BundleError, ModelSpec, read_bundle
from modelspec.trust import TrustScorer

logger = logging.getLogger(__name__)

BackendFactory = Callable[[Settings, Bundle], Backend]


def now() -> str:
    """The current time as the service reports it (UTC, ISO 8601, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LoadedModel:
    bundle: Bundle
    backend: Backend
    batcher: Batcher
    scorer: TrustScorer = field(default_factory=lambda: TrustScorer(None))
    """Calibration, prediction sets and OOD score (``app.engine.trust``): plain softmax for a bundle without."""
    trust_recorder: TrustRecorder | None = None
    loaded_at: str = field(default_factory=now)
    admission: Admission = field(default_factory=lambda: Admission(max_slots=1 << 30, max_waiting=0, timeout=0))

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> int:
        return self.bundle.version

    @property
    def spec(self) -> ModelSpec:
        return self.bundle.spec

    @property
    def precision(self) -> PrecisionChoice:
        """The graph served (fp32 or int8) and why: what the metadata reports and the trust scorer must match."""
        return self.backend.precision

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One preprocessed image, CHW: what the network takes per batch row."""
        return input_shape(self.bundle)

    def close(self) -> None:
        """Finish the queued requests, then release the backend."""
        self.batcher.close()
        self.backend.close()


def input_shape(bundle: Bundle) -> tuple[int, int, int]:
    crop = bundle.spec.preprocessing.crop_size
    return 3, crop, crop


def load_model(
    path: Path, settings: Settings, metrics: Metrics, backend_factory: BackendFactory | None = None
) -> LoadedModel:
    """Read and verify the bundle, create its backend, check its outputs against ``model.json``, warm it up (when
    the settings say so) and start its batcher. Raises ``BundleError`` (or the backend's error) for a bundle that
    cannot serve; nothing is left running then."""
    started = time.perf_counter()
    bundle = read_bundle(path)
    backend = (backend_factory or create_backend)(settings, bundle)
    try:
        scorer = scorer_for(bundle, backend.precision.precision)  # the statistics of the precision served
        check_outputs(bundle, backend)
        if settings.warmup:
            backend.warm_up(input_shape(bundle), settings.max_batch_size)
        batcher = Batcher(
            backend,
            max_batch_size=settings.max_batch_size,
            max_wait=settings.max_batch_wait_ms / 1000.0,
            combine=settings.batching,
            observer=metrics.batch_observer(bundle.name),
            name=f"{bundle.name}-{bundle.version}",
            workers=settings.resolved_inference_workers(backend.name),
        )
    except BaseException:
        backend.close()
        raise
    min_slots, max_slots = settings.admission_slots(backend.name)
    admission = Admission(
        max_slots,
        settings.max_queue,
        settings.queue_timeout,
        min_slots=min_slots,
        name=f"{bundle.name} version {bundle.version}",
    )
    logger.info(
        "loaded %s version %d (%s %s on %s, %d classes) in %.2f s",
        bundle.name,
        bundle.version,
        backend.name,
        backend.precision.precision,
        backend.device,
        bundle.spec.num_classes,
        time.perf_counter() - started,
    )
    return LoadedModel(
        bundle=bundle,
        backend=backend,
        batcher=batcher,
        scorer=scorer,
        trust_recorder=metrics.trust_observer(bundle.name, bundle.version),
        admission=admission,
    )


def check_outputs(bundle: Bundle, backend: Backend) -> None:
    """Run one image of zeros and refuse the bundle unless the logits and embedding have the promised sizes."""
    spec = bundle.spec
    logits, embeddings = backend.run(np.zeros((1, *input_shape(bundle)), dtype=np.float32))
    if logits.shape != (1, spec.num_classes) or embeddings.shape != (1, spec.embedding_size):
        raise BundleError(
            f"{bundle.path}: the network returns logits {logits.shape} and embeddings {embeddings.shape}, but "
            f"model.json promises {spec.num_classes} classes and {spec.embedding_size}-d embeddings"
        )
