"""A v2 inference request body -> the pipeline's inputs (one per image) and what to answer with.

The body is the JSON request, optionally followed by binary tensor data (Triton's binary tensor data extension:
``Inference-Header-Content-Length`` gives the JSON's length, each binary input its ``binary_data_size``, in input
order). Binary data is read through a ``memoryview`` of the body: an FP32 tensor becomes an array over the body's
own bytes, and each BYTES element (a 4-byte little-endian length, then the bytes) is copied once, into the
``bytes`` the image decoder reads. In plain JSON, each BYTES element is a base64 string.

Everything is checked before any image is decoded: names, datatypes, shapes against the model, element counts,
sizes, and the limit on images per request.
"""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.api.oip.errors import InvalidTensorError, ProtocolError, TooManyInputsError
from app.api.oip.schemas import InferenceRequest, Parameters, RequestInput, RequestOutput
from app.api.oip.signature import (
    ENCODED_IMAGES,
    INPUT_DATATYPES,
    INPUTS,
    OOD_OUTPUTS,
    OUTPUTS,
    PREPROCESSED,
    PROBABILITIES,
    outputs_of,
)
from app.engine.inference import ModelInput, Upload
from app.engine.model import LoadedModel

INFERENCE_HEADER = "inference-header-content-length"
_LENGTH = struct.Struct("<I")
_FP32 = np.dtype("<f4")


@dataclass(frozen=True)
class Limits:
    max_images: int
    max_top_k: int


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    classification: int | None = None
    """Answer the top ``classification`` classes as ``"probability:index:label"`` strings instead of the tensor."""


@dataclass(frozen=True)
class InferenceCall:
    """A request, read: its id, the pipeline's inputs (one per image, in order), and the outputs to answer with."""

    id: str | None
    input_name: str
    inputs: Sequence[ModelInput]
    outputs: list[RequestedOutput]


def read_inference_request(body: bytes, header_length: str | None, model: LoadedModel, limits: Limits) -> InferenceCall:
    """Parse and check a request body; a ``ProtocolError`` (or a subclass) says what is wrong and how to fix it."""
    header, binary = split_body(body, header_length)
    request = parse_header(header)
    tensor = single_input(request.inputs)
    chunk = binary_chunk(tensor, binary)
    inputs = read_input(tensor, chunk, model, limits.max_images)
    outputs = requested_outputs(request, model, limits.max_top_k)
    return InferenceCall(id=request.id, input_name=tensor.name, inputs=inputs, outputs=outputs)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part of the body."""
    if header_length is None:
        return body, memoryview(b"")
    value = header_length.strip()
    if not value.isdigit():
        raise ProtocolError(f"Inference-Header-Content-Length must be a number of bytes, not {header_length!r}")
    length = int(value)
    if length == 0:
        raise ProtocolError(
            "Inference-Header-Content-Length: 0 (a raw binary body with no JSON) is not supported; send the JSON "
            "request first, or POST a raw image to /v1/predict"
        )
    if length > len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length is {length}, but the body has only {len(body)} bytes; it must give "
            "the length of the JSON part"
        )
    return body[:length], memoryview(body)[length:]


def parse_header(header: bytes) -> InferenceRequest:
    if not header.strip():
        raise ProtocolError("the body is empty; send a JSON inference request (see GET /v2/models/{name})")
    try:
        return InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False)[:5]:
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
        raise ProtocolError(f"the inference request is not valid: {'; '.join(problems)}") from None


def single_input(inputs: list[RequestInput]) -> RequestInput:
    """The request's one input: encoded images or preprocessed images, not both."""
    for tensor in inputs:
        if tensor.name not in INPUTS:
            raise InvalidTensorError(
                f"no input named {tensor.name!r}: send '{ENCODED_IMAGES}' (BYTES, image files) or "
                f"'{PREPROCESSED}' (FP32, preprocessed)"
            )
    if len(inputs) > 1:
        names = [tensor.name for tensor in inputs]
        raise InvalidTensorError(f"send one input, '{ENCODED_IMAGES}' or '{PREPROCESSED}', not {names}")
    tensor = inputs[0]
    expected = INPUT_DATATYPES[tensor.name]
    if tensor.datatype != expected:
        raise InvalidTensorError(f"input {tensor.name!r} has datatype {tensor.datatype}; it takes {expected}")
    return tensor


