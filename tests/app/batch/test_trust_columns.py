"""The batch command's trust columns: ood_score and out_of_distribution always, prediction_set with --coverage,
equal to what the service answers for the same images, in CSV, JSONL and Parquet."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.batch.__main__ import main
from app.config import Settings
from app.main import create_app
from tests.app.trust_bundle import PLAIN, TRUSTED, TrustedModels, noise_png


def write_images(folder: Path, trusted_models: TrustedModels) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, data in enumerate([*trusted_models.validation[:6], noise_png(7)]):
        path = folder / f"{i}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths


def rows_of(output: Path) -> dict[str, dict[str, Any]]:
    """path -> (ood_score, out_of_distribution, prediction_set) as the file holds them, typed."""
    rows: dict[str, dict[str, Any]] = {}
    if output.suffix == ".csv":
        with output.open(newline="") as handle:
            for record in csv.DictReader(handle):
                rows[record["path"]] = {
                    "ood_score": float(record["ood_score"]) if record["ood_score"] else None,
                    "out_of_distribution": {"true": True, "false": False, "": None}[record["out_of_distribution"]],
                    "prediction_set": record["prediction_set"].split("|") if "prediction_set" in record else None,
                }
    elif output.suffix == ".jsonl":
        for line in output.read_text().splitlines():
            record = json.loads(line)
            rows[record["path"]] = {key: record.get(key) for key in ("ood_score", "out_of_distribution")}
            rows[record["path"]]["prediction_set"] = record.get("prediction_set")
    else:
        import pyarrow.parquet as pq

        for record in pq.read_table(output).to_pylist():
            rows[record["path"]] = {
                key: record.get(key) for key in ("ood_score", "out_of_distribution", "prediction_set")
            }
    return rows


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_trust_columns_equal_the_services_answers(
    tmp_path: Path, batch_env: Any, trusted_models: TrustedModels, suffix: str
) -> None:
    paths = write_images(tmp_path / "images", trusted_models)
    output = tmp_path / f"out{suffix}"
    models = str(trusted_models.models_dir)
    argv = [str(tmp_path / "images"), "-o", str(output), "--models-dir", models, "-m", TRUSTED, "--coverage", "0.9"]
    assert main([*argv, "--quiet"]) == 0
    rows = rows_of(output)
    settings = Settings(models_dir=trusted_models.models_dir, default_model=None, watch_interval=0)
    with TestClient(create_app(settings)) as client:
        for path in paths:
            files = {"file": (path.name, path.read_bytes(), "image/png")}
            [answer] = client.post(f"/v1/models/{TRUSTED}/predict", files=files, params={"coverage": 0.9}).json()[
                "results"
            ]
            row = rows[str(path)]
            # float32 sums in another order (a batch of 7, not 1): equal to float32 precision
            assert row["ood_score"] == pytest.approx(answer["ood_score"], rel=1e-5)
            assert row["out_of_distribution"] is answer["out_of_distribution"]
            assert row["prediction_set"] == answer["prediction_set"]["labels"]
    assert rows[str(paths[-1])]["out_of_distribution"] is True  # the noise image


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_model_without_trust_data_leaves_the_ood_columns_empty(
    tmp_path: Path, batch_env: Any, trusted_models: TrustedModels, suffix: str
) -> None:
    write_images(tmp_path / "images", trusted_models)
    output = tmp_path / f"out{suffix}"
    models = str(trusted_models.models_dir)
    assert main([str(tmp_path / "images"), "-o", str(output), "--models-dir", models, "-m", PLAIN, "-q"]) == 0
    rows = rows_of(output)
    assert len(rows) == 7
    assert all(row["ood_score"] is None and row["out_of_distribution"] is None for row in rows.values())
    assert all(row["prediction_set"] is None for row in rows.values())


@pytest.mark.parametrize(
    ("model", "coverage", "says"),
    [(PLAIN, "0.9", "no conformal calibration data"), (TRUSTED, "0.99", "from 0.01639 to 0.9836")],
)
def test_a_coverage_the_model_cannot_serve_stops_before_any_work(
    tmp_path: Path,
    batch_env: Any,
    trusted_models: TrustedModels,
    capsys: pytest.CaptureFixture[str],
    model: str,
    coverage: str,
    says: str,
) -> None:
    write_images(tmp_path / "images", trusted_models)
    output = tmp_path / "out.csv"
    models = str(trusted_models.models_dir)
    argv = [str(tmp_path / "images"), "-o", str(output), "--models-dir", models, "-m", model, "--coverage", coverage]
    assert main([*argv, "-q"]) == 2
    assert says in capsys.readouterr().err
    assert not output.exists()
