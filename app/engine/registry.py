"""The model registry: which bundles are loaded, which version of each is the default, and hot reload.

``refresh()`` scans the models folder. For each model it keeps the newest ``versions_loaded`` versions that load:
a new version is assembled by ``app.engine.model.load_model`` (hashes verified, backend created, checked and warmed up)
and only then swapped in; the versions already loaded keep serving meanwhile. A version that does not load while its
files changed less than ``reload_settle_seconds`` ago is being copied (``cp -r`` into the models folder): it is
"waiting for files", reported and retried, not a failure. Once its files have settled, a version that still does
not load is refused, logged and reported. Readers never lock: they read an immutable snapshot that ``refresh``
replaces in one assignment, so requests in flight keep the model they started with. Unloaded versions' batchers
finish their queued requests before they stop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

from app.config import Settings
from app.engine.metrics import Metrics
from app.engine.model import BackendFactory, LoadedModel, load_model, now
from app.engine.suggest import did_you_mean
from modelspec import BundleError, list_models, versions_to_open

logger = logging.getLogger(__name__)

PREFERRED_DEFAULT = "efficientnet-lite0"

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


def folder_signature(path: Path) -> Signature:
    """Names, sizes and modification times of a bundle folder's files: changes when a copy progresses."""
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()))
    except OSError:
        return ()


def choose_default(names: Collection[str], configured: str | None) -> str | None:
    """The default model among ``names``: the configured one if present; unconfigured: the only model, the
    ImageNet default, or the first by name. The service applies it to the loaded models, the batch command to the
    models folder."""
    if configured:
        return configured if configured in names else None
    if not names:
        return None
    if len(names) == 1:
        return next(iter(names))
    return PREFERRED_DEFAULT if PREFERRED_DEFAULT in names else min(names)


@dataclass(frozen=True)
class LookupWording:
    """How a lookup's refusals name the place searched (the loaded models, a models folder) and what to do."""

    no_default: Callable[[str | None, list[str]], str]  # (configured default, names there)
    no_model: Callable[[str, list[str]], str]  # (name asked for, names there)
    no_version: Callable[[str, int | None, list[int]], str]  # (name, version asked for, versions there)


def find_versions(
    catalogue: Mapping[str, Collection[int]],
    name: str | None,
    version: int | None,
    default: str | None,
    wording: LookupWording,
) -> tuple[str, list[int]]:
    """The model (``name``, else the default by ``choose_default``) and its versions to open, best first (the
    version rule, ``modelspec.versions_to_open``); a ``ModelLookupError`` worded by ``wording`` otherwise. The
    service looks up its loaded models this way, the batch command its models folder."""
    names = sorted(catalogue)
    if name is None:
        name = choose_default(catalogue, default)
        if name is None:
            raise NotReadyError(wording.no_default(default, names))
    versions = catalogue.get(name)
    if not versions:
        raise ModelNotFoundError(wording.no_model(name, names) + did_you_mean(name, names))
    chosen = versions_to_open(versions, version)
    if not chosen:
        raise VersionNotFoundError(wording.no_version(name, version, sorted(versions)))
    return name, chosen


LOADED = LookupWording(
    no_default=lambda configured, names: (
        f"{f'the default model {configured!r} is not loaded' if configured else 'no model is loaded'}; "
        f"loaded: {names or 'none'}; see /v1/models"
    ),
    no_model=lambda name, names: f"no model named {name!r}; available: {names or 'none'}",
    no_version=lambda name, version, versions: f"{name} version {version} is not loaded; loaded versions: {versions}",
)


def seconds_since_change(path: Path) -> float:
    """Seconds since anything in a bundle folder last changed. The inode change time counts too: ``cp -a`` keeps
    the original modification times, but not the change times."""
    try:
        entries = [path, *path.iterdir()]
        latest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in entries)
    except (OSError, ValueError):
        return 0.0
    return time.time() - latest


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
    waiting: list[tuple[str, int]] = field(default_factory=list)  # still being copied: retried at the next scan


Snapshot = Mapping[str, Mapping[int, LoadedModel]]


class ModelRegistry:
    def __init__(self, settings: Settings, metrics: Metrics, backend_factory: BackendFactory | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._backend_factory = backend_factory
        self._models: Snapshot = MappingProxyType({})
        self._failures: dict[str, dict[int, LoadFailure]] = {}
        self._waiting: set[tuple[str, int]] = set()  # versions reported as waiting for files (logged once)
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
        return choose_default(self._models, self._settings.default_model)

    def get(self, name: str | None, version: int | None = None) -> LoadedModel:
        """The model to serve; a ``ModelLookupError`` that says what exists when it cannot be found."""
        models = self._models
        name, chosen = find_versions(models, name, version, self._settings.default_model, LOADED)
        return models[name][chosen[0]]

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
            self._report_precisions(retired, updated)
            for model in retired:
                report.unloaded.append((model.name, model.version))
                logger.info("unloading %s version %d", model.name, model.version)
                threading.Thread(target=model.close, name=f"unload-{model.name}", daemon=True).start()
            return report

    def _report_precisions(self, retired: list[LoadedModel], loaded: dict[str, dict[int, LoadedModel]]) -> None:
        """``imgclf_model_precision_info``: one series per loaded version, gone with the version."""
        gauge = self._metrics.model_precision
        for model in retired:
            with contextlib.suppress(KeyError):
                gauge.remove(model.name, str(model.version), model.precision.precision)
        for versions in loaded.values():
            for model in versions.values():
                gauge.labels(model.name, str(model.version), model.precision.precision).set(1)

    def _refresh_model(
        self, name: str, versions: list[int], loaded: dict[int, LoadedModel], report: RefreshReport
    ) -> dict[int, LoadedModel]:
        """The newest ``versions_loaded`` versions of ``name`` that load, newest first."""
        keep: dict[int, LoadedModel] = {}
        failures = self._failures.setdefault(name, {})
        for version in versions_to_open(versions):
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
                keep[version] = load_model(path, self._settings, self._metrics, self._backend_factory)
            except Exception as exc:
                message = str(exc) if isinstance(exc, BundleError) else f"{type(exc).__name__}: {exc}"
                self._refused(name, version, path, message, signature, report)
                continue
            failures.pop(version, None)
            self._waiting.discard((name, version))
            report.loaded.append((name, version))
        for version in list(failures):
            if version not in versions:
                del failures[version]
        self._waiting = {(n, v) for n, v in self._waiting if n != name or v in versions}
        return keep

    def _refused(
        self, name: str, version: int, path: Path, message: str, signature: Signature, report: RefreshReport
    ) -> None:
        """A version that did not load: waiting for files while they still change, else a failure."""
        changed = seconds_since_change(path)
        if changed < self._settings.reload_settle_seconds:
            report.waiting.append((name, version))
            if (name, version) not in self._waiting:
                self._waiting.add((name, version))
                logger.info(
                    "%s version %d is waiting for files (changed %.1f s ago; a copy in progress?): %s",
                    name, version, changed, message,
                )  # fmt: skip
            return
        self._waiting.discard((name, version))
        self._failures.setdefault(name, {})[version] = LoadFailure(version, message, now(), signature)
        report.failed.append((name, version, message))
        self._metrics.load_failures.inc()
        logger.error("refused %s version %d: %s", name, version, message)

    def close(self) -> None:
        with self._refresh_lock:
            models, self._models = self._models, MappingProxyType({})
        for versions in models.values():
            for model in versions.values():
                model.close()
