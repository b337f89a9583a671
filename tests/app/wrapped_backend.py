"""A real backend wrapped by a test that holds, slows or records its batches, and the patch that makes every model
the app loads use such a wrapper."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

import app.engine.model
from app.config import Settings
from app.engine.backends import Backend, Batch, Outputs
from modelspec import Bundle


class WrappedBackend:
    """Runs everything on ``inner``; subclasses override ``run`` (every batch goes through it, ``run_alone`` too)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.device = inner.device
        self.precision = inner.precision

    def run(self, batch: Batch) -> Outputs:
        return self.inner.run(batch)

    @property
    def run_alone(self) -> Callable[[Batch], Outputs]:
        return self.run

    def warm_up(self, image_shape: tuple[int, int, int], max_batch_size: int) -> None:
        self.inner.warm_up(image_shape, max_batch_size)

    def close(self) -> None:
        self.inner.close()


W = TypeVar("W", bound=WrappedBackend)


def wrap_every_backend(monkeypatch: pytest.MonkeyPatch, wrap: Callable[[Backend], W]) -> list[W]:
    """From now on, every backend the app creates is ``wrap(real backend)``; the list collects them."""
    created: list[W] = []
    real_factory = app.engine.model.create_backend

    def factory(settings: Settings, bundle: Bundle) -> Backend:
        created.append(wrap(real_factory(settings, bundle)))
        return created[-1]

    monkeypatch.setattr(app.engine.model, "create_backend", factory)
    return created


class GatedBackend(WrappedBackend):
    """Wraps a real backend; once ``hold`` is set, its next batch waits until ``hold()`` is true, so requests pile
    up in the batcher's queue behind it (or other batches start beside it). Records the size of every batch and
    the most batches that ever ran at once."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.hold: Callable[[], bool] | None = None
        self.sizes: list[int] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def run(self, batch: Batch) -> Outputs:
        with self._lock:
            hold, self.hold = self.hold, None
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if hold is not None:
                deadline = time.monotonic() + 10  # a safety net for a stuck test, not a timing assertion
                while not hold() and time.monotonic() < deadline:
                    time.sleep(0.002)
            self.sizes.append(len(batch))
            return self.inner.run(batch)
        finally:
            with self._lock:
                self.running -= 1
