"""Load scenarios: what the clients send to the service (a request builder) and at how many clients.

A new one (another protocol, endpoint or body) is a builder here and a line where ``__main__`` runs scenarios.
"""

from __future__ import annotations

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

    def request(self, model: str, image: bytes) -> Request:
        return self.build(model, image)


def v1_raw_jpeg(model: str, image: bytes) -> Request:
    """``POST /v1/predict`` (the default model) with the image as a raw ``image/jpeg`` body."""
    return Request("/v1/predict", image, "image/jpeg")


V1_PREDICT = Scenario("/v1/predict, raw image/jpeg body", v1_raw_jpeg, (1, 4, 16, 64))
