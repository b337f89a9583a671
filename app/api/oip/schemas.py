"""The v2 documents (kserve/open-inference-protocol ``inference_rest.md``), as pydantic models: requests are
validated with them (in Rust, from the JSON bytes) and the OpenAPI page shows them.

Unknown fields are ignored rather than refused: clients add their own (KServe's sends ``model_name``), and the
protocol lets servers and clients define parameters.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Parameters = dict[str, Any]
"""``$parameters``: names to strings, numbers or booleans."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RequestInput(_Lenient):
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: str
    parameters: Parameters | None = None
    data: Any = Field(default=None, description="Row-major, flat or nested; absent when the binary extension is used.")


class RequestOutput(_Lenient):
    name: str
    parameters: Parameters | None = None


class InferenceRequest(_Lenient):
    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(default=None, description="Absent: every output.")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(default=None, description="binary_data_size when the data follows the JSON.")
    data: list[Any] | None = Field(default=None, description="Row-major, flat; absent when sent as binary data.")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = Field(default=None, description="The request's id, when it had one.")
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ProtocolErrorResponse(BaseModel):
    """The protocol's error document: every /v2 error has this shape."""

    error: str = Field(description="What went wrong and how to fix it.")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the batch dimension.")
    parameters: Parameters | None = Field(default=None, description="How to fill or read the tensor.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="The loaded versions, any of which /versions/{v} reaches.")
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: Parameters | None = Field(
        default=None, description="precision (fp32 or int8: the graph served) and precision_reason (why)."
    )
