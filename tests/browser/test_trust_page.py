"""What the page shows of trust (issue 18): a badge on an image unlike the training images, the prediction set
for a chosen coverage, and the reliability diagram (or "not calibrated") in the model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.trust_bundle import noise_png, shape_png
from tests.browser.conftest import BrowserPage

pytestmark = pytest.mark.integration


def load(browser_page: BrowserPage, model: str) -> None:
    page = browser_page.page
    page.goto(browser_page.server.url + "/")
    page.wait_for_selector("#model:not([disabled])")
    page.select_option("#model", model)
    page.get_by_text(f"{model} version 1:").first.wait_for()  # the summary line of the chosen model


def api_predict(browser_page: BrowserPage, model: str, path: Path, coverage: float) -> dict[str, Any]:
    """What the API answers for the file the page was given."""
    url = f"{browser_page.server.url}/v1/models/{model}/predict"
    files = {"file": (path.name, path.read_bytes(), "image/png")}
    response = httpx.post(url, files=files, params={"coverage": coverage}, timeout=60)
    result: dict[str, Any] = response.json()["results"][0]
    return result


def test_a_flagged_image_gets_a_badge_and_each_image_its_prediction_set(desktop: BrowserPage, tmp_path: Path) -> None:
    import numpy as np

    noise = tmp_path / "noise.png"
    noise.write_bytes(noise_png(11))
    square = tmp_path / "square.png"
    square.write_bytes(shape_png(1, np.random.default_rng(5)))
    page = desktop.page
    load(desktop, "shapes")
    assert not page.locator("#coverage").is_disabled()
    page.select_option("#coverage", "0.9")
    page.set_input_files("#file", [str(noise), str(square)])
    page.wait_for_function("document.querySelectorAll('.result .bar').length >= 6")
    views = [page.locator(".result").nth(i) for i in (0, 1)]
    results = {view.locator(".name").inner_text(): view for view in views}
    flagged = results["noise.png"].locator(".badge.ood")
    assert flagged.is_visible()
    assert flagged.inner_text() == "Unlike the training images"
    ordinary = api_predict(desktop, "shapes", square, 0.9)
    assert results["square.png"].locator(".badge.ood").is_visible() is bool(ordinary["out_of_distribution"])
    for name, view in results.items():
        answer = api_predict(desktop, "shapes", tmp_path / name, 0.9)
        labels = answer["prediction_set"]["labels"]
        expected = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]
        assert view.locator(".set").inner_text() == f"Could be: {expected} (90% prediction set)"
    desktop.screenshot("page-trust")
    desktop.log.assert_clean()


def test_without_a_coverage_there_is_no_set_and_a_model_without_conformal_data_offers_none(
    desktop: BrowserPage, tmp_path: Path
) -> None:
    import numpy as np

    circle = tmp_path / "circle.png"
    circle.write_bytes(shape_png(0, np.random.default_rng(3)))
    page = desktop.page
    load(desktop, "shapes")
    page.set_input_files("#file", [str(circle)])
    page.wait_for_selector(".result .bar")
    assert not page.locator(".result .set").is_visible()
    load(desktop, "plain")
    assert page.locator("#coverage").is_disabled()
    page.set_input_files("#file", [str(circle)])
    page.wait_for_selector(".result .bar")
    assert not page.locator(".result .set").is_visible()
    assert not page.locator(".result .badge").is_visible()  # no OOD reference: no flag either way
    desktop.log.assert_clean()


def test_the_model_card_draws_the_reliability_diagram_or_says_not_calibrated(desktop: BrowserPage) -> None:
    page = desktop.page
    load(desktop, "shapes")
    page.click("#card summary")
    card = page.locator("#card-body")
    diagram = card.locator("svg.reliability")
    diagram.wait_for()
    detail = json.loads(page.evaluate("fetch('v1/models/shapes').then(r => r.text())"))
    bins = detail["trust"]["calibration"]["reliability_after"]
    assert diagram.locator("rect.bin").count() == sum(1 for count in bins["counts"] if count)
    temperature = detail["trust"]["calibration"]["temperature"]
    assert card.get_by_text(f"{temperature:.3f}", exact=True).is_visible()
    desktop.screenshot("card-calibration", full_page=True)
    page.select_option("#model", "efficientnet-lite0")
    card.get_by_text("1000 classes", exact=True).wait_for()
    assert card.locator(".not-calibrated").inner_text().startswith("Not calibrated")
    assert card.locator("svg.reliability").count() == 0
    desktop.log.assert_clean()
