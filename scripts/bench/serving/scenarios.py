"""Load scenarios: what the clients send to the service (a request builder) and at how many clients.

``PRIMARY`` is the one the section's main table, the targets and the paired check are about; each scenario in
``ALSO`` runs beside it on the same service (batching on) and gets a row per client count under "Other load
scenarios". A new protocol, endpoint or body is a builder and a ``Scenario`` added to ``ALSO``.
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
    """``POST /v1/predict`` (the default model, which the benchmark sets to ``model``) with a raw JPEG body."""
    return Request("/v1/predict", image, "image/jpeg")


PRIMARY = Scenario("/v1/predict", v1_raw_jpeg, (1, 4, 16, 64))
ALSO: tuple[Scenario, ...] = ()
