"""What every model looks like as v2 tensors: two inputs (a request sends one of them) and two outputs.

- ``encoded_images``, BYTES ``[N]`` (or ``[N, 1]``): image files, decoded and preprocessed by the service as
  ``/v1`` does. In JSON each element is the file base64-encoded; with the binary tensor data extension, the raw
  file bytes (each after its 4-byte little-endian length).
- ``images``, FP32 ``[N, 3, H, W]``: images already preprocessed as the bundle says (the ONNX graph's own input).
- ``probabilities``, FP32 ``[N, classes]``: softmax of the logits; with the classification extension, BYTES
  ``[N, k]`` strings ``"probability:index:label"``, best first.
- ``embedding``, FP32 ``[N, D]``: the pooled features (``/v1/features`` without ``normalize``).
- ``ood_score``, FP32 ``[N]``, and ``out_of_distribution``, BOOL ``[N]``: optional outputs, answered only when asked
  for by name, of models with an out-of-distribution reference (``/v1/predict``'s fields of the same names).

Probabilities are calibrated (temperature-scaled) where the model is (``calibrated`` in ``GET /v1/models/{name}``).
"""

from __future__ import annotations

from app.api.oip.schemas import ModelMetadata, TensorMetadata
from app.engine.model import LoadedModel
from modelspec import tensors
from modelspec.decode import FORMATS_TEXT

ENCODED_IMAGES = "encoded_images"
PREPROCESSED = tensors.INPUT
PROBABILITIES = "probabilities"
EMBEDDING = tensors.EMBEDDING

INPUTS = (ENCODED_IMAGES, PREPROCESSED)
OOD_SCORE = "ood_score"
OUT_OF_DISTRIBUTION = "out_of_distribution"
OUTPUTS = (PROBABILITIES, EMBEDDING)
"""Answered when a request names no outputs."""
OOD_OUTPUTS = (OOD_SCORE, OUT_OF_DISTRIBUTION)
"""Answered only when named, and only by models with an out-of-distribution reference."""

BYTES = "BYTES"
FP32 = "FP32"
BOOL = "BOOL"
INPUT_DATATYPES = {ENCODED_IMAGES: BYTES, PREPROCESSED: FP32}

BASE64 = "base64"
"""The ``content_type`` parameter of ``encoded_images`` (MLServer's name for it): in plain JSON, BYTES elements are
base64 strings, since JSON strings cannot hold arbitrary bytes."""

PLATFORMS = {"onnx": "onnx_onnxv1", "torch": "pytorch_safetensors"}


def describe_preprocessing(model: LoadedModel) -> str:
    prep = model.spec.preprocessing
    return (
        f"{prep.channel_order}, short side resized to {prep.resize_size} ({prep.interpolation}), centre crop "
        f"{prep.crop_size}, (x / 255 - mean) / std with mean {list(prep.mean)} and std {list(prep.std)}, "
        f"{prep.layout}; GET /v1/models/{model.name} has it as JSON"
    )


def outputs_of(model: LoadedModel) -> tuple[str, ...]:
    """Every output ``model`` can answer with."""
    return OUTPUTS + (OOD_OUTPUTS if model.scorer.ood is not None else ())


def ood_metadata(model: LoadedModel) -> list[TensorMetadata]:
    ood = model.scorer.ood
    if ood is None:
        return []
    return [
        TensorMetadata(
            name=OOD_SCORE,
            datatype=FP32,
            shape=[-1],
            parameters={
                "description": f"how unlike the training images each image is ({ood.method}; higher: less like "
                "them); answered only when requested by name"
            },
        ),
        TensorMetadata(
            name=OUT_OF_DISTRIBUTION,
            datatype=BOOL,
            shape=[-1],
            parameters={
                "description": f"ood_score above {ood.threshold:.6g}, the threshold that {ood.pass_rate:.0%} of the "
                "validation images pass; answered only when requested by name"
            },
        ),
    ]


def model_metadata(model: LoadedModel, loaded_versions: list[int]) -> ModelMetadata:
    spec = model.spec
    return ModelMetadata(
        name=model.name,
        versions=[str(v) for v in loaded_versions],
        platform=PLATFORMS.get(model.backend.name, model.backend.name),
        parameters={"precision": model.precision.precision, "precision_reason": model.precision.reason},
        inputs=[
            TensorMetadata(
                name=ENCODED_IMAGES,
                datatype=BYTES,
                shape=[-1],
                parameters={
                    "content_type": BASE64,
                    "description": f"image files ({FORMATS_TEXT}), shape [N] or [N, 1]; in JSON each element is "
                    "the file base64-encoded (standard alphabet, padded), with the binary tensor data extension "
                    "the raw file bytes",
                },
            ),
            TensorMetadata(
                name=PREPROCESSED,
                datatype=FP32,
                shape=[-1, *model.input_shape],
                parameters={"description": f"images already preprocessed: {describe_preprocessing(model)}"},
            ),
        ],
        outputs=[
            TensorMetadata(
                name=PROBABILITIES,
                datatype=FP32,
                shape=[-1, spec.num_classes],
                parameters={
                    "description": f"{'calibrated (temperature-scaled) ' if model.scorer.calibrated else ''}softmax "
                    "probabilities; with the classification parameter k, BYTES [N, k] strings "
                    "'probability:index:label', best first"
                },
            ),
            TensorMetadata(
                name=EMBEDDING,
                datatype=FP32,
                shape=[-1, spec.embedding_size],
                parameters={"description": "the pooled embedding (the classifier's input), not normalised"},
            ),
            *ood_metadata(model),
        ],
    )
