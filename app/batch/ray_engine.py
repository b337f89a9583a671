"""The Ray engine: the same job as a Ray Data pipeline, for when one machine is not enough.

    listing (path, file) -> map_batches on an actor pool -> rows back to the driver -> the same output writer

Each actor holds one model (its own ONNX Runtime session, batcher and decode pool: ``app.batch.classifier``, the
local engine's code) and reads and decodes its images itself, with the shared preprocessing: Ray's ``read_images``
decodes with its own code and measured slower than decoding in the workers (ray#37499), and only paths, not image
bytes, then cross the object store. The driver sends the bundle's files through the object store, so workers need
no copy of the models folder; the images must be readable at the same absolute paths on every node (a shared
file system). The driver writes the rows, so the output, its format and ``--resume`` are those of the local engine.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray

from app.batch.arrow import from_table, to_table
from app.batch.classifier import Classifier, RowSink
from app.batch.extras import EngineUnavailableError
from app.batch.inputs import ImagePath
from app.batch.rows import ResultRow, RowOptions
from app.config import Settings
from app.engine.metrics import Metrics
from app.engine.model import load_model
from modelspec import Bundle

logger = logging.getLogger(__name__)

BLOCKS_PER_ACTOR = 4  # listing blocks per actor: enough to balance the actors without tiny tasks
CALL_CHUNKS = 8  # chunks (of the batcher's batch size) per actor call: its pipeline stays full for most of a call


def bundle_files(bundle: Bundle) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(bundle.path.iterdir()) if path.is_file()}


class BundleActor:
    """One model replica: unpacks the bundle locally (hashes checked on load) and classifies a batch per call."""

    def __init__(self, packed: list[Any], settings: dict[str, Any], options: RowOptions, cpus: int) -> None:
        name, version, files = ray.get(packed[0])
        self._folder = tempfile.TemporaryDirectory(prefix="imgclf-bundle-")
        path = Path(self._folder.name) / name / str(version)
        path.mkdir(parents=True)
        for file_name, data in files.items():
            (path / file_name).write_bytes(data)
        # Ray does not pin an actor to its CPUs: size the threads from what the actor was given, not the node.
        sized = Settings(**settings, intra_op_threads=cpus, decode_threads=cpus, inference_workers=cpus, workers=1)
        metrics = Metrics()
        self._options = options
        self._classifier = Classifier(sized, load_model(path, sized, metrics), options, metrics)
        self._loop = asyncio.new_event_loop()

    def __call__(self, batch: pa.Table) -> pa.Table:
        columns = batch.select(["path", "file"]).to_pydict()
        images = [ImagePath(name, Path(file)) for name, file in zip(columns["path"], columns["file"], strict=True)]
        rows: list[ResultRow] = []
        self._loop.run_until_complete(self._classifier.run(images, rows.extend))
        return to_table(rows, self._options.embeddings, self._options.coverage is not None)


class RayEngine:
    name = "ray"

    def __init__(
        self,
        settings: Settings,
        bundle: Bundle,
        options: RowOptions,
        *,
        address: str | None = None,
        actors: int | None = None,
        cpus_per_actor: int = 1,
        progress_bars: bool = False,
    ) -> None:
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except ConnectionError as exc:
                raise EngineUnavailableError(
                    f"cannot reach the Ray cluster at {address} ({exc}); start one with 'ray start --head' and pass "
                    "the address it prints, or leave --address out to start Ray on this machine"
                ) from None
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress_bars
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        self.actors = actors or max(1, cluster_cpus // cpus_per_actor)
        self.cpus_per_actor = cpus_per_actor
        self._settings = settings
        self._options = options
        self._packed = [ray.put((bundle.name, bundle.version, bundle_files(bundle)))]

    @property
    def description(self) -> str:
        return (
            f"ray engine, {self.actors} actors x {self.cpus_per_actor} CPU, precision "
            f"{self._settings.precision} (each actor chooses as the service does)"
        )

    def run(self, images: Sequence[ImagePath], emit: RowSink) -> None:
        if not images:
            return
        listing = pa.table({"path": [i.name for i in images], "file": [str(i.file) for i in images]})
        blocks = max(1, min(len(images), self.actors * BLOCKS_PER_ACTOR))
        size = math.ceil(len(images) / blocks)
        dataset = ray.data.from_arrow([listing.slice(start, size) for start in range(0, len(images), size)])
        settings = self._settings.model_dump(
            exclude={"intra_op_threads", "decode_threads", "inference_workers", "workers", "api_key"}
        )
        results = dataset.map_batches(
            BundleActor,
            fn_constructor_args=(self._packed, settings, self._options, self.cpus_per_actor),
            batch_size=self._settings.max_batch_size * CALL_CHUNKS,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            num_cpus=self.cpus_per_actor,
        )
        for table in results.iter_batches(batch_size=None, batch_format="pyarrow"):
            emit(from_table(table))

    def close(self) -> None:
        if self._started_ray:
            ray.shutdown()
