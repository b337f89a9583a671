"""Building and reading v2 (Open Inference Protocol) bodies by hand, as the protocol documents spell them out."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import numpy as np


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bytes_elements(*elements: bytes) -> bytes:
    """A BYTES tensor's binary data: each element after its 4-byte little-endian length."""
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def images_input(*images: bytes, shape: list[int] | None = None) -> dict[str, Any]:
    """The encoded-images input in plain JSON (base64 strings)."""
    return {
        "name": "encoded_images",
        "datatype": "BYTES",
        "shape": shape or [len(images)],
        "data": [b64(image) for image in images],
    }


def binary_body(document: dict[str, Any], *chunks: bytes) -> dict[str, Any]:
    """httpx arguments for a JSON document followed by binary data (the binary tensor data extension)."""
    header = json.dumps(document).encode()
    return {
        "content": header + b"".join(chunks),
        "headers": {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    }


def binary_images_request(*images: bytes, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data = bytes_elements(*images)
    document: dict[str, Any] = {
        "inputs": [
            {
                "name": "encoded_images",
                "datatype": "BYTES",
                "shape": [len(images)],
                "parameters": {"binary_data_size": len(data)},
            }
        ]
    }
    if outputs is None:
        document["parameters"] = {"binary_data_output": True}
    else:
        document["outputs"] = outputs
    return binary_body(document, data)


def read_bytes_elements(raw: bytes) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        elements.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return elements


def outputs_of(response: httpx.Response) -> dict[str, Any]:
    """Each output as an array (FP32) or a list of strings (BYTES), shaped, from a JSON or a binary response."""
    assert response.status_code == 200, response.text
    header_length = response.headers.get("inference-header-content-length")
    body = response.content
    document = json.loads(body[: int(header_length)] if header_length else body)
    offset = int(header_length or 0)
    result: dict[str, Any] = {}
    for output in document["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            values: Any = output["data"]
        else:
            raw = body[offset : offset + size]
            offset += size
            values = (
                [v.decode() for v in read_bytes_elements(raw)]
                if output["datatype"] == "BYTES"
                else np.frombuffer(raw, dtype="<f4")
            )
        if output["datatype"] == "BYTES":
            rows, k = output["shape"]
            result[output["name"]] = [list(values[i * k : (i + 1) * k]) for i in range(rows)]
        else:
            result[output["name"]] = np.asarray(values, dtype=np.float32).reshape(output["shape"])
    assert offset == len(body) or header_length is None, "binary data left over after the outputs"
    return result


def parse_classes(strings: list[str]) -> list[tuple[float, int, str]]:
    """``"probability:index:label"`` strings as tuples."""
    parsed = []
    for text in strings:
        score, index, label = text.split(":", 2)
        parsed.append((float(score), int(index), label))
    return parsed