def binary_chunk(tensor: RequestInput, binary: memoryview) -> memoryview | None:
    """The input's binary data (all of what follows the JSON), or None when its data is in the JSON."""
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        if len(binary):
            raise ProtocolError(
                f"{len(binary)} bytes follow the JSON, but input {tensor.name!r} has no binary_data_size parameter"
            )
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ProtocolError(f"binary_data_size of input {tensor.name!r} must be a number of bytes, not {size!r}")
    if tensor.data is not None:
        raise ProtocolError(f"input {tensor.name!r} has both JSON data and binary_data_size; send one of them")
    if size != len(binary):
        raise ProtocolError(
            f"input {tensor.name!r} declares binary_data_size {size}, but {len(binary)} bytes follow the JSON"
        )
    return binary


def read_input(tensor: RequestInput, chunk: memoryview | None, model: LoadedModel, max_images: int) -> list[ModelInput]:
    """One pipeline input per image: the encoded file, or the image's rows of the FP32 tensor (a view)."""
    count = batch_size(tensor, model)
    if count > max_images:
        raise TooManyInputsError(f"a request may hold at most {max_images} images, not {count}; split it")
    if tensor.name == ENCODED_IMAGES:
        elements = split_elements(chunk, count) if chunk is not None else base64_elements(tensor.data, count)
        return [Upload(filename=None, data=element) for element in elements]
    shape = (count, *model.input_shape)
    array = fp32_from_binary(chunk, shape) if chunk is not None else fp32_from_json(tensor.data, shape)
    return list(array)


def batch_size(tensor: RequestInput, model: LoadedModel) -> int:
    """N, from the shape: ``[N]`` or ``[N, 1]`` for encoded images, ``[N, 3, H, W]`` matching the model for arrays."""
    shape = tensor.shape
    if tensor.name == ENCODED_IMAGES:
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InvalidTensorError(f"input {ENCODED_IMAGES!r} has shape {shape}; it takes [N] or [N, 1]")
    elif len(shape) != 4 or tuple(shape[1:]) != model.input_shape:
        expected = [-1, *model.input_shape]
        raise InvalidTensorError(
            f"input {PREPROCESSED!r} has shape {shape}; {model.name} takes {expected} (N images, preprocessed as "
            f"GET /v2/models/{model.name} describes)"
        )
    if shape[0] < 1:
        raise InvalidTensorError(f"input {tensor.name!r} has shape {shape}: it holds no image")
    return shape[0]


def split_elements(chunk: memoryview, count: int) -> list[bytes]:
    """``count`` BYTES elements, each a 4-byte little-endian length and then that many bytes, filling ``chunk``."""
    elements = []
    offset, end = 0, len(chunk)
    for index in range(count):
        if offset + _LENGTH.size > end:
            raise InvalidTensorError(
                f"the binary data of {ENCODED_IMAGES!r} holds {index} elements, but its shape says {count}"
            )
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += _LENGTH.size
        if offset + length > end:
            raise InvalidTensorError(
                f"element {index} of {ENCODED_IMAGES!r} declares {length} bytes, but only {end - offset} follow; "
                "each element is a 4-byte little-endian length and then the bytes"
            )
        elements.append(chunk[offset : offset + length].tobytes())
        offset += length
    if offset != end:
        raise InvalidTensorError(
            f"{end - offset} bytes are left in the binary data of {ENCODED_IMAGES!r} after its {count} elements"
        )
    return elements


