"""The serving-performance behaviour with a tiny model: batching changes no answer, warm-up, threads, tuning."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import app.config
import app.model
from app.backends import Backend, Batch, Outputs, create_backend
from app.backends.ort import OnnxBackend
from app.config import Settings, available_cores, cgroup_cpu_limit
from modelspec import Bundle, read_bundle
from tests.app.conftest import ClientFactory
from tests.app.test_api import shape_image
from tests.conftest import encode

IMAGES = [
    encode(shape_image(kind, size), fmt)
    for kind in ("circle", "square")
    for size in ((64, 48), (41, 77), (33, 33))
    for fmt in ("JPEG", "PNG")
]


class GatedBackend:
    """Wraps a real backend; once ``hold`` is set, its next batch waits until ``hold()`` is true, so requests pile
    up in the batcher's queue behind it. Records the size of every batch."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.device = inner.device
        self.hold: Callable[[], bool] | None = None
        self.sizes: list[int] = []

    def run(self, batch: Batch) -> Outputs:
        hold, self.hold = self.hold, None
        if hold is not None:
            deadline = time.monotonic() + 10  # a safety net for a stuck test, not a timing assertion
            while not hold() and time.monotonic() < deadline:
                time.sleep(0.002)
        self.sizes.append(len(batch))
        return self.inner.run(batch)

    @property
    def run_alone(self) -> Callable[[Batch], Outputs]:
        return self.run  # every batch goes through the gate

    def warm_up(self, image_shape: tuple[int, int, int], max_batch_size: int) -> None:
        self.inner.warm_up(image_shape, max_batch_size)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> list[GatedBackend]:
    """Every backend the registry creates from now on is gated; the list collects them."""
    created: list[GatedBackend] = []

    def factory(settings: Settings, bundle: Bundle) -> Backend:
        backend = GatedBackend(create_backend(settings, bundle))
        created.append(backend)
        return backend

    monkeypatch.setattr(app.model, "create_backend", factory)
    return created


def post_concurrently(client: TestClient, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    def post(data: bytes) -> dict[str, Any]:
        response = client.post(path, content=data, headers={"content-type": "image/jpeg"}, params=params)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["results"][0]
        return result

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, IMAGES * 3))


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/features"])
def test_results_are_identical_with_batching_on_and_off(
    make_client: ClientFactory, gated: list[GatedBackend], path: str
) -> None:
    params: dict[str, Any] = {"top_k": 3} if path == "/v1/predict" else {}
    answers = {}
    for batching in (False, True):
        client = make_client(batching=batching, max_batch_size=8)
        backend = gated[-1]
        batcher = client.app.state.services.registry.get(None).batcher  # type: ignore[attr-defined]
        backend.sizes.clear()
        backend.hold = lambda batcher=batcher: batcher.pending >= 4
        answers[batching] = post_concurrently(client, path, params)
        if batching:
            assert max(backend.sizes) >= 4  # the queued requests really were combined
        else:
            assert set(backend.sizes) == {1}
    for alone, combined in zip(answers[False], answers[True], strict=True):
        if path == "/v1/predict":
            assert [p["index"] for p in alone["predictions"]] == [p["index"] for p in combined["predictions"]]
            np.testing.assert_allclose(
                [p["score"] for p in alone["predictions"]], [p["score"] for p in combined["predictions"]], rtol=1e-6
            )
        else:
            np.testing.assert_allclose(alone["embedding"], combined["embedding"], rtol=1e-6, atol=1e-7)


def test_warm_up_starts_the_decode_threads_and_counts_no_traffic(make_client: ClientFactory) -> None:
    before = set(threading.enumerate())
    client = make_client(decode_threads=2)
    started = set(threading.enumerate()) - before
    assert sum(thread.name.startswith("decode") for thread in started) == 2
    text = client.get("/metrics").text
    assert 'imgclf_batch_size_count{model="tiny"} 0.0' in text
    assert "imgclf_decode_seconds_count 0.0" in text


def test_without_warm_up_the_decode_threads_start_on_demand(make_client: ClientFactory) -> None:
    before = set(threading.enumerate())
    make_client(decode_threads=2, warmup=False)
    started = set(threading.enumerate()) - before
    assert not any(thread.name.startswith("decode") for thread in started)


def test_requests_do_not_hop_through_the_framework_thread_pool(client: TestClient) -> None:
    """Sync dependencies would run on AnyIO's worker threads: two thread switches per request for nothing."""
    for _ in range(3):
        assert client.post("/v1/predict", content=IMAGES[0], headers={"content-type": "image/jpeg"}).status_code == 200
        assert client.get("/v1/models/tiny").status_code == 200
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("AnyIO worker")]


def test_two_inference_workers_answer_every_request(make_client: ClientFactory) -> None:
    before = set(threading.enumerate())
    client = make_client(inference_workers=2)
    assert sum(thread.name.startswith("batcher-tiny-1-") for thread in set(threading.enumerate()) - before) == 2
    single = make_client()
    together = post_concurrently(client, "/v1/predict", {"top_k": 3})
    alone = post_concurrently(single, "/v1/predict", {"top_k": 3})
    assert [[p["index"] for p in r["predictions"]] for r in together] == [
        [p["index"] for p in r["predictions"]] for r in alone
    ]


@pytest.mark.parametrize("spinning", [False, True])
def test_onnx_spinning_follows_the_setting(tiny_models_dir: Any, spinning: bool) -> None:
    backend = OnnxBackend(read_bundle(tiny_models_dir / "tiny" / "1"), 2, spinning=spinning, concurrent_threads=1)
    for session in backend.sessions:
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spinning else "0")
        assert options.get_session_config_entry("session.use_env_allocators") == "1"  # one arena for all
    backend.close()


def test_onnx_lone_and_concurrent_sessions_agree(tiny_models_dir: Any) -> None:
    backend = OnnxBackend(read_bundle(tiny_models_dir / "tiny" / "1"), 2, concurrent_threads=1)
    alone, concurrent = backend.sessions
    assert alone.get_session_options().intra_op_num_threads == 2
    assert concurrent.get_session_options().intra_op_num_threads == 1
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    for mine, theirs in zip(backend.run(batch), backend.run_alone(batch), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    single = OnnxBackend(read_bundle(tiny_models_dir / "tiny" / "1"), 1, concurrent_threads=1)
    assert len(single.sessions) == 1 and single.run_alone == single.run


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_container_cpu_quota_is_read_from_cgroups(tmp_path: Path, files: dict[str, str], cores: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(tmp_path) == cores


def test_threads_are_sized_from_the_cpu_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.config, "cgroup_cpu_limit", lambda: 1.5)
    monkeypatch.setattr(app.config.os, "sched_getaffinity", lambda pid: set(range(64)))
    settings = Settings()
    assert available_cores() == 2
    assert settings.resolved_intra_op_threads() == settings.resolved_decode_threads() == 2
    assert settings.resolved_inference_workers("onnx") == 2 and settings.resolved_inference_workers("torch") == 1
    assert Settings(workers=2).resolved_decode_threads() == 1


def test_warm_up_reads_the_route_sources_fastapi_looks_up_on_a_first_request(make_client: ClientFactory) -> None:
    import inspect
    import linecache

    from app.api.routes.inference import predict_default

    linecache.clearcache()
    make_client()
    assert inspect.getsourcefile(predict_default) in linecache.cache
