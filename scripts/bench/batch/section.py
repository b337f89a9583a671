"""The "## Batch" section of BENCHMARKS.md, from one run's numbers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from app.batch.local import throughput_settings
from app.config import Settings
from scripts.bench.batch.measure import Round
from scripts.bench.machine import Machine
from scripts.bench.report import section_header

HEADING = "## Batch"
TARGET = 0.95
SERVICE_TARGET = 1.1


@dataclass
class Report:
    started: str
    machine: Machine
    software: dict[str, str]
    settings: Settings
    model: str
    backend: str
    images: int
    variants: int
    image_kib: float
    decode_ms: float  # decode + preprocess of the batch images, mean
    reference_decode_ms: float  # of make bench's test image
    arrangement: str
    batch: int
    in_process_seconds: float
    command: str
    client: str
    service_seconds: float
    rounds: list[Round]
    uptime_before: str
    uptime_after: str

    @property
    def ratio(self) -> float:
        return statistics.median(r.ratio for r in self.rounds)

    @property
    def versus_service(self) -> float:
        return statistics.median(r.versus_service for r in self.rounds)


def render(report: Report) -> str:
    settings = report.settings
    sized = throughput_settings(settings)
    lines = [
        *section_header(
            HEADING,
            "`make bench-batch` (`python -m scripts.bench.batch`)",
            report.started,
            report.machine,
            f", shared with other work: `{report.uptime_before}` before, `{report.uptime_after}` after. Compare the "
            "numbers of one round with each other, as ratios.",
            report.software,
        ),
        f"- Model: `{report.model}` on {report.backend}. The batch command's sizing (`app/batch/local.py`): "
        f"{sized.resolved_decode_threads()} decode threads, {sized.resolved_inference_workers('onnx')} inference "
        f"workers of {sized.resolved_intra_op_threads()} intra-op thread(s) each, batches of {sized.max_batch_size}; "
        f"the service's: {settings.resolved_decode_threads()} decode threads, "
        f"{settings.resolved_inference_workers('onnx')} inference workers, {settings.resolved_intra_op_threads()} "
        f"intra-op threads for a batch that runs alone, batches of up to {settings.max_batch_size}.",
        f"- Images: {report.images:,} JPEG files of 640x480 in a temporary folder ({report.variants} different crops "
        f"of scikit-image's sample photos, mirrored or not, quality 80-95, {report.image_kib:.0f} KiB on average); "
        f"decode + preprocess {report.decode_ms:.2f} ms each on average (`make bench`'s `chelsea` at 640x480, "
        f"quality 90: {report.reference_decode_ms:.2f} ms).",
        f"- Batch command: `{report.command}` in a subprocess, as a user runs it. Its img/s is the one its summary "
        "prints (from the model loaded to the last row on disk); wall time includes the start-up (Python and "
        "the model's load). CPU ms/img is the subprocess's CPU time, start-up included, per image.",
        f"- In-process limit: `make bench`'s in-process sweep run on the same {report.variants} photos (decoded in "
        f"turn, from memory), so that both sides do the same work; its best arrangement, {report.arrangement}, "
        f"batch {report.batch}, {report.in_process_seconds:g} s right before and right after each batch run (the "
        "limit of a round is their mean).",
        f"- Service: `python -m app` with the same settings, started once for the run, then in each round 16 "
        f"clients ({report.client}, closed loop) sending the same {report.variants} photos in turn as raw "
        f"`image/jpeg` bodies for {report.service_seconds:g} s after a 2 s warm-up; CPU ms/img is the server "
        "process's. The batch command's whole-command rate is its images over its wall time, start-up included.",
        "",
        "| round | in-process img/s (before / after) | batch command img/s (own / whole command) | batch / "
        "in-process | service c=16 img/s | whole batch command / service | in-process CPU ms/img | batch CPU "
        "ms/img | service CPU ms/img | batch wall s | load 1m |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(report.rounds, 1):
        lines.append(
            f"| {i} | {r.limit:.1f} ({r.before.images_per_second:.1f} / {r.after.images_per_second:.1f}) | "
            f"{r.batch.images_per_second:.1f} / {r.batch.whole_command_rate:.1f} | {r.ratio:.0%} | "
            f"{r.service.images_per_second:.1f} | {r.versus_service:.2f}x | {r.limit_cpu_ms:.2f} | "
            f"{r.batch.cpu_ms_per_image:.2f} | {r.service.cpu_ms_per_image:.2f} | {r.batch.wall_seconds:.1f} | "
            f"{r.load:.2f} |"
        )
    cpu = statistics.median(r.limit_cpu_ms / r.batch.cpu_ms_per_image for r in report.rounds)
    verdict = "met" if report.ratio >= TARGET else "not met"
    service_verdict = "met" if report.versus_service >= SERVICE_TARGET else "not met"
    errors = sum(r.service.non2xx for r in report.rounds)
    last = report.rounds[-1].batch.summary
    lines += [
        "",
        f"**The batch command runs at {report.ratio:.0%} of the in-process limit** (median of {len(report.rounds)} "
        f"rounds; target >= {TARGET:.0%}): {verdict}. CPU efficiency (in-process CPU ms per image / the batch "
        f"command's, start-up included): {cpu:.0%}.",
        "",
        f"**The whole batch command runs at {report.versus_service:.2f}x the service's throughput at 16 clients** "
        f"on the same photos (median of {len(report.rounds)} rounds; target >= {SERVICE_TARGET}x): "
        f"{service_verdict}. The service answered {errors} requests with an error or not at all.",
        "",
        "The last round's summary:",
        "",
        "```",
        last,
        "```",
    ]
    return "\n".join(lines)
