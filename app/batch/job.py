"""One batch run from start to end: list the inputs, pick the model, open (or continue) the output, run an engine,
write the rows as they come, and summarise."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from app.batch.classifier import RowSink
from app.batch.extras import EngineUnavailableError, available
from app.batch.inputs import ImagePath, scan_inputs, skipped_text
from app.batch.model_choice import resolve_bundle
from app.batch.outputs import OutputError, check_output, embeddings_path, format_of, open_output
from app.batch.progress import Progress
from app.batch.rows import ResultRow, RowOptions, model_id
from app.batch.summary import Summary
from app.batch.writer import Writer
from app.config import Settings
from app.engine.trust import check_coverage, scorer_for
from modelspec import Bundle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchJob:
    input: str
    output: Path
    model: str | None = None
    options: RowOptions = RowOptions()
    resume: bool = False
    overwrite: bool = False
    engine: str = "local"
    address: str | None = None
    actors: int | None = None
    cpus_per_actor: int = 1
    quiet: bool = False


class Engine(Protocol):
    name: str

    @property
    def description(self) -> str: ...

    def run(self, images: list[ImagePath], emit: RowSink) -> None: ...

    def close(self) -> None: ...


def start_engine(job: BatchJob, settings: Settings, bundle: Bundle) -> Engine:
    if job.engine == "ray":
        if not available("ray", "pyarrow"):
            raise EngineUnavailableError("--engine ray needs Ray Data: pip install 'imgclf[ray]'")
        from app.batch.ray_engine import RayEngine

        return RayEngine(settings, bundle, job.options, address=job.address, actors=job.actors,
                         cpus_per_actor=job.cpus_per_actor, progress_bars=False)  # fmt: skip
    from app.batch.local import LocalEngine

    return LocalEngine(settings, bundle, job.options)


def run_job(job: BatchJob, settings: Settings, progress_stream: TextIO) -> Summary:
    """Run ``job``; raises ``InputError``, ``OutputError``, a model lookup error or ``CoverageError`` (a level the
    model cannot serve) before any work starts."""
    check_output(job.output, resume=job.resume, overwrite=job.overwrite)  # before anything is loaded
    listing = scan_inputs(job.input)
    images = listing.images
    bundle = resolve_bundle(settings, job.model)
    check_coverage(scorer_for(bundle), job.options.coverage)
    this_model = model_id(bundle.name, bundle.version)
    engine = start_engine(job, settings, bundle)
    try:
        output = open_output(
            job.output, job.options, bundle.spec.embedding_size, resume=job.resume, overwrite=job.overwrite
        )
    except BaseException:
        engine.close()
        raise
    try:
        resumed = output.resumed()
        others = sorted(resumed.models - {this_model})
        if others:
            raise OutputError(
                f"{job.output} holds rows made by {', '.join(others)}, not {this_model}: pass --model "
                f"{others[0]} to continue it, or --overwrite to start over"
            )
    except BaseException:
        engine.close()
        output.close()
        raise
    pending = [image for image in images if image.name not in resumed.paths]
    described = str(job.output) + (f" (+ {embeddings_path(job.output).name})" if _npy_beside(job) else "")
    summary = Summary(model=this_model, engine=engine.description, output=described)
    summary.skipped = len(images) - len(pending)
    summary.skipped_files = listing.skipped
    if listing.skipped:
        logger.info("%s (not image files by their extension)", skipped_text(listing.skipped))
    if summary.skipped:
        logger.info("resuming: %d of %d images are already in %s", summary.skipped, len(images), job.output)
    progress = Progress(len(pending), progress_stream, enabled=not job.quiet)
    writer = Writer(output)

    def emit(rows: list[ResultRow]) -> None:
        writer.put(rows)
        summary.add(rows)
        progress.advance(len(rows), sum(not row.ok for row in rows))

    try:
        engine.run(pending, emit)
        writer.close()
        output.finish()
    except BaseException:
        _close_quietly(writer)
        output.close()
        raise
    finally:
        engine.close()
        progress.close()
        summary.finish()
    return summary


def _npy_beside(job: BatchJob) -> bool:
    return job.options.embeddings and format_of(job.output) != "parquet"


def _close_quietly(writer: Writer) -> None:
    """Write what is queued (it was computed) and stop; an error here must not hide the one being raised."""
    try:
        writer.close()
    except Exception:
        logger.exception("writing the last rows failed")
