"""Model listing and metadata."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RegistryDep, VersionQuery
from app.api.schemas import ErrorResponse, LoadFailureInfo, ModelDetail, ModelList, ModelSummary
from app.engine.model import LoadedModel
from app.engine.registry import ModelRegistry
from modelspec import ModelSpec

SERVED_APART = {"format_version", "version"}
"""Spec fields the detail does not copy: the file format is not the model's, the version is the one loaded."""

router = APIRouter(prefix="/v1/models", tags=["models"])


def _describe(model: LoadedModel) -> str:
    architecture = model.spec.architecture
    return f"{architecture.family}/{architecture.name}"


@router.get("", response_model=ModelList)
async def list_models(registry: RegistryDep) -> ModelList:
    """Every loaded model, its served version, and the versions on disk."""
    default = registry.default_name()
    summaries = []
    for name, versions in registry.snapshot.items():
        served = versions[max(versions)]
        summaries.append(
            ModelSummary(
                name=name,
                default=name == default,
                version=served.version,
                loaded_versions=sorted(versions),
                available_versions=registry.available_versions(name),
                architecture=_describe(served),
                num_classes=served.spec.num_classes,
                backend=served.backend.name,
                precision=served.precision.precision,
                precision_reason=served.precision.reason,
            )
        )
    return ModelList(default=default, models=summaries)


def model_detail(registry: ModelRegistry, model: LoadedModel) -> ModelDetail:
    spec = model.spec
    return ModelDetail(
        **{field: getattr(spec, field) for field in ModelSpec.model_fields if field not in SERVED_APART},
        version=model.version,
        default=spec.name == registry.default_name(),
        backend=model.backend.name,
        device=model.backend.device,
        precision=model.precision.precision,
        precision_reason=model.precision.reason,
        loaded_at=model.loaded_at,
        loaded_versions=sorted(registry.snapshot.get(spec.name, {})),
        available_versions=registry.available_versions(spec.name),
        failed_versions=[
            LoadFailureInfo(version=f.version, error=f.error, at=f.at) for f in registry.failures(spec.name)
        ],
    )


@router.get(
    "/{name}", response_model=ModelDetail, responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}
)
async def read_model(name: str, registry: RegistryDep, version: VersionQuery = None) -> ModelDetail:
    """A model's metadata: architecture, labels, preprocessing, metrics, provenance, file hashes, load failures."""
    return model_detail(registry, registry.get(name, version))
