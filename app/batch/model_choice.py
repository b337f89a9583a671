"""Which model a batch run uses: ``--model NAME[:VERSION]``, else the service's default, by the registry's rules.

The service serves the newest version of a model whose bundle checks out; so does a batch run when no version is
named, so that its answers are the ones ``/v1/predict`` gives for the same models folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from app.config import Settings
from app.engine.registry import ModelNotFoundError, NotReadyError, VersionNotFoundError, choose_default
from modelspec import Bundle, BundleError, list_models, read_bundle, versions_to_open

logger = logging.getLogger(__name__)


class ModelArgumentError(ValueError):
    """A ``--model`` value that is not ``NAME`` or ``NAME:VERSION``."""


def parse_model(text: str | None) -> tuple[str | None, int | None]:
    """``NAME`` or ``NAME:VERSION`` (None: the default model)."""
    if not text:
        return None, None
    name, _, version = text.partition(":")
    if not version:
        return name, None
    if not version.isdigit():
        raise ModelArgumentError(f"--model {text!r}: the version after ':' is a number, e.g. {name}:2")
    return name, int(version)


def bundle_candidates(models_dir: Path, name: str | None, version: int | None, default: str | None) -> list[Path]:
    """The bundle folders to try, best first; a ``ModelLookupError`` naming what exists when there are none."""
    on_disk = list_models(models_dir)
    if name is None:
        name = choose_default(on_disk, default)
        if name is None:
            detail = f"the default model {default!r} is not in {models_dir}" if default else f"{models_dir} is empty"
            raise NotReadyError(
                f"{detail}; models there: {sorted(on_disk) or 'none'}. Name one with --model, point --models-dir "
                "at another folder, or build the default one with make default-model"
            )
    versions = on_disk.get(name)
    if not versions:
        raise ModelNotFoundError(f"no model named {name!r} in {models_dir}; available: {sorted(on_disk) or 'none'}")
    chosen = versions_to_open(versions, version)
    if not chosen:
        raise VersionNotFoundError(f"{name} has no version {version} in {models_dir}; versions: {versions}")
    return [models_dir / name / str(v) for v in chosen]


def resolve_bundle(settings: Settings, model: str | None) -> Bundle:
    """The bundle to run: the newest version (of the named or default model) whose files check out."""
    name, version = parse_model(model)
    candidates = bundle_candidates(settings.models_dir, name, version, settings.default_model)
    for i, path in enumerate(candidates):
        try:
            return read_bundle(path)
        except BundleError as exc:
            if i == len(candidates) - 1:
                raise
            logger.warning("skipping %s (%s); trying the previous version, as the service would", path, exc)
    raise AssertionError("unreachable")
