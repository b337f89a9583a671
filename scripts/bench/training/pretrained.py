"""(b) "When should I use a pretrained network?": each way of training, the same epochs on the same small subset of
Fashion-MNIST, scored on held-out test images."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from typing import Any

from scripts.bench.training.context import Settings, run


def approaches(epochs: int) -> list[tuple[str, list[str]]]:
    """(label, flags) of each way of training compared in (b)."""
    head = max(1, epochs // 3)
    return [
        ("LeNet-5 from scratch (32 px)", ["--backbone", "lenet5", "--image-size", "32", "--lr", "1e-3"]),
        ("Lite0 from scratch", ["--pretrained", "none", "--lr", "1e-3"]),
        ("Lite0 feature extractor (frozen)", ["--mode", "feature-extractor", "--lr", "1e-2"]),
        ("Lite0 fine-tune (all layers)", ["--mode", "fine-tune", "--lr", "1e-3"]),
        (f"Lite0 two-phase (head {head} epochs, then all at lr/10)",
         ["--mode", "two-phase", "--head-epochs", str(head), "--lr", "1e-2", "--finetune-lr-scale", "0.1"]),
    ]  # fmt: skip


def measure(settings: Settings) -> dict[str, Any]:
    from training.prepare import prepare_fashion_mnist

    subset = settings.work / f"fashion-mnist-{settings.subset_per_class}"
    prepare_fashion_mnist(subset, limit=settings.subset_per_class)
    rows = []
    for number, (label, extra) in enumerate(approaches(settings.subset_epochs)):
        run_dir = settings.work / f"subset-run-{number}"
        shutil.rmtree(run_dir, ignore_errors=True)  # this benchmark's own scratch folder
        command = [
            sys.executable, "-m", "training", "fit", "--data", str(subset / "train"), "--test-data",
            str(subset / "test"), "--image-size", str(settings.image_size), "--epochs", str(settings.subset_epochs),
            "--channels-last", "--run-dir", str(run_dir), "--no-export", "--quiet", *extra,
        ]  # fmt: skip
        seconds = run(command, settings.threads, settings.work / f"subset-run-{number}.log")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        parameters = list(metrics["parameters"].values())
        rows.append({
            "approach": label,
            "flags": shlex.join(extra),
            "trainable": "/".join(f"{p['trainable'] / 1e6:.2f} M" if p["trainable"] >= 1e5 else f"{p['trainable']:,}"
                                  for p in parameters),
            "seconds": seconds,
            "val": metrics["val"]["accuracy"],
            "test": metrics["test"]["accuracy"],
            "test_samples": metrics["test"]["samples"],
        })  # fmt: skip
        print(f"  {label}: test {rows[-1]['test']:.1%} in {seconds:.0f} s", flush=True)
    return {"rows": rows}


def render(settings: Settings, result: dict[str, Any]) -> list[str]:
    load = result["uptime"]
    rows = result["rows"]
    test_samples = rows[0]["test_samples"]
    return [
        "### (b) When should I use a pretrained network?",
        "",
        f"{settings.subset_per_class} Fashion-MNIST images per class (80 % train, 20 % validation), "
        f"{settings.subset_epochs} epochs each at {settings.image_size} px (LeNet-5: 32 px), AdamW, cosine "
        f"decay, light augmentation; accuracy on {test_samples:,} held-out test images "
        f"(`python -m training prepare fashion-mnist --limit {settings.subset_per_class}`).",
        "",
        "| approach | flags | trainable parameters | test accuracy | wall time |",
        "|---|---|---|---|---|",
        *[
            f"| {r['approach']} | `{r['flags']}` | {r['trainable']} | {r['test']:.1%} | {r['seconds']:.0f} s |"
            for r in rows
        ],
        "",
        *reading(rows),
        "",
        f"Wall times include starting Python and reading the files. Load before and after: `{load[0]}`, "
        f"`{load[1]}`.",
        "",
    ]  # fmt: skip


def reading(rows: list[dict[str, Any]]) -> list[str]:
    """The table in words, from its numbers."""
    ranked = sorted(rows, key=lambda r: -r["test"])
    by_name = {r["approach"].split(" (")[0]: r for r in rows}
    frozen, tuned = by_name.get("Lite0 feature extractor"), by_name.get("Lite0 fine-tune")
    scratch = by_name.get("Lite0 from scratch")
    lines = ["Reading it: " + " > ".join(f"{r['approach'].split(' (')[0]} {r['test']:.1%}" for r in ranked) + "."]
    if frozen and tuned and scratch:
        lines.append(
            f"Pretrained weights are worth {tuned['test'] - scratch['test']:+.1%} to the same network trained the same "
            f"way. The frozen feature extractor costs {frozen['seconds'] / tuned['seconds']:.0%} of fine-tuning's "
            f"time and gives {frozen['test'] - tuned['test']:+.1%}: use it when time or data is very short or "
            "the images resemble ImageNet photos; fine-tune (or two-phase) when a few minutes are affordable and "
            "the images differ from photos. From scratch pays only with far more data than this."
        )
    return lines
