"""A missing browser fails the browser tests in CI and only skips them on a developer's machine."""

from __future__ import annotations

import pytest

from tests.browser import conftest


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_ci_fails_when_the_browser_is_missing(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true and the browser tests cannot run: no Chromium"):
        conftest.missing_browser_tool("no Chromium at /nowhere/chromium")


def test_a_developer_machine_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(conftest, "SKIPPED", [])
    with pytest.raises(pytest.skip.Exception, match="BROWSER TESTS SKIPPED: no Chromium"):
        conftest.missing_browser_tool("no Chromium at /nowhere/chromium")
    assert conftest.SKIPPED == ["no Chromium at /nowhere/chromium"]  # the banner at the end lists it
