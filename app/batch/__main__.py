"""``python -m app.batch INPUT --output FILE`` (also ``imgclf-batch``): classify a folder, a glob or a listing of
images with a model bundle, without PyTorch and without HTTP; see docs/batch.md."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from app.batch.extras import EngineUnavailableError
from app.batch.inputs import InputError
from app.batch.job import BatchJob, run_job
from app.batch.model_choice import ModelArgumentError
from app.batch.outputs import OutputError
from app.batch.rows import RowOptions
from app.config import Settings
from app.engine.registry import ModelLookupError
from modelspec import BundleError
from modelspec.trust import CoverageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m app.batch",
        description="Classify many images with a model bundle: top-k labels (and embeddings) per image, written "
        "as the run goes to a CSV, JSONL or Parquet file. Threads and batch size follow the service's IMGCLF_* "
        "settings.",
    )
    p.add_argument("input", help="a folder (searched recursively), a glob pattern in quotes, or a .txt listing paths")
    p.add_argument("--output", "-o", type=Path, required=True, help="result file: .csv, .jsonl or .parquet")
    p.add_argument("--model", "-m", metavar="NAME[:VERSION]", help="default: the service's default model")
    p.add_argument("--models-dir", type=Path, help="bundles folder (IMGCLF_MODELS_DIR; default: models)")
    p.add_argument("--top-k", type=int, default=5, help="classes per image, best first (default: 5)")
    p.add_argument(
        "--embeddings",
        action="store_true",
        help="also write each image's embedding: a Parquet column, or FILE.embeddings.npy beside a CSV or JSONL",
    )
    p.add_argument("--normalize", action="store_true", help="scale embeddings to unit length (cosine = dot product)")
    p.add_argument(
        "--coverage",
        type=float,
        metavar="LEVEL",
        help="add each image's prediction set at this coverage level, e.g. 0.9 (models exported with a "
        "validation split; the levels served are in the model's trust.conformal)",
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue an interrupted run: skip images already done")
    again.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "--batch-size", type=int, help="images per inference batch (default: IMGCLF_MAX_BATCH_SIZE, as the service)"
    )
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or a Ray cluster")
    p.add_argument(
        "--address", help="Ray cluster to join (ray start --head's address, or 'auto'); default: a new local one"
    )
    p.add_argument(
        "--actors", type=int, help="Ray engine: model replicas (default: the cluster's CPUs / --cpus-per-actor)"
    )
    p.add_argument("--cpus-per-actor", type=int, default=1, help="Ray engine: CPUs of each replica (default: 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line and no info logs (for logs and cron)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.top_k < 1 or (args.batch_size is not None and args.batch_size < 1):
        parser().error("--top-k and --batch-size must be at least 1")
    overrides = {"models_dir": args.models_dir, "max_batch_size": args.batch_size}
    settings = Settings(**{key: value for key, value in overrides.items() if value is not None})
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    job = BatchJob(
        input=args.input,
        output=args.output,
        model=args.model,
        options=RowOptions(
            top_k=args.top_k, embeddings=args.embeddings, normalize=args.normalize, coverage=args.coverage
        ),
        resume=args.resume,
        overwrite=args.overwrite,
        engine=args.engine,
        address=args.address,
        actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        quiet=args.quiet,
    )
    try:
        summary = run_job(job, settings, sys.stderr)
    except (
        InputError,
        OutputError,
        ModelLookupError,
        ModelArgumentError,
        BundleError,
        EngineUnavailableError,
        CoverageError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the rows written so far are in {args.output}; rerun with --resume to finish",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(summary.text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
