"""Model assembly and the pipeline without HTTP: what another entry point (a batch command, a tensor protocol) gets."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from app.api.encode import encode_predictions
from app.config import Settings
from app.engine.backends import Backend, Batch, Outputs, create_backend
from app.engine.inference import Inference, InferencePipeline, InvalidInputError, Upload
from app.engine.metrics import Metrics
from app.engine.model import LoadedModel, load_model
from modelspec import SPEC_FILE, Bundle, BundleError
from modelspec.decode import UnsupportedImageFormatError, load_input
from tests.app.conftest import settings_for
from tests.app.images import JPEG
from tests.app.wrapped_backend import WrappedBackend


class RecordingBackend(WrappedBackend):
    """Records the batches it runs, its warm-ups, and whether it was closed."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.sizes: list[int] = []
        self.warm_ups: list[tuple[tuple[int, int, int], int]] = []
        self.closed = False

    def run(self, batch: Batch) -> Outputs:
        self.sizes.append(len(batch))
        return self.inner.run(batch)

    def warm_up(self, image_shape: tuple[int, int, int], max_batch_size: int) -> None:
        self.warm_ups.append((image_shape, max_batch_size))
        self.inner.warm_up(image_shape, max_batch_size)

    def close(self) -> None:
        self.closed = True
        self.inner.close()


def recording(created: list[RecordingBackend]) -> Callable[[Settings, Bundle], Backend]:
    def factory(settings: Settings, bundle: Bundle) -> Backend:
        created.append(RecordingBackend(create_backend(settings, bundle)))
        return created[-1]

    return factory


@pytest.fixture
def tiny(tiny_models_dir: Path) -> Iterator[LoadedModel]:
    model = load_model(tiny_models_dir / "tiny" / "1", settings_for(tiny_models_dir), Metrics())
    yield model
    model.close()


@pytest.mark.parametrize(("backend", "warmup"), [("onnx", True), ("onnx", False), ("torch", True)])
def test_a_model_is_checked_and_warmed_up_before_it_serves(tiny_models_dir: Path, backend: str, warmup: bool) -> None:
    created: list[RecordingBackend] = []
    settings = settings_for(tiny_models_dir, backend=backend, warmup=warmup, max_batch_size=8)
    model = load_model(tiny_models_dir / "tiny" / "1", settings, Metrics(), recording(created))
    model.close()
    assert created[0].name == backend
    assert created[0].sizes == [1]  # one image, to check the outputs against model.json
    assert created[0].warm_ups == ([((3, 32, 32), 8)] if warmup else [])  # the backend's own warm-up ran


def test_a_network_that_breaks_its_model_json_is_refused(tiny_models_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "tiny" / "1"
    shutil.copytree(tiny_models_dir / "tiny" / "1", path)
    spec = json.loads((path / SPEC_FILE).read_text())
    spec.update(num_classes=4, labels=[*spec["labels"], "star"])  # the network still has 3 outputs
    (path / SPEC_FILE).write_text(json.dumps(spec))
    created: list[RecordingBackend] = []
    with pytest.raises(BundleError, match="promises 4 classes"):
        load_model(path, settings_for(tmp_path), Metrics(), recording(created))
    assert created[0].closed  # nothing left running


def test_the_pipeline_takes_encoded_images_and_preprocessed_arrays_alike(tiny: LoadedModel) -> None:
    pipeline = InferencePipeline(settings_for(Path("unused")), Metrics())
    array = load_input(JPEG, tiny.spec.preprocessing)
    wrong = np.zeros((3, 8, 8), dtype=np.float32)

    async def run() -> tuple[Inference, Inference]:
        from_bytes = await pipeline.run(lambda: tiny, [Upload("a.jpg", JPEG), Upload("b.txt", b"not an image")])
        return from_bytes, await pipeline.run(lambda: tiny, [array, wrong])

    try:
        from_bytes, from_arrays = asyncio.run(run())
    finally:
        pipeline.close()
    (image, text), (same, misfit) = from_bytes.outcomes, from_arrays.outcomes
    assert image.logits is not None and same.logits is not None
    np.testing.assert_array_equal(image.logits, same.logits)
    np.testing.assert_array_equal(image.embedding, same.embedding)
    assert isinstance(text.error, UnsupportedImageFormatError)
    assert isinstance(misfit.error, InvalidInputError) and "[3, 32, 32]" in str(misfit.error)


def test_the_encode_stage_answers_like_the_route(tiny: LoadedModel) -> None:
    pipeline = InferencePipeline(settings_for(Path("unused")), Metrics())
    try:
        inference = asyncio.run(pipeline.run(lambda: tiny, [Upload("a.jpg", JPEG)]))
    finally:
        pipeline.close()
    [result] = encode_predictions(inference, 2).model_dump(exclude_unset=True)["results"]
    assert result["file"] == "a.jpg" and "error" not in result
    assert [p["label"] for p in result["predictions"]] == [tiny.spec.labels[p["index"]] for p in result["predictions"]]
    assert result["predictions"][0]["score"] >= result["predictions"][1]["score"]
