"""Hot reload: new versions are served, broken ones refused while the old keeps serving, swaps drop nothing."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.engine.backends import Batch, Outputs
from modelspec import SPEC_FILE, WEIGHTS_FILE
from tests.app.conftest import ClientFactory
from tests.app.images import JPEG
from tests.app.wrapped_backend import WrappedBackend, wrap_every_backend
from tests.conftest import export_tiny

KEY = {"X-API-Key": "k"}


def predict(client: TestClient, **params: object) -> dict[str, object]:
    response = client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"}, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def served_version(client: TestClient) -> int:
    model = predict(client)["model"]
    assert isinstance(model, dict)
    return int(model["version"])


def test_new_version_is_served_after_reload_and_the_old_stays_addressable(
    make_client: ClientFactory, models_dir: Path
) -> None:
    client = make_client(api_key="k")
    before = predict(client)
    export_tiny(models_dir, seed=1)
    report = client.post("/v1/admin/reload", headers=KEY).json()
    assert report["loaded"] == [{"name": "tiny", "version": 2}]
    after = predict(client)
    assert after["model"] == {"name": "tiny", "version": 2}
    assert after["results"] != before["results"]  # other weights, other scores
    assert predict(client, version=1)["results"] == before["results"]
    assert client.get("/v1/models").json()["models"][0]["loaded_versions"] == [1, 2]


def test_watcher_picks_up_a_new_version_without_being_asked(make_client: ClientFactory, models_dir: Path) -> None:
    client = make_client(watch_interval=0.1)
    assert served_version(client) == 1
    export_tiny(models_dir, seed=2)
    deadline = time.monotonic() + 20
    while served_version(client) != 2:
        assert time.monotonic() < deadline, "the watcher did not load version 2"
        time.sleep(0.1)


def test_corrupt_version_is_refused_and_reported_while_the_old_keeps_serving(
    make_client: ClientFactory, models_dir: Path
) -> None:
    client = make_client(api_key="k", reload_settle_seconds=0)  # files just written count as settled
    before = predict(client)
    broken = models_dir / "tiny" / "2"
    shutil.copytree(models_dir / "tiny" / "1", broken)
    spec = (broken / SPEC_FILE).read_text().replace('"version": 1', '"version": 2')
    (broken / SPEC_FILE).write_text(spec)
    (broken / WEIGHTS_FILE).write_bytes(b"garbage")
    report = client.post("/v1/admin/reload", headers=KEY).json()
    assert report["loaded"] == []
    [failure] = report["failed"]
    assert failure["version"] == 2 and "model.safetensors does not match its sha256" in failure["error"]
    assert predict(client) == before
    detail = client.get("/v1/models/tiny").json()
    assert detail["version"] == 1
    assert detail["available_versions"] == [1, 2]
    assert [f["version"] for f in detail["failed_versions"]] == [2]
    assert "imgclf_model_load_failures_total 1.0" in client.get("/metrics").text


def test_half_copied_bundle_is_refused_then_loaded_once_complete(
    make_client: ClientFactory, models_dir: Path, tmp_path: Path
) -> None:
    client = make_client(api_key="k", reload_settle_seconds=0)  # a copy that stopped: refused at once
    staging = tmp_path / "staging"
    complete = export_tiny(staging, seed=3)  # version 1 of a second models folder
    target = models_dir / "tiny" / "2"
    target.mkdir()
    shutil.copy(complete.path / WEIGHTS_FILE, target)  # the copy is under way: weights only so far
    first = client.post("/v1/admin/reload", headers=KEY).json()
    assert first["failed"][0]["version"] == 2 and "missing" in first["failed"][0]["error"]
    assert served_version(client) == 1
    for item in complete.path.iterdir():  # the copy finishes
        shutil.copy(item, target)
    spec = (target / SPEC_FILE).read_text().replace('"version": 1', '"version": 2')
    (target / SPEC_FILE).write_text(spec)
    second = client.post("/v1/admin/reload", headers=KEY).json()
    assert second["loaded"] == [{"name": "tiny", "version": 2}]
    assert served_version(client) == 2
    assert client.get("/v1/models/tiny").json()["failed_versions"] == []


def test_a_copy_in_progress_is_waiting_for_files_not_a_failure(
    make_client: ClientFactory, models_dir: Path, tmp_path: Path
) -> None:
    client = make_client(api_key="k", reload_settle_seconds=60)
    complete = export_tiny(tmp_path / "staging", seed=3)
    target = models_dir / "tiny" / "2"
    target.mkdir()
    shutil.copy(complete.path / WEIGHTS_FILE, target)  # the copy is under way
    for _ in range(3):  # the watcher scans again and again while the copy goes on
        report = client.post("/v1/admin/reload", headers=KEY).json()
        assert report["waiting"] == [{"name": "tiny", "version": 2}] and report["failed"] == []
    assert client.get("/v1/models/tiny").json()["failed_versions"] == []
    assert "imgclf_model_load_failures_total 0.0" in client.get("/metrics").text
    assert served_version(client) == 1
    for item in complete.path.iterdir():  # the copy finishes
        shutil.copy(item, target)
    (target / SPEC_FILE).write_text((target / SPEC_FILE).read_text().replace('"version": 1', '"version": 2'))
    report = client.post("/v1/admin/reload", headers=KEY).json()
    assert report["loaded"] == [{"name": "tiny", "version": 2}] and report["waiting"] == []
    assert served_version(client) == 2


def test_a_copy_that_stopped_half_way_becomes_a_failure_once_its_files_settle(
    make_client: ClientFactory, models_dir: Path, tmp_path: Path
) -> None:
    client = make_client(api_key="k", reload_settle_seconds=0.5)
    complete = export_tiny(tmp_path / "staging", seed=3)
    target = models_dir / "tiny" / "2"
    target.mkdir()
    shutil.copy(complete.path / WEIGHTS_FILE, target)
    assert client.post("/v1/admin/reload", headers=KEY).json()["waiting"] == [{"name": "tiny", "version": 2}]
    time.sleep(0.6)  # nothing changes any more: the copy was interrupted
    report = client.post("/v1/admin/reload", headers=KEY).json()
    assert report["waiting"] == [] and [f["version"] for f in report["failed"]] == [2]
    assert [f["version"] for f in client.get("/v1/models/tiny").json()["failed_versions"]] == [2]
    assert "imgclf_model_load_failures_total 1.0" in client.get("/metrics").text


def test_removing_the_newest_version_rolls_back(make_client: ClientFactory, models_dir: Path) -> None:
    client = make_client(api_key="k")
    export_tiny(models_dir, seed=4)
    client.post("/v1/admin/reload", headers=KEY)
    assert served_version(client) == 2
    shutil.rmtree(models_dir / "tiny" / "2")
    report = client.post("/v1/admin/reload", headers=KEY).json()
    assert report["unloaded"] == [{"name": "tiny", "version": 2}]
    assert served_version(client) == 1


def test_only_the_newest_versions_stay_loaded(make_client: ClientFactory, models_dir: Path) -> None:
    client = make_client(api_key="k", versions_loaded=2)
    for seed in (5, 6):
        export_tiny(models_dir, seed=seed)
    client.post("/v1/admin/reload", headers=KEY)
    summary = client.get("/v1/models").json()["models"][0]
    assert summary["loaded_versions"] == [2, 3]
    assert summary["available_versions"] == [1, 2, 3]


class SlowBackend(WrappedBackend):
    """Makes each batch take a while, so requests are surely in flight during swaps."""

    def run(self, batch: Batch) -> Outputs:
        time.sleep(0.01)
        return self.inner.run(batch)


def test_requests_in_flight_during_swaps_all_succeed(
    make_client: ClientFactory, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrap_every_backend(monkeypatch, SlowBackend)
    client = make_client(api_key="k", versions_loaded=1)
    statuses: list[int] = []
    versions: set[int] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            response = client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"})
            statuses.append(response.status_code)
            if response.status_code == 200:
                versions.add(response.json()["model"]["version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for seed in range(7, 10):  # three swaps; with one version loaded, each retires the previous one
            time.sleep(0.15)
            export_tiny(models_dir, seed=seed)
            assert client.post("/v1/admin/reload", headers=KEY).json()["unloaded"]
        time.sleep(0.15)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert len(statuses) > 20
    assert set(statuses) == {200}
    assert versions == {1, 2, 3, 4}
