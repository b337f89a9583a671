"""The model registry: which bundles are loaded, which version of each is the default, and hot reload.

``refresh()`` scans the models folder. For each model it keeps the newest ``versions_loaded`` versions that load:
a new version is read, its hashes verified, its backend created and warmed up, and only then swapped in; a broken
or half-copied version is refused, logged and reported, and the versions already loaded keep serving. Readers
never lock: they read an immutable snapshot that ``refresh`` replaces in one assignment, so requests in flight
keep the model they started with. Unloaded versions' batchers finish their queued requests before they stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

import numpy as np

from app.backends import Backend, Batch, Outputs, create_backend
from app.batching import Batcher
from app.config import Settings
from app.metrics import Metrics
from modelspec import Bundle, BundleError, ModelSpec, list_models, read_bundle

logger = logging.getLogger(__name__)

PREFERRED_DEFAULT = "efficientnet-lite0"

BackendFactory = Callable[[Settings, Bundle], Backend]
Signature = tuple[tuple[str, int, int], ...]


class ModelLookupError(LookupError):
    """The model a request asks for cannot be served; ``code`` is stable, the message lists what can."""

    code: ClassVar[str] = "model_not_found"


class ModelNotFoundError(ModelLookupError):
    code = "model_not_found"


class VersionNotFoundError(ModelLookupError):
    code = "version_not_found"


class NotReadyError(ModelLookupError):
    """No model is named and the default one is not loaded (yet)."""

    code = "not_ready"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def folder_signature(path: Path) -> Signature:
    """Names, sizes and modification times of a bundle folder's files: changes when a copy progresses."""
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()))
    except OSError:
        return ()


@dataclass(frozen=True)
class LoadedModel:
    bundle: Bundle
    backend: Backend
    batcher: Batcher
    loaded_at: str = field(default_factory=_now)

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> int:
        return self.bundle.version

    @property
    def spec(self) -> ModelSpec:
        return self.bundle.spec

    def close(self) -> None:
        self.batcher.close()
        self.backend.close()


@dataclass(frozen=True)
class LoadFailure:
    version: int
    error: str
    at: str
    signature: Signature


@dataclass(frozen=True)
class RefreshReport:
    loaded: list[tuple[str, int]] = field(default_factory=list)
    unloaded: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int, str]] = field(default_factory=list)


Snapshot = Mapping[str, Mapping[int, LoadedModel]]


