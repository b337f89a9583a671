"""Which model a batch run uses: ``--model NAME[:VERSION]``, else the service's default, by the registry's rules.

The service serves the newest version of a model whose bundle checks out; so does a batch run when no version is
named, so that its answers are the ones ``/v1/predict`` gives for the same models folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from app.config import Settings
from app.engine.registry import LookupWording, find_versions
from modelspec import Bundle, BundleError, list_models, read_bundle

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
    name, chosen = find_versions(list_models(models_dir), name, version, default, in_folder(models_dir))
    return [models_dir / name / str(v) for v in chosen]


def in_folder(models_dir: Path) -> LookupWording:
    return LookupWording(
        no_default=lambda configured, names: (
            f"{f'the default model {configured!r} is not in {models_dir}' if configured else f'{models_dir} is empty'}"
            f"; models there: {names or 'none'}. Name one with --model, point --models-dir at another folder, or "
            "build the default one with make default-model"
        ),
        no_model=lambda name, names: f"no model named {name!r} in {models_dir}; available: {names or 'none'}",
        no_version=lambda name, version, versions: (
            f"{name} has no version {version} in {models_dir}; versions: {versions}"
        ),
    )


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
