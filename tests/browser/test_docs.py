"""The API docs (Swagger UI at /docs, ReDoc at /redoc) render from the service alone: every request off the machine is
refused, as on an air-gapped host."""

from __future__ import annotations

import pytest

from tests.browser.conftest import BrowserPage

pytestmark = pytest.mark.integration


def test_swagger_ui_lists_the_operations_offline(desktop: BrowserPage) -> None:
    page = desktop.page
    page.goto(desktop.server.url + "/docs")
    page.wait_for_selector(".opblock")
    paths = page.locator(".opblock .opblock-summary-path").all_inner_texts()
    for path in ("/v1/predict", "/v1/explain", "/v1/models/{name}/explain", "/v1/models"):
        assert path in [p.replace("\u200b", "") for p in paths], paths
    desktop.screenshot("docs-swagger")
    desktop.log.assert_clean()


def test_redoc_lists_the_operations_offline(desktop: BrowserPage) -> None:
    page = desktop.page
    page.goto(desktop.server.url + "/redoc")
    page.get_by_text("Classify images with the default model").first.wait_for()
    page.get_by_text("Where the default model found its evidence").first.wait_for()
    assert page.locator("[data-section-id^='tag/']").count() >= 3  # inference, explanations, models, ...
    desktop.screenshot("docs-redoc")
    desktop.log.assert_clean()  # not even the logo of ReDoc's credit is fetched from its CDN
