"""The encode stage of the HTTP face: a model's outputs -> the answers clients read (top-k probabilities, embeddings).

The numbers come from ``app.engine.trust`` (calibrated probabilities, OOD score, prediction sets: one scorer call
per request) and ``app.engine.postprocess`` (top-k, L2 normalisation), so every route and command that answers with
predictions or features answers alike. The answers are the response models the routes declare, built
with their validating constructors: pydantic validates in Rust, which measured faster than ``model_construct``
(Python) and, with FastAPI serialising the models in Rust too, faster than the dicts and ``json.dumps`` it replaced.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.api.schemas import (
    ErrorDetail,
    FeatureResult,
    FeaturesResponse,
    ModelRef,
    Prediction,
    PredictionSet,
    PredictResponse,
    PredictResult,
)
from app.engine.inference import ImageOutcome, Inference, ItemError
from app.engine.model import LoadedModel
from app.engine.postprocess import l2_normalize, top_k
from app.engine.trust import ImageTrust, assess


def model_ref(model: LoadedModel) -> ModelRef:
    return ModelRef(name=model.name, version=model.version)


def error_detail(error: ItemError) -> ErrorDetail:
    return ErrorDetail(code=error.code, message=str(error))


def predictions(probabilities: npt.NDArray[np.floating], labels: Sequence[str], k: int) -> list[Prediction]:
    """The top ``k`` classes of one image, best first."""
    return [Prediction(label=labels[i], index=i, score=score) for i, score in top_k(probabilities, k)]


def predict_result(
    outcome: ImageOutcome, trust: ImageTrust | None, labels: Sequence[str], k: int, coverage: float | None
) -> PredictResult:
    """One image's entry: its top ``k`` predictions, OOD score and flag (null without a reference) and, with a
    coverage, its prediction set; or its error. Absent fields are left unset, not null."""
    if outcome.error is not None or trust is None:
        assert outcome.error is not None
        return PredictResult(file=outcome.filename, error=error_detail(outcome.error))
    answer = PredictResult(
        file=outcome.filename,
        predictions=predictions(trust.probabilities, labels, k),
        ood_score=trust.ood_score,
        out_of_distribution=trust.out_of_distribution,
    )
    if coverage is None or trust.prediction_set is None:
        return answer
    members = trust.prediction_set
    chosen = PredictionSet(coverage=coverage, labels=[labels[i] for i in members], indices=members)
    return answer.model_copy(update={"prediction_set": chosen})


def feature_result(outcome: ImageOutcome, normalize: bool) -> FeatureResult:
    """One image's entry: its embedding (unit length if ``normalize``), or its error."""
    if outcome.error is not None:
        return FeatureResult(file=outcome.filename, error=error_detail(outcome.error))
    assert outcome.embedding is not None
    vector = l2_normalize(outcome.embedding) if normalize else outcome.embedding
    return FeatureResult(file=outcome.filename, embedding=vector.tolist())


def encode_predictions(inference: Inference, k: int, coverage: float | None = None) -> PredictResponse:
    model = inference.model
    labels = model.spec.labels
    trusts = assess(model.scorer, inference.outcomes, coverage, model.trust_recorder)
    return PredictResponse(
        model=model_ref(model),
        results=[
            predict_result(outcome, trust, labels, k, coverage)
            for outcome, trust in zip(inference.outcomes, trusts, strict=True)
        ],
    )


def encode_features(inference: Inference, normalize: bool) -> FeaturesResponse:
    return FeaturesResponse(
        model=model_ref(inference.model),
        dim=inference.model.spec.embedding_size,
        normalized=normalize,
        results=[feature_result(outcome, normalize) for outcome in inference.outcomes],
    )
