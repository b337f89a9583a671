"""The serving-performance behaviour with a tiny model: batching changes no answer, warm-up, threads, tuning."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import app.config
import app.engine.model
from app.config import Settings, available_cores, cgroup_cpu_limit
from app.engine.backends.ort import OnnxBackend
from modelspec import read_bundle
from tests.app.conftest import ClientFactory
from tests.app.images import shape_image
from tests.app.wrapped_backend import GatedBackend, wrap_every_backend
from tests.conftest import encode

IMAGES = [
    encode(shape_image(kind, size), fmt)
    for kind in ("circle", "square")
    for size in ((64, 48), (41, 77), (33, 33))
    for fmt in ("JPEG", "PNG")
]


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> list[GatedBackend]:
    """Every backend the registry creates from now on is gated; the list collects them."""
    return wrap_every_backend(monkeypatch, GatedBackend)


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


def test_requests_start_no_threads(client: TestClient) -> None:
    """Serving runs on threads started up front (decode pool, batchers). A route or dependency written as a plain
    ``def`` would run on the framework's thread pool, two thread switches per request, and start a thread here."""
    before = set(threading.enumerate())
    for _ in range(3):
        assert client.post("/v1/predict", content=IMAGES[0], headers={"content-type": "image/jpeg"}).status_code == 200
        assert client.post("/v1/features", files={"file": ("a.png", IMAGES[1])}).status_code == 200
        assert client.get("/v1/models/tiny").status_code == 200
    assert set(threading.enumerate()) - before == set()


def test_n_inference_workers_run_n_batches_at_once(make_client: ClientFactory, gated: list[GatedBackend]) -> None:
    client = make_client(inference_workers=2, batching=False)
    backend = gated[-1]
    backend.most_at_once = 0
    backend.hold = lambda: backend.running == 2  # the first batch waits for a second one to start beside it
    together = post_concurrently(client, "/v1/predict", {"top_k": 3})
    assert backend.most_at_once == 2
    single = make_client()
    alone = post_concurrently(single, "/v1/predict", {"top_k": 3})
    assert [[p["index"] for p in r["predictions"]] for r in together] == [
        [p["index"] for p in r["predictions"]] for r in alone
    ]


@pytest.mark.parametrize(("setting", "stops_after_a_run"), [(False, "1"), (True, "0")])
def test_onnx_spinning_follows_the_setting(tiny_models_dir: Any, setting: bool, stops_after_a_run: str) -> None:
    settings = Settings(intra_op_spinning=setting)
    backend = OnnxBackend(
        read_bundle(tiny_models_dir / "tiny" / "1"), 2, spinning=settings.spinning(), concurrent_threads=1
    )
    for session in backend.sessions:
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"  # within a run, always
        assert options.get_session_config_entry("session.force_spinning_stop") == stops_after_a_run
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


FIRST_REQUESTS = textwrap.dedent(
    """
    import sys
    from fastapi.testclient import TestClient
    from app.config import Settings
    from app.main import create_app

    models_dir, warmup, image = sys.argv[1], sys.argv[2] == "on", open(sys.argv[3], "rb").read()
    settings = Settings(models_dir=models_dir, default_model=None, watch_interval=0, warmup=warmup)
    opened, recording = [], False

    def audit(event, args):
        if recording and event == "open" and str(args[0]).endswith((".py", ".pyc")):
            opened.append(str(args[0]))

    sys.addaudithook(audit)
    with TestClient(create_app(settings)) as client:
        recording = True
        for path in ("/v1/predict", "/v1/features", "/v1/models/tiny/predict", "/v1/models/tiny/features"):
            response = client.post(path, content=image, headers={"content-type": "image/jpeg"})
            assert response.status_code == 200, response.text
        recording = False
    print("\\n".join(opened))
    """
)


def first_requests_open(models_dir: Path, warmup: bool, tmp_path: Path) -> list[str]:
    """The Python files a fresh server process opens while it answers its first requests."""
    image = tmp_path / "shape.jpg"
    image.write_bytes(IMAGES[0])
    result = subprocess.run(
        [sys.executable, "-c", FIRST_REQUESTS, str(models_dir), "on" if warmup else "off", str(image)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_after_warm_up_the_first_requests_read_no_code_from_disk(tiny_models_dir: Path, tmp_path: Path) -> None:
    """Warm-up loads Pillow's decoders and the route sources FastAPI looks up on an endpoint's first request."""
    assert first_requests_open(tiny_models_dir, True, tmp_path) == []
    # The control: without warm-up the first requests do read code (so the check above can fail).
    assert first_requests_open(tiny_models_dir, False, tmp_path)