def base64_elements(data: Any, count: int) -> list[bytes]:
    """The elements of a BYTES tensor in JSON: base64 strings, flat or nested as ``[N, 1]``."""
    if isinstance(data, list) and data and all(isinstance(row, list) and len(row) == 1 for row in data):
        data = [row[0] for row in data]
    if not isinstance(data, list) or len(data) != count:
        found = f"{len(data)} elements" if isinstance(data, list) else type(data).__name__
        raise InvalidTensorError(f"input {ENCODED_IMAGES!r} needs {count} elements (its shape) in 'data', not {found}")
    elements = []
    for index, value in enumerate(data):
        if not isinstance(value, str):
            raise InvalidTensorError(
                f"element {index} of {ENCODED_IMAGES!r} is a {type(value).__name__}; in JSON each element is an "
                "image file base64-encoded"
            )
        try:
            elements.append(binascii.a2b_base64(value, strict_mode=True))
        except binascii.Error as exc:
            raise InvalidTensorError(
                f"element {index} of {ENCODED_IMAGES!r} is not valid base64 ({exc}); in JSON each element is an "
                "image file base64-encoded (standard alphabet, padded, no line breaks), or use the binary tensor "
                "data extension"
            ) from None
    return elements


def fp32_from_binary(chunk: memoryview, shape: tuple[int, ...]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The tensor as an array over the body's bytes (little-endian float32, row-major), without a copy."""
    expected = math.prod(shape) * _FP32.itemsize
    if len(chunk) != expected:
        raise InvalidTensorError(
            f"input {PREPROCESSED!r} of shape {list(shape)} needs {expected} bytes of FP32 data, not {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=_FP32).reshape(shape)


def fp32_from_json(data: Any, shape: tuple[int, ...]) -> np.ndarray[Any, np.dtype[np.float32]]:
    expected = math.prod(shape)
    try:
        array = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError):
        array = None
    if array is None or array.size != expected:
        raise InvalidTensorError(
            f"input {PREPROCESSED!r} of shape {list(shape)} needs {expected} numbers in 'data' (flat or nested, "
            "row-major)"
        )
    return array.reshape(shape)


def requested_outputs(request: InferenceRequest, model: LoadedModel, max_top_k: int) -> list[RequestedOutput]:
    """What to answer with: the outputs asked for, or all of them; binary or JSON, each."""
    all_binary = flag(request.parameters, "binary_data_output", False)
    if request.outputs is None:
        return [RequestedOutput(name, all_binary) for name in OUTPUTS]
    names = [output.name for output in request.outputs]
    if len(set(names)) != len(names):
        raise InvalidTensorError(f"each output may be requested once, not {names}")
    return [requested_output(output, all_binary, model, max_top_k) for output in request.outputs]


def requested_output(output: RequestOutput, all_binary: bool, model: LoadedModel, max_top_k: int) -> RequestedOutput:
    available = outputs_of(model)
    if output.name not in available:
        missing = " (it has no out-of-distribution reference: retrain it with imgclf-train)"
        reason = missing if output.name in OOD_OUTPUTS else ""
        raise InvalidTensorError(f"no output named {output.name!r}; {model.name} has {list(available)}{reason}")
    binary = flag(output.parameters, "binary_data", all_binary)
    count = (output.parameters or {}).get("classification")
    if count is None:
        return RequestedOutput(output.name, binary)
    if output.name != PROBABILITIES:
        raise InvalidTensorError(f"the classification parameter applies to {PROBABILITIES!r}, not {output.name!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= max_top_k:
        raise InvalidTensorError(
            f"classification must be a whole number of classes from 1 to {max_top_k} (IMGCLF_MAX_TOP_K), not {count!r}"
        )
    return RequestedOutput(output.name, binary, min(count, model.spec.num_classes))


def flag(parameters: Parameters | None, name: str, default: bool) -> bool:
    value = (parameters or {}).get(name, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"the parameter {name} must be true or false, not {value!r}")
    return value
