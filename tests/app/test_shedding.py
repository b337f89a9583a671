"""Load shedding through the service: a full queue or a request that cannot start in time gets a 503 with
Retry-After at once, and the work of a client that went away is dropped before decoding and inference."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.engine.admission import Admission
from app.engine.backends import Backend, Batch, Outputs
from app.engine.inference import ClientDisconnectedError, Upload
from tests.app.conftest import ClientFactory
from tests.app.images import JPEG
from tests.app.live_server import live_server
from tests.app.v2_helpers import b64
from tests.app.wrapped_backend import WrappedBackend, wrap_every_backend

# Two slots (one decode thread + one inference worker on batches of one), so a held backend fills them with two.
TINY_SERVICE = {"max_batch_size": 1, "decode_threads": 1, "inference_workers": 1}


class HeldBackend(WrappedBackend):
    """A real backend whose batches wait while ``open`` is clear; counts the images it ran."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.open = threading.Event()
        self.open.set()
        self.images = 0

    def run(self, batch: Batch) -> Outputs:
        self.open.wait(30)
        self.images += len(batch)
        return self.inner.run(batch)

    def close(self) -> None:
        self.open.set()
        self.inner.close()


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[HeldBackend]]:
    """Every backend the app creates is a ``HeldBackend``; the list holds them."""
    created = wrap_every_backend(monkeypatch, HeldBackend)
    yield created
    for backend in created:
        backend.open.set()


def admission_of(application: FastAPI) -> Admission:
    admission: Admission = application.state.services.registry.get(None).admission
    return admission


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def post(client: TestClient, path: str = "/v1/predict") -> int:
    return client.post(path, content=JPEG, headers={"content-type": "image/jpeg"}).status_code


def fill(client: TestClient, count: int) -> tuple[list[threading.Thread], list[int]]:
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(post(client))) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, statuses


@contextlib.contextmanager
def slots_taken(client: TestClient, backend: HeldBackend, served: int, waiting: int = 0) -> Iterator[list[int]]:
    """For the block, ``served`` predictions held in the backend and ``waiting`` more queued for a slot; then the
    backend lets them through, and the list holds their statuses once all are answered."""
    admission = admission_of(client.app)  # type: ignore[arg-type]
    backend.open.clear()
    threads, statuses = fill(client, served + waiting)
    try:
        wait_for(
            lambda: admission.in_service == served and admission.waiting == waiting,
            f"{served} are served and {waiting} wait",
        )
        yield statuses
    finally:
        backend.open.set()
        for thread in threads:
            thread.join(30)


def test_a_full_queue_gets_a_503_with_retry_after_at_once(make_client: ClientFactory, held: list[HeldBackend]) -> None:
    client = make_client(**TINY_SERVICE, max_queue=1, queue_timeout=10)
    [backend] = held
    with slots_taken(client, backend, served=2, waiting=1) as statuses:  # the queue is full
        response = client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "10"
        assert response.json()["error"]["code"] == "overloaded"
    assert statuses == [200, 200, 200]  # the ones let in were all answered
    assert 'imgclf_errors_total{code="overloaded"} 1.0' in client.get("/metrics").text


def test_a_request_that_cannot_start_in_time_gets_a_503(make_client: ClientFactory, held: list[HeldBackend]) -> None:
    client = make_client(**TINY_SERVICE, max_queue=8, queue_timeout=0.2)
    [backend] = held
    with slots_taken(client, backend, served=2) as statuses:
        response = client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"})
        assert not backend.open.is_set()  # answered while the two before it are still held: it did not wait for them
        assert response.status_code == 503 and response.json()["error"]["code"] == "overloaded"
        assert response.headers["retry-after"] == "1"
    assert statuses == [200, 200]


def test_the_work_of_a_client_that_went_away_is_dropped(models_dir: Path, held: list[HeldBackend]) -> None:
    with live_server(models_dir, **TINY_SERVICE, max_queue=8, queue_timeout=30) as live:
        [backend] = held
        admission = admission_of(live.app)
        backend.open.clear()
        ran_before = backend.images
        statuses: list[int] = []

        def predict() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
            connection.request("POST", "/v1/predict", body=JPEG, headers={"Content-Type": "image/jpeg"})
            statuses.append(connection.getresponse().status)
            connection.close()

        threads = [threading.Thread(target=predict) for _ in range(2)]
        for thread in threads:
            thread.start()
        wait_for(lambda: admission.in_service == 2, "both slots are taken")
        with live.connect() as sock:  # a third client sends its request, waits, and gives up
            sock.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(JPEG), JPEG)
            )
            wait_for(lambda: admission.waiting == 1, "the third request waits")
        backend.open.set()
        for thread in threads:
            thread.join(30)
        wait_for(lambda: admission.in_service == 0 and admission.waiting == 0, "every request is done")
        assert statuses == [200, 200]
        assert backend.images - ran_before == 2  # the third image never reached the model...
        assert live.metric_lines("imgclf_decode_seconds_count") == ["imgclf_decode_seconds_count 2.0"]  # ...nor decode
        assert live.metric_lines('imgclf_errors_total{code="client_disconnected"}') == [
            'imgclf_errors_total{code="client_disconnected"} 1.0'
        ]


