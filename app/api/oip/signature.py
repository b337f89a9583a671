"""What every model looks like as v2 tensors: two inputs (a request sends one of them) and two outputs.

- ``encoded_images``, BYTES ``[N]`` (or ``[N, 1]``): image files, decoded and preprocessed by the service as
  ``/v1`` does. In JSON each element is the file base64-encoded; with the binary tensor data extension, the raw
  file bytes (each after its 4-byte little-endian length).
- ``images``, FP32 ``[N, 3, H, W]``: images already preprocessed as the bundle says (the ONNX graph's own input).
- ``probabilities``, FP32 ``[N, classes]``: softmax of the logits; with the classification extension, BYTES
  ``[N, k]`` strings ``"probability:index:label"``, best first.
- ``embedding``, FP32 ``[N, D]``: the pooled features (``/v1/features`` without ``normalize``).
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
OUTPUTS = (PROBABILITIES, EMBEDDING)

BYTES = "BYTES"
FP32 = "FP32"
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
                    "description": "softmax probabilities; with the classification parameter k, BYTES [N, k] "
                    "strings 'probability:index:label', best first"
                },
            ),
            TensorMetadata(
                name=EMBEDDING,
                datatype=FP32,
                shape=[-1, spec.embedding_size],
                parameters={"description": "the pooled embedding (the classifier's input), not normalised"},
            ),
        ],
    )
