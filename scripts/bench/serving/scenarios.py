"""Load scenarios: what the clients send to the service (a request builder) and at how many clients.

``PRIMARY`` is the one the section's main table, the targets and the paired check are about; each scenario in
``ALSO`` runs beside it on the same service (batching on) and gets a row per client count under "Other load
scenarios", and is also run at the same time as the primary one, 8 clients each (A/B under one background load),
its throughput given as a share of the primary's, against its ``target`` when it has one. A new protocol, endpoint
or body is a builder and a ``Scenario`` added to ``ALSO``.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass

from scripts.bench.load import Request

# The model's name and the test JPEG -> the request every client sends.
RequestBuilder = Callable[[str, bytes], Request]


@dataclass(frozen=True)
class Scenario:
    name: str
    build: RequestBuilder
    concurrency: tuple[int, ...]
    target: float | None = None
    """The least share of the primary scenario's throughput at 16 clients this one should reach, if any."""

    def request(self, model: str, image: bytes) -> Request:
        return self.build(model, image)

    @property
    def description(self) -> str:
        """The builder's docstring: what the clients send."""
        return " ".join((self.build.__doc__ or self.name).split())


def v1_raw_jpeg(model: str, image: bytes) -> Request:
    """``POST /v1/predict`` (the default model, which the benchmark sets to ``model``) with a raw JPEG body."""
    return Request("/v1/predict", image, "image/jpeg")


TOP5 = [{"name": "probabilities", "parameters": {"classification": 5, "binary_data": True}}]


def v2_binary(model: str, image: bytes) -> Request:
    """``POST /v2/models/{model}/infer`` as tritonclient sends it: the JPEG as one BYTES element after the JSON
    (binary tensor data extension), the top 5 classes asked for as binary BYTES (classification extension)."""
    element = struct.pack("<I", len(image)) + image
    tensor = {"name": "encoded_images", "shape": [1], "datatype": "BYTES"}
    header = json.dumps(
        {"inputs": [{**tensor, "parameters": {"binary_data_size": len(element)}}], "outputs": TOP5}
    ).encode()
    return Request(
        f"/v2/models/{model}/infer",
        header + element,
        "application/octet-stream",
        headers=(("Inference-Header-Content-Length", str(len(header))),),
    )


def v2_json_base64(model: str, image: bytes) -> Request:
    """``POST /v2/models/{model}/infer`` in plain JSON: the JPEG base64-encoded, the top 5 classes as JSON
    strings."""
    tensor = {"name": "encoded_images", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(image).decode()]}
    outputs = [{"name": "probabilities", "parameters": {"classification": 5}}]
    return Request(
        f"/v2/models/{model}/infer", json.dumps({"inputs": [tensor], "outputs": outputs}).encode(), "application/json"
    )


PRIMARY = Scenario("/v1/predict", v1_raw_jpeg, (1, 4, 16, 64))
V2_BINARY = Scenario("/v2 binary", v2_binary, (16,), target=0.95)
V2_JSON = Scenario("/v2 JSON + base64", v2_json_base64, (16,))
ALSO: tuple[Scenario, ...] = (V2_BINARY, V2_JSON)
