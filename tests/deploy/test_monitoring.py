"""deploy/prometheus (alert rules, checked and unit-tested with promtool) and deploy/grafana (the dashboard): they
are valid, and every series they read is one the service really exports (a scrape of /metrics after predictions).

promtool comes from Debian's ``prometheus`` package (``make test`` installs it, as it installs chromium). Without it
these checks fail in CI (CI=true) and are skipped loudly on a developer's machine, as the browser tests are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.main import create_app
from tests.app.trust_bundle import PLAIN, TRUSTED, make_trusted_models, noise_png
from tests.deploy.conftest import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "imgclf-trust.rules.yml"
RULE_TESTS = PROMETHEUS / "imgclf-trust.tests.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "imgclf-trust.json"
SERIES = re.compile(r"\bimgclf_[a-z0-9_]+")
PANEL_TYPES = {"timeseries", "heatmap", "stat", "gauge", "bargauge", "table", "text"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def promtool() -> str:
    """The promtool on the PATH; without one, fail in CI and skip (loudly) elsewhere."""
    found = shutil.which("promtool")
    if found:
        return found
    reason = "no promtool on the PATH: `make test` installs Debian's prometheus package with apt-get (as root or sudo)"
    if in_ci():
        pytest.fail(f"CI=true and the alert rules cannot be checked: {reason}", pytrace=False)
    pytest.skip(f"PROMETHEUS RULE TESTS SKIPPED: {reason}")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False)


def test_the_alert_rules_are_valid() -> None:
    result = run(promtool(), "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alerts_fire_when_they_should_and_not_before() -> None:
    result = run(promtool(), "test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
              if "alert" in rule}  # fmt: skip
    assert alerts == tested == {"ImgclfManyImagesOutOfDistribution", "ImgclfTop1ProbabilityFalling"}


def test_a_broken_rule_file_is_refused(tmp_path: Path) -> None:
    """The check can fail: a rule with a syntax error does not pass."""
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("> 0.15", "> > 0.15"))
    result = subprocess.run([promtool(), "check", "rules", str(broken)], capture_output=True, text=True, check=False)
    assert result.returncode != 0


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Sample names of /metrics after predictions with a model that has trust data and one that has not."""
    models = make_trusted_models(tmp_path_factory.mktemp("monitoring-models"))
    settings = Settings(models_dir=models.models_dir, default_model=TRUSTED, watch_interval=0, intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        for name in (TRUSTED, PLAIN):
            images = [("a.png", models.validation[0]), ("b.png", noise_png(1))]
            files = [("file", (filename, data, "image/png")) for filename, data in images]
            assert client.post(f"/v1/models/{name}/predict", files=files).status_code == 200
        text = client.get("/metrics").text
    yield {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    panels = board["panels"]
    assert len(panels) >= 4
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["title"] and panel["description"]
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid) and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(set(refs)) == len(refs)
        assert all(target["expr"] for target in panel["targets"])
    variables = {variable["name"] for variable in board["templating"]["list"]}
    assert {"datasource", "model"} <= variables


def test_the_dashboard_and_the_rules_read_series_the_service_exports(scraped: set[str]) -> None:
    expressions = [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]
    rules = [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    for source, texts in (("dashboard", expressions), ("rules", rules)):
        referenced = {name for text in texts for name in SERIES.findall(text)}
        assert referenced, source
        missing = referenced - scraped
        assert not missing, f"the {source} read series the service does not export: {sorted(missing)}"
    # Each of the three trust series is used by both.
    for family in ("imgclf_top1_probability_bucket", "imgclf_ood_score_bucket", "imgclf_ood_flagged_images_total"):
        assert family in scraped
        assert any(family in text for text in expressions), family
