"""(d) The fixed cost of a feature-extractor fit: the same ``fit`` command a practitioner iterates with (2,000 small
images, 10 epochs, the backbone's export cache warm), against a 10-epoch fine-tune of the same data, in one run."""

from __future__ import annotations

import resource
import shlex
import shutil
import sys
from typing import Any

from scripts.bench.machine import uptime
from scripts.bench.training.context import Settings, run

PER_CLASS = 200
EPOCHS = 10
TARGET = 0.15
MODES = {
    "feature-extractor": ["--mode", "feature-extractor", "--lr", "1e-2"],
    "fine-tune": ["--mode", "fine-tune", "--lr", "1e-3"],
}


def command(settings: Settings, mode: str) -> list[str]:
    data, work = settings.work / f"fashion-mnist-{PER_CLASS}", settings.work / "fixed-cost"
    return [
        sys.executable, "-m", "training", "fit", "--data", str(data / "train"), "--test-data", str(data / "test"),
        "--image-size", str(settings.image_size), "--epochs", str(EPOCHS), *MODES[mode], "--augment", "none",
        "--models-dir", str(work / "models"), "--name", mode, "--run-dir", str(work / f"run-{mode}"), "--quiet",
    ]  # fmt: skip


def timed(settings: Settings, mode: str, label: str) -> dict[str, Any]:
    """One fit: wall time and CPU time (user + system of the child), the load before and after."""
    shutil.rmtree(settings.work / "fixed-cost" / f"run-{mode}", ignore_errors=True)
    before, cpu_before = uptime(), resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = run(command(settings, mode), settings.threads, settings.work / f"fixed-cost-{label}.log")
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"mode": mode, "label": label, "seconds": seconds, "cpu_seconds": cpu, "uptime": [before, uptime()]}


def measure(settings: Settings) -> dict[str, Any]:
    from training.prepare import prepare_fashion_mnist

    prepare_fashion_mnist(settings.work / f"fashion-mnist-{PER_CLASS}", limit=PER_CLASS)
    # The first fit of a backbone exports it and fills the export cache; a practitioner iterating has it warm.
    warm = timed(settings, "feature-extractor", "feature-extractor-first")
    runs = [timed(settings, "feature-extractor", "feature-extractor"), timed(settings, "fine-tune", "fine-tune")]
    runs.append(timed(settings, "feature-extractor", "feature-extractor-again"))
    shown = shlex.join(["python", "-m", "training", *command(settings, "feature-extractor")[3:]])
    return {"first": warm, "runs": runs, "command": shown.replace(str(settings.work) + "/", "$WORK/")}


def render(settings: Settings, d: dict[str, Any]) -> list[str]:
    fine_tune = next(r for r in d["runs"] if r["mode"] == "fine-tune")
    extractors = [r for r in d["runs"] if r["mode"] == "feature-extractor"]
    ratios = [r["seconds"] / fine_tune["seconds"] for r in extractors]
    worst = max(ratios)
    lines = [
        "### (d) The fixed cost of a feature-extractor fit",
        "",
        f"`make prepare-fashion-mnist`'s images, {PER_CLASS} per class and split (2,000 training and 2,000 test "
        f"images, {settings.image_size} px), {EPOCHS} epochs, one after the other in one run: a feature-extractor "
        "fit before and after a fine-tune of the same data (`--mode fine-tune --lr 1e-3`, the other flags the same), "
        "each timed whole, as the practitioner waits for it:",
        "",
        "```sh",
        d["command"],
        "```",
        "",
        "| fit | wall s | CPU s (user + system) | load before / after |",
        "|---|---:|---:|---|",
    ]
    for r in [d["first"], *d["runs"]]:
        loads = " / ".join(u.split("load average:")[-1].split(",")[0].strip() for u in r["uptime"])
        lines.append(f"| {r['label']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {loads} |")
    verdict = "met" if worst <= TARGET else "not met"
    lines += [
        "",
        f"**A feature-extractor fit takes {worst:.2f}x the wall time of a {EPOCHS}-epoch fine-tune** (the slower of "
        f"the two runs around it: {', '.join(f'{r:.2f}x' for r in ratios)}; target <= {TARGET}x): {verdict}. The "
        "first fit of a backbone also exports it and fills the export cache ("
        f"{d['first']['seconds']:.1f} s here); every later fit of that backbone and size reuses it.",
        "",
    ]
    return lines