class ModelRegistry:
    def __init__(self, settings: Settings, metrics: Metrics, backend_factory: BackendFactory | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._backend_factory = backend_factory or create_backend
        self._models: Snapshot = MappingProxyType({})
        self._failures: dict[str, dict[int, LoadFailure]] = {}
        self._refresh_lock = threading.Lock()

    # Reading (event loop, lock-free)

    @property
    def snapshot(self) -> Snapshot:
        return self._models

    @property
    def ready(self) -> bool:
        return self.default_name() is not None

    def default_name(self) -> str | None:
        """The configured default model if loaded; unconfigured: the only model, the ImageNet default, or the first."""
        models = self._models
        configured = self._settings.default_model
        if configured:
            return configured if configured in models else None
        if not models:
            return None
        if len(models) == 1:
            return next(iter(models))
        return PREFERRED_DEFAULT if PREFERRED_DEFAULT in models else min(models)

    def get(self, name: str | None, version: int | None = None) -> LoadedModel:
        """The model to serve; a ``ModelLookupError`` that says what exists when it cannot be found."""
        models = self._models
        if name is None:
            name = self.default_name()
            if name is None:
                configured = self._settings.default_model
                detail = f"the default model {configured!r} is not loaded" if configured else "no model is loaded"
                raise NotReadyError(f"{detail}; loaded: {sorted(models) or 'none'}; see /v1/models")
        versions = models.get(name)
        if not versions:
            raise ModelNotFoundError(f"no model named {name!r}; available: {sorted(models) or 'none'}")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise VersionNotFoundError(f"{name} version {version} is not loaded; loaded versions: {sorted(versions)}")
        return versions[version]

    def failures(self, name: str) -> list[LoadFailure]:
        return sorted(self._failures.get(name, {}).values(), key=lambda f: f.version)

    def available_versions(self, name: str) -> list[int]:
        return list_models(self._settings.models_dir).get(name, [])

    # Loading (a background thread; one refresh at a time)

    def refresh(self) -> RefreshReport:
        """Bring the loaded set in line with the models folder; never raises for a bad bundle."""
        with self._refresh_lock:
            report = RefreshReport()
            on_disk = list_models(self._settings.models_dir)
            current = self._models
            updated: dict[str, dict[int, LoadedModel]] = {}
            for name, versions in on_disk.items():
                kept = self._refresh_model(name, versions, dict(current.get(name, {})), report)
                if kept:
                    updated[name] = kept
            retired = [
                model
                for name, versions in current.items()
                for version, model in versions.items()
                if updated.get(name, {}).get(version) is not model
            ]
            self._failures = {n: f for n, f in self._failures.items() if n in on_disk}
            self._models = MappingProxyType({n: MappingProxyType(v) for n, v in sorted(updated.items())})
            self._metrics.models_loaded.set(sum(len(v) for v in updated.values()))
            for model in retired:
                report.unloaded.append((model.name, model.version))
                logger.info("unloading %s version %d", model.name, model.version)
                threading.Thread(target=model.close, name=f"unload-{model.name}", daemon=True).start()
            return report

    def _refresh_model(
        self, name: str, versions: list[int], loaded: dict[int, LoadedModel], report: RefreshReport
    ) -> dict[int, LoadedModel]:
        """The newest ``versions_loaded`` versions of ``name`` that load, newest first."""
        keep: dict[int, LoadedModel] = {}
        failures = self._failures.setdefault(name, {})
        for version in sorted(versions, reverse=True):
            if len(keep) == self._settings.versions_loaded:
                break
            if version in loaded:
                keep[version] = loaded[version]
                continue
            path = self._settings.models_dir / name / str(version)
            signature = folder_signature(path)
            previous = failures.get(version)
            if previous is not None and previous.signature == signature:
                continue  # unchanged since it failed; a copy in progress changes the signature
            try:
                keep[version] = self._load(path)
            except Exception as exc:
                message = str(exc) if isinstance(exc, BundleError) else f"{type(exc).__name__}: {exc}"
                failures[version] = LoadFailure(version, message, _now(), signature)
                report.failed.append((name, version, message))
                self._metrics.load_failures.inc()
                logger.error("refused %s version %d: %s", name, version, message)
                continue
            failures.pop(version, None)
            report.loaded.append((name, version))
        for version in list(failures):
            if version not in versions:
                del failures[version]
        return keep

    def _load(self, path: Path) -> LoadedModel:
        started = time.perf_counter()
        bundle = read_bundle(path)
        backend = self._backend_factory(self._settings, bundle)
        try:
            self._check_and_warm_up(bundle, backend)
            batcher = Batcher(
                backend.run,
                max_batch_size=self._settings.max_batch_size,
                max_wait=self._settings.max_batch_wait_ms / 1000.0,
                combine=self._settings.batching,
                observer=self._metrics.batch_observer(bundle.name),
                name=f"{bundle.name}-{bundle.version}",
                workers=self._settings.resolved_inference_workers(backend.name),
                run_alone=backend.run_alone,
            )
        except BaseException:
            backend.close()
            raise
        logger.info(
            "loaded %s version %d (%s on %s, %d classes) in %.2f s",
            bundle.name,
            bundle.version,
            backend.name,
            backend.device,
            bundle.spec.num_classes,
            time.perf_counter() - started,
        )
        return LoadedModel(bundle=bundle, backend=backend, batcher=batcher)

    def _check_and_warm_up(self, bundle: Bundle, backend: Backend) -> None:
        """Check the network's output shapes; with warm-up on, also run the batch sizes the batcher will use
        most, so that the first real request pays no allocation cost."""
        crop = bundle.spec.preprocessing.crop_size
        sizes = {1}
        if self._settings.warmup:
            sizes |= {min(4, self._settings.max_batch_size), self._settings.max_batch_size}
            if backend.device.startswith("cuda"):
                # cuDNN picks its kernels per input shape, and CUDA loads them lazily: cheap to do all up front.
                sizes |= set(range(1, self._settings.max_batch_size + 1))
        runs: list[tuple[Callable[[Batch], Outputs], set[int]]] = [(backend.run, sizes)]
        run_alone = backend.run_alone
        if self._settings.warmup and run_alone != backend.run:
            # A second session (ONNX Runtime: every thread for a batch alone). The sessions share one memory
            # arena, so one of them growing it to the largest batch is enough.
            runs = [(run_alone, sizes), (backend.run, {1})]
        for run, run_sizes in runs:
            for size in sorted(run_sizes):
                logits, embeddings = run(np.zeros((size, 3, crop, crop), dtype=np.float32))
                if logits.shape != (size, bundle.spec.num_classes) or embeddings.shape != (
                    size,
                    bundle.spec.embedding_size,
                ):
                    raise BundleError(
                        f"{bundle.path}: the network returns logits {logits.shape} and embeddings "
                        f"{embeddings.shape}, but model.json promises {bundle.spec.num_classes} classes and "
                        f"{bundle.spec.embedding_size}-d embeddings"
                    )

    def close(self) -> None:
        with self._refresh_lock:
            models, self._models = self._models, MappingProxyType({})
        for versions in models.values():
            for model in versions.values():
                model.close()
