"""End to end through the CLI: fit on scikit-learn digits, export, classify held-out digits with ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelspec import Bundle, read_bundle
from tests.training.digits import fit_args, service_input
from tests.training.folders import FolderFactory
from training.cli import main


def test_digits_bundle_classifies_held_out_digits_through_onnx_runtime(
    digits_bundle: Bundle, digits_data: Path
) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(digits_bundle.path / "model.onnx"), providers=["CPUExecutionProvider"])
    paths = sorted((digits_data / "test").glob("*/*.png"))
    assert len(paths) == 450
    # Decoded as the service decodes: PIL, then to_rgb, then the bundle's own preprocessing.
    batch = np.stack([service_input(path, digits_bundle.spec.preprocessing) for path in paths])
    logits, embedding = session.run(["logits", "embedding"], {"images": batch})
    predicted = [digits_bundle.spec.labels[i] for i in logits.argmax(axis=1)]
    truth = [path.parent.name for path in paths]
    accuracy = np.mean([p == t for p, t in zip(predicted, truth, strict=True)])
    assert accuracy > 0.85, accuracy  # chance is 0.10
    assert embedding.shape == (450, digits_bundle.spec.embedding_size)


def test_digits_bundle_records_what_it_was_trained_on(digits_bundle: Bundle) -> None:
    spec = digits_bundle.spec
    assert spec.labels == [str(d) for d in range(10)]
    assert spec.architecture.family == "lenet"
    assert spec.preprocessing.crop_size == 32
    assert spec.provenance.dataset_fingerprint and spec.provenance.dataset_fingerprint.startswith("sha256:")
    assert spec.metrics["val"]["accuracy"] > 0.85
    assert set(spec.metrics["val"]["per_class"]) == set(spec.labels)
    assert np.asarray(spec.metrics["val"]["confusion_matrix"]).shape == (10, 10)
    assert 1 <= spec.metrics["best_epoch"] <= spec.metrics["epochs_trained"] == 8
    hyper = spec.hyperparameters
    assert hyper["backbone"] == "lenet5" and hyper["epochs"] == 8 and hyper["image_size"] == 32
    assert hyper["runtime"]["world_size"] == 1
    assert spec.metrics["parameters"]["fine-tune"]["trainable"] == spec.metrics["parameters"]["fine-tune"]["total"]


def test_run_folder_has_history_curves_and_checkpoints(digits_bundle: Bundle) -> None:
    run_dir = Path(digits_bundle.spec.hyperparameters["run_dir"])
    for name in ("history.csv", "history.json", "curves.png", "confusion_val.png", "metrics.json", "report.md"):
        assert (run_dir / name).is_file(), name
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, 9))
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr"} <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    csv_lines = (run_dir / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,phase,lr,train_images,train_loss") and len(csv_lines) == 9
    assert (run_dir / "checkpoint" / "last.safetensors").is_file()
    assert (run_dir / "checkpoint" / "best.safetensors").is_file()


def test_fit_prints_report_then_bundle_path_and_never_overwrites(
    digits_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    quick = ["--epochs", "1"]
    assert main([*fit_args(digits_data, models, tmp_path / "run1"), *quick]) == 0
    first = capsys.readouterr().out.strip().splitlines()
    assert first[-1] == str(models / "digits" / "1")
    assert any("validation: accuracy" in line for line in first)
    assert main([*fit_args(digits_data, models, tmp_path / "run2"), *quick]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(models / "digits" / "2")
    assert read_bundle(models / "digits" / "1").spec.version == 1  # the first is untouched


def test_evaluate_command_scores_a_bundle_with_onnx_runtime(
    digits_bundle: Bundle, digits_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", str(digits_bundle.path.parent), str(digits_data / "test"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "digits v1" in printed and "(onnx)" in printed and "top-5" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["samples"] == 450 and metrics["accuracy"] > 0.85
    assert (out / "confusion.png").is_file()
    # The torch backend (rebuilt from the spec + safetensors) agrees.
    assert main(["evaluate", str(digits_bundle.path), str(digits_data / "test"), "--backend", "torch"]) == 0
    assert f"accuracy {metrics['accuracy']:.1%}" in capsys.readouterr().out


def test_config_file_with_flags_overriding_it(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_folder({"red": 12, "green": 12, "blue": 12})
    config = tmp_path / "fit.yaml"
    config.write_text(
        f"data: {data}\nbackbone: lenet5\nbatch-norm: true\nepochs: 3\nimage-size: 16\nlr: 0.01\nworkers: 0\n"
        f"quiet: true\nrun_dir: {tmp_path / 'run'}\nexport: false\n"
        # Most other knobs at once, so that each code path runs in a real fit.
        "mode: partial\nunfreeze: 2\nlayer_decay: 0.5\noptimizer: sgd\nmomentum: 0.8\nnesterov: true\n"
        "schedule: linear\nwarmup_epochs: 0.5\nlr_end: 0.001\nl1: 0.00001\nweight_decay: 0.001\n"
        "label_smoothing: 0.1\nclip_grad_norm: 1.0\ndropout: 0.3\naugment: standard\npatience: 5\n"
    )
    assert main(["fit", "--config", str(config), "--epochs", "2"]) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 2  # the flag won over the file
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "checkpoint" / "last.json").read_text())["state"]["config"]
    assert saved["epochs"] == 2 and saved["optimizer"] == "sgd" and saved["nesterov"] is True
    assert saved["image_size"] == 16 and saved["name"] == "data"  # resolved defaults are recorded too


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{missing}"], "does not exist"),
        (["--data", "{data}", "--backbone", "nope"], "unknown backbone 'nope'"),
        (["--data", "{data}", "--mode", "two-phase", "--epochs", "1"], "epochs (1) > head_epochs (1)"),
        (["--data", "{data}", "--optimizer", "adam", "--nesterov"], "nesterov needs the sgd optimizer"),
        (["--data", "{data}", "--backbone", "resnet18", "--batch-norm"], "--batch-norm applies to lenet5"),
        (["--data", "{data}", "--backbone", "lenet5", "--pretrained", "imagenet"], "--pretrained none"),
        (["--data", "{data}", "--weights", "{missing}"], "does not exist"),
        (["--data", "{data}", "--lr", "-1"], "lr: Input should be greater than 0"),
        (["--config", "{missing}"], "config file"),
        (["--epochs", "2"], "no training data"),
    ],
)
def test_user_errors_exit_2_with_one_clear_line(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    data = image_folder({"a": 3, "b": 3})
    filled = [a.format(data=data, missing=tmp_path / "missing") for a in args]
    assert main(["fit", *filled, "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and err.startswith("error: ")


def test_unknown_option_in_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "fit.yaml"
    config.write_text("data: x\nlearning_rate: 0.1\n")
    assert main(["fit", "--config", str(config)]) == 2
    assert "unknown option(s) learning_rate" in capsys.readouterr().err


def test_existing_run_folder_is_not_reused_without_resume(
    image_folder: FolderFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = image_folder({"a": 6, "b": 6})
    args = ["fit", "--data", str(data), "--backbone", "lenet5", "--epochs", "1", "--image-size", "16", "--workers",
            "0", "--run-dir", str(tmp_path / "run"), "--no-export", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_backbones_command_lists_families_sizes_and_offline_weights(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:] if line and not line.startswith("Any")}
    for name in ("lenet5", "vgg16_bn", "googlenet", "inception_v3", "resnet18", "resnet50", "mobilenet_v3_large",
                 "efficientnet_b0", "efficientnet_lite0", "convnext_tiny"):  # fmt: skip
        assert name in rows, name
    assert "yes" in rows["efficientnet_lite0"] and " 224 " in rows["efficientnet_lite0"]
    assert "from scratch" in rows["lenet5"]
    assert " 299 " in rows["inception_v3"]


def test_explicit_validation_folder(image_folder: FolderFactory, tmp_path: Path) -> None:
    train = image_folder({"a": 10, "b": 10})
    val = image_folder({"a": 3, "b": 4}, name="val", seed=1)
    args = ["fit", "--data", str(train), "--val-data", str(val), "--backbone", "lenet5", "--image-size", "16",
            "--epochs", "1", "--workers", "0", "--run-dir", str(tmp_path / "run"), "--no-export"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val"]["samples"] == 7
    assert json.loads((tmp_path / "run" / "history.json").read_text())[0]["train_images"] == 20


def test_evaluate_refuses_classes_the_bundle_does_not_know(
    digits_bundle: Bundle, image_folder: FolderFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = image_folder({"7": 2, "cat": 2})
    assert main(["evaluate", str(digits_bundle.path), str(folder)]) == 2
    assert "does not know: cat" in capsys.readouterr().err
