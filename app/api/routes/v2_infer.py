"""The Open Inference Protocol's (KServe v2) inference endpoint: ``POST /v2/models/{name}[/versions/{v}]/infer``.

The request runs through the same pipeline as ``/v1`` (decode pool, batcher, model), so v1 and v2 requests that
arrive together share a batch; only reading the body and writing the answer are the protocol's own
(``app.api.oip.request``, ``app.api.oip.response``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.api.deps import ServicesDep
from app.api.oip.errors import UnsupportedEncodingError
from app.api.oip.request import INFERENCE_HEADER, Limits, read_inference_request
from app.api.oip.response import write_inference_response
from app.api.oip.schemas import InferenceRequest, InferenceResponse
from app.api.routes.v2 import PROTOCOL_ERRORS, TAG, find_model
from app.api.shedding import admitted

router = APIRouter(prefix="/v2/models", tags=[TAG])


def inline_schema(model: type[InferenceRequest]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` written in place, to embed in the OpenAPI document."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref", "")
            if reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


BINARY_BODY = {
    "type": "string",
    "format": "binary",
    "description": "The JSON document, then the binary tensor data in input (output) order; the "
    "Inference-Header-Content-Length header gives the JSON's length.",
}
INFER_DOCS: dict[str, Any] = {
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": inline_schema(InferenceRequest)},
                "application/octet-stream": {"schema": BINARY_BODY},
            },
        }
    },
    "responses": {
        200: {"model": InferenceResponse, "content": {"application/octet-stream": {"schema": BINARY_BODY}}},
        **PROTOCOL_ERRORS,
    },
    "response_class": Response,
}


async def _infer(request: Request, services: ServicesDep, name: str, version: str | None) -> Response:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedEncodingError(f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed")
    registry = services.registry
    let_in = admitted(request)  # resolved, with a slot held, by app.api.shedding
    # Otherwise a 404 before reading a body we would not use.
    model = let_in.model if let_in is not None else find_model(registry, name, version)
    settings = services.settings
    limits = Limits(max_images=settings.max_images_per_request, max_top_k=settings.max_top_k)
    call = read_inference_request(await request.body(), request.headers.get(INFERENCE_HEADER), model, limits)
    inference = await services.pipeline.run(lambda: find_model(registry, name, version), call.inputs, admitted=let_in)
    answer = write_inference_response(inference, call)
    if answer.header_length is None:
        return Response(answer.body, media_type="application/json")
    return Response(
        answer.body,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(answer.header_length)},
    )


@router.post("/{name}/infer", **INFER_DOCS)
async def infer(name: str, request: Request, services: ServicesDep) -> Response:
    """Run the model on encoded images (BYTES) or preprocessed ones (FP32): probabilities, top-k classes
    (classification extension) and embeddings, in JSON or binary (binary tensor data extension)."""
    return await _infer(request, services, name, None)


@router.post("/{name}/versions/{version}/infer", **INFER_DOCS)
async def infer_version(name: str, version: str, request: Request, services: ServicesDep) -> Response:
    """Run one loaded version of the model."""
    return await _infer(request, services, name, version)


SHED = (infer, infer_version)
"""The endpoints whose requests wait for their model's slot at the edge (``app.api.shedding``)."""
