"""The encode stage: a model's outputs -> the answers clients read (top-k probabilities, embeddings).

Post-processing (softmax, top-k, L2 normalisation) lives here and nowhere else, so every route and command that
answers with predictions or features answers alike. The answers are the response models the routes declare, built
with their validating constructors: pydantic validates in Rust, which measured faster than ``model_construct``
(Python) and, with FastAPI serialising the models in Rust too, faster than the dicts and ``json.dumps`` it replaced.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.inference import ImageOutcome, Inference, ItemError
from app.model import LoadedModel
from app.schemas import (
    ErrorDetail,
    FeatureResult,
    FeaturesResponse,
    ModelRef,
    Prediction,
    PredictResponse,
    PredictResult,
)
from modelspec.preprocess import Float32Array


def softmax(logits: Float32Array) -> Float32Array:
    shifted = np.exp(logits - logits.max())
    result: Float32Array = shifted / shifted.sum()
    return result


def probabilities(logits: Float32Array) -> Float32Array:
    """One image's class probabilities: the softmax of its logits, computed in float64."""
    result: Float32Array = softmax(logits.astype(np.float64)).astype(np.float32)
    return result


def top_k(logits: Float32Array, k: int) -> list[tuple[int, float]]:
    """The ``k`` most probable classes, best first, as ``(index, probability)``."""
    scores = probabilities(logits)
    k = min(k, len(scores))
    candidates = np.argpartition(-scores, k - 1)[:k]
    best = candidates[np.argsort(-scores[candidates], kind="stable")]
    return [(int(i), float(scores[i])) for i in best]


def l2_normalize(vector: Float32Array) -> Float32Array:
    norm = float(np.linalg.norm(vector))
    result: Float32Array = vector / norm if norm > 0 else vector
    return result


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
