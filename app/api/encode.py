"""The encode stage of the HTTP face: a model's outputs -> the answers clients read (top-k probabilities, embeddings).

The numbers come from ``app.engine.postprocess`` (softmax, top-k, L2 normalisation), so every route and command
that answers with predictions or features answers alike. The answers are the response models the routes declare, built
with their validating constructors: pydantic validates in Rust, which measured faster than ``model_construct``
(Python) and, with FastAPI serialising the models in Rust too, faster than the dicts and ``json.dumps`` it replaced.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.api.schemas import (
    ErrorDetail,
    FeatureResult,
    FeaturesResponse,
    ModelRef,
    Prediction,
    PredictResponse,
    PredictResult,
)
from app.engine.inference import ImageOutcome, Inference, ItemError
from app.engine.model import LoadedModel
from app.engine.postprocess import l2_normalize, top_k
from modelspec.preprocess import Float32Array


def model_ref(model: LoadedModel) -> ModelRef:
    return ModelRef(name=model.name, version=model.version)


def error_detail(error: ItemError) -> ErrorDetail:
    return ErrorDetail(code=error.code, message=str(error))


def predictions(logits: Float32Array, labels: Sequence[str], k: int) -> list[Prediction]:
    """The top ``k`` classes of one image, best first."""
    return [Prediction(label=labels[i], index=i, score=score) for i, score in top_k(logits, k)]


def predict_result(outcome: ImageOutcome, labels: Sequence[str], k: int) -> PredictResult:
    """One image's entry: its top ``k`` predictions, or its error. The absent field is left unset, not null."""
    if outcome.error is not None:
        return PredictResult(file=outcome.filename, error=error_detail(outcome.error))
    assert outcome.logits is not None
    return PredictResult(file=outcome.filename, predictions=predictions(outcome.logits, labels, k))


def feature_result(outcome: ImageOutcome, normalize: bool) -> FeatureResult:
    """One image's entry: its embedding (unit length if ``normalize``), or its error."""
    if outcome.error is not None:
        return FeatureResult(file=outcome.filename, error=error_detail(outcome.error))
    assert outcome.embedding is not None
    vector = l2_normalize(outcome.embedding) if normalize else outcome.embedding
    return FeatureResult(file=outcome.filename, embedding=vector.tolist())


def encode_predictions(inference: Inference, k: int) -> PredictResponse:
    labels = inference.model.spec.labels
    return PredictResponse(
        model=model_ref(inference.model),
        results=[predict_result(outcome, labels, k) for outcome in inference.outcomes],
    )


def encode_features(inference: Inference, normalize: bool) -> FeaturesResponse:
    return FeaturesResponse(
        model=model_ref(inference.model),
        dim=inference.model.spec.embedding_size,
        normalized=normalize,
        results=[feature_result(outcome, normalize) for outcome in inference.outcomes],
    )
