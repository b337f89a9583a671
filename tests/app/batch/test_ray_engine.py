"""``--engine ray`` on a local Ray (2 CPUs, started by the test): the same rows as the local engine."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.batch.__main__ import main
from tests.app.batch.conftest import make_images, read_rows

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def by_path(output: Path) -> dict[str, dict[str, object]]:
    return {str(row["path"]): row for row in read_rows(output)}


@pytest.mark.slow
def test_ray_engine_writes_the_rows_of_the_local_engine_and_resumes_its_runs(
    local_ray: None, tmp_path: Path, batch_env: object
) -> None:
    images = tmp_path / "images"
    make_images(images, 300)
    options = ["--top-k", "3", "--embeddings", "--quiet"]
    assert main([str(images), "-o", str(tmp_path / "local.parquet"), *options]) == 0
    # Half done by the local engine, the rest by the Ray engine: one output, each image once.
    output = tmp_path / "ray.parquet"
    assert main([str(images / "set0" / "*.jpg"), "-o", str(output), *options]) == 0
    assert main([str(images), "-o", str(output), *options, "--engine", "ray", "--resume"]) == 0

    local, remote = by_path(tmp_path / "local.parquet"), by_path(output)
    assert len(read_rows(output)) == len(remote) == len(local) == 303
    assert sorted(remote) == sorted(local)
    for path, row in local.items():
        other = remote[path]
        assert (other["model"], other["labels"], other["indices"], other["error_code"]) == (
            row["model"], row["labels"], row["indices"], row["error_code"]
        )  # fmt: skip
        assert other["scores"] == pytest.approx(row["scores"], rel=1e-6, abs=1e-7)
        assert (other["embedding"] is None) == (row["embedding"] is None)
        if row["embedding"] is not None:
            assert other["embedding"] == pytest.approx(row["embedding"], rel=1e-5, abs=1e-6)
