"""(b) "When should I use a pretrained network?": each way of training, the same epochs on the same small subset of
Fashion-MNIST, scored on held-out test images; what ``--mode auto`` chooses there; and the frozen feature extractor
with cached features against running the frozen backbone every epoch (no augmentation, so both train on the same
inputs), alternated round by round so that both see the same background load."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from scripts.bench.training.context import Settings, run

FROZEN = ["--mode", "feature-extractor", "--lr", "1e-2", "--augment", "none"]
CACHE_VARIANTS = {"backbone every epoch": [*FROZEN, "--no-cache-features"], "cached features": FROZEN}
AUTO = ["--mode", "auto", "--lr", "1e-2"]


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
        rows.append(fit(settings, subset, f"subset-run-{number}", label, extra))
    auto = fit(settings, subset, "subset-run-auto", "Lite0 --mode auto", AUTO)
    rounds: list[dict[str, Any]] = []
    for number in range(1 if settings.smoke else 3):  # alternating: before, after, before, after, ...
        for variant, extra in CACHE_VARIANTS.items():
            rounds.append({"round": number + 1, **fit(settings, subset, "subset-run-cache", variant, extra)})
    return {"rows": rows, "auto": auto, "cache_rounds": rounds}


def fit(settings: Settings, subset: Path, name: str, label: str, extra: list[str]) -> dict[str, Any]:
    """One ``fit`` on the subset: its wall time, accuracies, trainable parameters, and what it chose or cached."""
    run_dir = settings.work / name
    shutil.rmtree(run_dir, ignore_errors=True)  # this benchmark's own scratch folder
    log = settings.work / f"{name}.log"
    command = [
        sys.executable, "-m", "training", "fit", "--data", str(subset / "train"), "--test-data",
        str(subset / "test"), "--image-size", str(settings.image_size), "--epochs", str(settings.subset_epochs),
        "--channels-last", "--run-dir", str(run_dir), "--no-export", "--quiet", *extra,
    ]  # fmt: skip
    seconds = run(command, settings.threads, log)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    state = json.loads((run_dir / "checkpoint" / "last.json").read_text())["state"]
    history = json.loads((run_dir / "history.json").read_text())
    parameters = list(metrics["parameters"].values())
    computed = re.search(r"frozen features of .* computed in ([0-9.]+) s", log.read_text())
    row = {
        "approach": label,
        "flags": shlex.join(extra),
        "trainable": "/".join(f"{p['trainable'] / 1e6:.2f} M" if p["trainable"] >= 1e5 else f"{p['trainable']:,}"
                              for p in parameters),
        "seconds": seconds,
        # features (when computed) + every epoch's training and validation: the part caching changes
        "training_seconds": sum(r["seconds"] for r in history) + (float(computed.group(1)) if computed else 0.0),
        "val": metrics["val"]["accuracy"],
        "test": metrics["test"]["accuracy"],
        "test_macro_f1": metrics["test"]["macro_f1"],
        "test_samples": metrics["test"]["samples"],
        "mode": state["config"]["mode"],
        "mode_auto": state.get("choices", {}).get("mode_auto"),
    }  # fmt: skip
    print(f"  {label}: test {row['test']:.1%} in {seconds:.0f} s", flush=True)
    return row


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
        *auto_lines(result.get("auto")),
        *cache_lines(result.get("cache_rounds") or []),
        f"Wall times include starting Python and reading the files. Load before and after: `{load[0]}`, "
        f"`{load[1]}`.",
        "",
    ]  # fmt: skip


def auto_lines(auto: dict[str, Any] | None) -> list[str]:
    """What ``--mode auto`` chose on this data, with its measurements, and how that run scored."""
    if not auto or not auto.get("mode_auto"):
        return []
    choice = auto["mode_auto"]
    return [
        f"**`--mode auto`** (`{auto['flags']}`) chose **{auto['mode']}** on this data: {choice['reason']} "
        f"That run: test accuracy {auto['test']:.1%} (macro-F1 {auto['test_macro_f1']:.3f}) in "
        f"{auto['seconds']:.0f} s, the probes included ({choice['seconds']:.0f} s).",
        "",
    ]


def cache_lines(rounds: list[dict[str, Any]]) -> list[str]:
    """The frozen feature extractor with and without cached features, alternated: a table and the ratio."""
    if not rounds:
        return []
    before = [r for r in rounds if r["approach"] == "backbone every epoch"]
    after = [r for r in rounds if r["approach"] == "cached features"]
    if not before or not after:
        return []
    whole = statistics.median(r["seconds"] for r in before) / statistics.median(r["seconds"] for r in after)
    training = statistics.median(r["training_seconds"] for r in before) / statistics.median(
        r["training_seconds"] for r in after
    )
    accuracy = {r["test"] for r in before} | {r["test"] for r in after}
    return [
        "**Cached features** (`--mode feature-extractor --lr 1e-2 --augment none`, the default `--cache-features` "
        "against `--no-cache-features`): the frozen backbone's embeddings computed once and the head trained on them, "
        "against running the frozen backbone over every image in every epoch. Same data, same flags otherwise, "
        f"alternated over {len(after)} rounds:",
        "",
        "| round | variant | wall time (whole command) | features + all epochs | test accuracy | test macro-F1 |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['round']} | {r['approach']} | {r['seconds']:.1f} s | {r['training_seconds']:.1f} s | "
            f"{r['test']:.1%} | {r['test_macro_f1']:.3f} |"
            for r in rounds
        ],
        "",
        f"By the medians, the whole command is **{whole:.1f}x** faster with cached features and the training itself "
        f"(computing the features + every epoch's training and validation) **{training:.0f}x**; test accuracy "
        + (
            f"is the same ({next(iter(accuracy)):.1%}): the head sees the same embeddings and the same dropout masks."
            if len(accuracy) == 1
            else f"{min(accuracy):.1%}-{max(accuracy):.1%}."
        )
        + " What remains of the command is shared by both: starting Python and importing torch, checking the "
        f"files, building the network, scoring the {after[0]['test_samples']:,} test images through the whole "
        "network, the figures.",
        "",
    ]


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