def test_only_requests_a_model_can_take_are_shed(make_client: ClientFactory, held: list[HeldBackend]) -> None:
    client = make_client(**TINY_SERVICE, max_queue=0, queue_timeout=0)
    [backend] = held
    with slots_taken(client, backend, served=2) as statuses:
        assert post(client, "/v1/models/tiny/predict") == 503
        assert post(client, "/v1/models/nope/predict") == 404  # not shed: the route says what is wrong
        assert post(client, "/v1/predict?version=abc") == 422
        assert post(client, "/v1/predict?version=9") == 404
    assert statuses == [200, 200]
    metrics = client.get("/metrics").text
    assert 'imgclf_requests_total{method="POST",route="/v1/models/{name}/predict",status="503"} 1.0' in metrics


def test_v2_inference_is_shed_in_the_protocols_shape(make_client: ClientFactory, held: list[HeldBackend]) -> None:
    client = make_client(**TINY_SERVICE, max_queue=0, queue_timeout=0)
    [backend] = held
    request = {"inputs": [{"name": "encoded_images", "datatype": "BYTES", "shape": [1], "data": [b64(JPEG)]}]}
    with slots_taken(client, backend, served=2) as statuses:
        response = client.post("/v2/models/tiny/versions/1/infer", json=request)
        assert response.status_code == 503 and "retry-after" in response.headers
        assert response.json() == {"error": response.json()["error"]} and "overloaded" in response.json()["error"]
        assert client.post("/v2/models/nope/infer", json=request).status_code == 404  # not shed
    assert statuses == [200, 200]
    assert client.post("/v2/models/tiny/infer", json=request).status_code == 200
    metrics = client.get("/metrics").text
    assert 'route="/v2/models/{name}/versions/{version}/infer",status="503"} 1.0' in metrics


def test_the_pipeline_drops_the_work_of_a_client_that_is_gone(make_client: ClientFactory) -> None:
    """Other entry points (a protocol, a batch command) call the pipeline with a probe of their own."""
    client = make_client()
    services = client.app.state.services  # type: ignore[attr-defined]
    probes: list[str] = []

    async def gone_after_decoding() -> bool:
        probes.append("probe")
        return len(probes) > 1  # there before decoding, gone before inference

    with pytest.raises(ClientDisconnectedError, match="before inference"):
        asyncio.run(
            services.pipeline.run(
                lambda: services.registry.get(None), [Upload(None, JPEG)], disconnected=gone_after_decoding
            )
        )
    metrics = client.get("/metrics").text
    assert "imgclf_decode_seconds_count 1.0" in metrics  # decoded once...
    assert 'imgclf_images_total{model="tiny"} 0.0' in metrics  # ...but never run through the model


V2_REQUEST = {"inputs": [{"name": "encoded_images", "datatype": "BYTES", "shape": [1], "data": [b64(JPEG)]}]}
SHED_ROUTES = {
    "/v1/predict": "/v1/predict",
    "/v1/models/tiny/predict": "/v1/models/{name}/predict",
    "/v1/features": "/v1/features",
    "/v1/models/tiny/features": "/v1/models/{name}/features",
    "/v2/models/tiny/infer": "/v2/models/{name}/infer",
    "/v2/models/tiny/versions/1/infer": "/v2/models/{name}/versions/{version}/infer",
}


def post_to(client: TestClient, path: str) -> httpx.Response:
    if path.startswith("/v2/"):
        return client.post(path, json=V2_REQUEST)
    return client.post(path, content=JPEG, headers={"content-type": "image/jpeg"})


@pytest.mark.parametrize(("path", "template"), list(SHED_ROUTES.items()), ids=list(SHED_ROUTES))
def test_every_inference_route_is_shed_at_the_edge(
    make_client: ClientFactory, held: list[HeldBackend], path: str, template: str
) -> None:
    client = make_client(**TINY_SERVICE, max_queue=0, queue_timeout=0)
    [backend] = held
    with slots_taken(client, backend, served=2) as statuses:
        response = post_to(client, path)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        error = response.json()["error"]
        if path.startswith("/v2/"):
            assert isinstance(error, str) and "is overloaded" in error  # the protocol's {"error": "..."}
        else:
            assert error["code"] == "overloaded"
    assert statuses == [200, 200]
    assert post_to(client, path).status_code == 200
    metrics = client.get("/metrics").text
    assert f'imgclf_requests_total{{method="POST",route="{template}",status="503"}} 1.0' in metrics
    assert f'imgclf_requests_total{{method="POST",route="{template}",status="200"}}' in metrics


@pytest.mark.parametrize("path", list(SHED_ROUTES))
def test_a_shed_request_looks_its_model_up_once(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    client = make_client()
    registry = client.app.state.services.registry  # type: ignore[attr-defined]
    lookups: list[tuple[str | None, int | None]] = []
    real_get = registry.get

    def counting_get(name: str | None, version: int | None = None) -> object:
        lookups.append((name, version))
        return real_get(name, version)

    monkeypatch.setattr(registry, "get", counting_get)
    assert post_to(client, path).status_code == 200
    assert len(lookups) == 1, lookups
