"""The model's outputs -> a v2 inference response body: JSON, or JSON followed by binary tensor data.

Probabilities (calibrated where the model is), the OOD score and flag come from ``app.engine.trust`` and top-k from
``app.engine.postprocess`` (the same numbers ``/v1/predict`` answers with); the classification extension writes each
class as ``"probability:index:label"``, as Triton does, the value being the ``probabilities`` output's. An output
asked for as binary is written after the JSON in output order, its size in ``binary_data_size``: FP32 as
little-endian float32, BOOL as one byte, BYTES as a 4-byte little-endian length before each element.

A tensor has a row for every image, and the protocol has no place for one image's error: a request with an image
that cannot be used (not an image, too many pixels) is answered all or nothing, with that image's error, naming
its index.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pydantic_core

from app.api.oip.errors import ImageInputTooLargeError, InvalidImageInputError
from app.api.oip.request import InferenceCall, RequestedOutput
from app.api.oip.signature import BOOL, BYTES, EMBEDDING, FP32, OOD_SCORE, OUT_OF_DISTRIBUTION
from app.engine.inference import Inference
from app.engine.postprocess import top_k
from app.engine.trust import ImageTrust, assess
from modelspec.decode import ImageError, ImageTooLargeError
from modelspec.preprocess import Float32Array

_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class EncodedResponse:
    body: bytes
    header_length: int | None
    """The JSON part's length when binary data follows it (the ``Inference-Header-Content-Length`` header)."""


@dataclass(frozen=True)
class Tensor:
    datatype: str
    shape: list[int]
    values: npt.NDArray[np.float32] | npt.NDArray[np.bool_] | list[str]

    def binary(self) -> bytes:
        if isinstance(self.values, list):
            return b"".join(_LENGTH.pack(len(raw)) + raw for raw in (text.encode() for text in self.values))
        if self.values.dtype == np.bool_:
            return self.values.astype(np.uint8).tobytes()  # BOOL: one byte per element
        return self.values.astype("<f4", copy=False).tobytes()

    def json_data(self) -> list[Any]:
        return self.values if isinstance(self.values, list) else self.values.ravel().tolist()


def write_inference_response(inference: Inference, call: InferenceCall) -> EncodedResponse:
    """The response to ``call``; raises the first input's error instead when any input failed."""
    raise_first_failure(inference, call.input_name)
    model = inference.model
    trusts = [t for t in assess(model.scorer, inference.outcomes, None, model.trust_recorder) if t is not None]
    embeddings = [outcome.embedding for outcome in inference.outcomes if outcome.embedding is not None]
    labels = model.spec.labels
    outputs: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for requested in call.outputs:
        tensor = output_tensor(requested, trusts, embeddings, labels)
        entry: dict[str, Any] = {"name": requested.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if requested.binary:
            raw = tensor.binary()
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        else:
            entry["data"] = tensor.json_data()
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": inference.model.name, "model_version": str(inference.model.version)}
    if call.id is not None:
        document["id"] = call.id
    document["outputs"] = outputs
    header = pydantic_core.to_json(document)
    if not binary:
        return EncodedResponse(header, None)
    return EncodedResponse(b"".join([header, *binary]), len(header))


def raise_first_failure(inference: Inference, input_name: str) -> None:
    outcomes = inference.outcomes
    for index, outcome in enumerate(outcomes):
        error = outcome.error
        if error is None:
            continue
        if not isinstance(error, ImageError):
            raise error  # the model failed, or a reload changed its input shape: its own status
        message = f"{input_name}[{index}]: {error}"
        if len(outcomes) > 1:
            message += "; a request is answered all or nothing: send the other images again without this one"
        if isinstance(error, ImageTooLargeError):
            raise ImageInputTooLargeError(message) from error
        raise InvalidImageInputError(message) from error


def output_tensor(
    requested: RequestedOutput, trusts: list[ImageTrust], embeddings: list[Float32Array], labels: Sequence[str]
) -> Tensor:
    if requested.name == EMBEDDING:
        stacked = np.stack(embeddings)
        return Tensor(FP32, list(stacked.shape), stacked)
    if requested.name == OOD_SCORE:  # asked for only of a model with a reference (app.api.oip.request)
        scores = np.array([t.ood_score for t in trusts], dtype=np.float32)
        return Tensor(FP32, [len(trusts)], scores)
    if requested.name == OUT_OF_DISTRIBUTION:
        flags = np.array([bool(t.out_of_distribution) for t in trusts], dtype=np.bool_)
        return Tensor(BOOL, [len(trusts)], flags)
    if requested.classification is not None:
        k = requested.classification
        strings = [classification(index, score, labels) for t in trusts for index, score in top_k(t.probabilities, k)]
        return Tensor(BYTES, [len(trusts), k], strings)
    stacked = np.stack([t.probabilities for t in trusts]).astype(np.float32)
    return Tensor(FP32, list(stacked.shape), stacked)


def classification(index: int, score: float, labels: Sequence[str]) -> str:
    """Triton's ``value:index:label``, the value a probability written as the shortest float32 that reads back."""
    return f"{np.float32(score)!s}:{index}:{labels[index]}"
