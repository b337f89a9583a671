"""Browser tests: Debian's Chromium, driven by Playwright, against the real service (``python -m app``) serving the
real default model and a trained digits model.

The browser is the system one (``/usr/bin/chromium``, installed by ``make test`` with apt-get); Playwright never
downloads one. Every request the pages make to anywhere but the test server is refused and recorded, so a page that
needs a CDN fails its test. Screenshots are kept under ``test-artifacts/browser/`` (ignored by git).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from modelspec import Bundle

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("IMGCLF_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # as root (CI, containers) Chromium's sandbox cannot start
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY_TIMEOUT_S = 120

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LiveServer:
    url: str
    models_dir: Path


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health/ready", timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the service was not ready after {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def live_server(
    default_models_dir: Path, digits_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """``python -m app`` on a free port, serving EfficientNet-Lite0 (the default), the digits model, and ``shapes``
    (with trust data) and ``plain`` (the same network without) from ``tests.app.trust_bundle``."""
    from tests.app.trust_bundle import make_trusted_models

    models_dir = tmp_path_factory.mktemp("browser-models")
    shutil.copytree(default_models_dir, models_dir, dirs_exist_ok=True)
    shutil.copytree(digits_bundle.path, models_dir / digits_bundle.name / str(digits_bundle.version))
    make_trusted_models(models_dir)
    port = free_port()
    env = dict(
        os.environ,
        IMGCLF_MODELS_DIR=str(models_dir),
        IMGCLF_DEFAULT_MODEL="efficientnet-lite0",
        IMGCLF_HOST="127.0.0.1",
        IMGCLF_PORT=str(port),
        IMGCLF_WATCH_INTERVAL="0",
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "server.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=sink, stderr=sink)
        try:
            _wait_ready(process, url, log)
            yield LiveServer(url, models_dir)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def in_ci() -> bool:
    """CI services (GitHub Actions, GitLab, our .ci/run) set CI=true."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


SKIPPED: list[str] = []  # why the browser tests were skipped here, for the banner at the end of the run


def missing_browser_tool(reason: str) -> NoReturn:
    """In CI a missing browser fails the browser tests, so CI cannot go green without them; on a developer's
    machine they are skipped, and a banner at the end of the run says so (``pytest_terminal_summary``)."""
    if in_ci():
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)
    SKIPPED.append(reason)
    pytest.skip(f"BROWSER TESTS SKIPPED: {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A loud banner when the browser tests were skipped: a skip in a long summary is easy to miss."""
    if SKIPPED:
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED (they fail in CI)", red=True, bold=True)
        for reason in sorted(set(SKIPPED)):
            terminalreporter.write_line(f"  {reason}", red=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, per test module: Playwright's sync API keeps its event loop marked as running in this thread while
    it is started, which would break ``asyncio.run`` in the tests that follow, so it is stopped after each module."""
    if not CHROMIUM.exists():
        missing_browser_tool(
            f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package with apt-get "
            "(as root or with sudo); it could not here"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_browser_tool("Playwright for Python is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What a page did that a test should know about: console errors, uncaught exceptions, HTTP errors, and
    requests that tried to leave the machine."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    http_errors: list[tuple[int, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def route(self, route: Route, request: Request) -> None:
        url = request.url
        if url.startswith((self.origin, "data:", "blob:")):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("internetdisconnected")

    def assert_clean(self, *, expected_statuses: tuple[int, ...] = ()) -> None:
        """No uncaught error, no request off the machine, and console errors only for the HTTP errors the test
        caused on purpose (Chromium logs each failed load as "Failed to load resource")."""
        assert not self.page_errors, self.page_errors
        assert not self.refused, f"requests that left the machine: {self.refused}"
        unexpected_http = [(status, url) for status, url in self.http_errors if status not in expected_statuses]
        assert not unexpected_http, unexpected_http
        allowed = [f"the server responded with a status of {status}" for status in expected_statuses]
        unexpected = [text for text in self.console_errors if not any(note in text for note in allowed)]
        assert not unexpected, f"console errors: {unexpected}"


@dataclass
class BrowserPage:
    page: Page
    log: PageLog
    server: LiveServer

    def screenshot(self, name: str, **options: Any) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), **options)
        return path


def open_page(browser: Browser, server: LiveServer, **context_options: Any) -> Iterator[BrowserPage]:
    context = browser.new_context(**context_options)
    log = PageLog(origin=server.url)
    context.route("**/*", log.route)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("console", log.on_console)
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))
    page.on(
        "response", lambda response: response.status >= 400 and log.http_errors.append((response.status, response.url))
    )
    try:
        yield BrowserPage(page, log, server)
    finally:
        context.close()


@pytest.fixture
def desktop(browser: Browser, live_server: LiveServer) -> Iterator[BrowserPage]:
    yield from open_page(browser, live_server, viewport={"width": 1280, "height": 900})


@pytest.fixture
def phone(browser: Browser, live_server: LiveServer) -> Iterator[BrowserPage]:
    """A phone-sized screen (390 x 844 CSS pixels, touch, 3x pixels)."""
    yield from open_page(
        browser,
        live_server,
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )


@pytest.fixture(scope="session")
def chelsea_jpg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np
    import skimage.data
    from PIL import Image

    path = tmp_path_factory.mktemp("photos") / "chelsea.jpg"
    Image.fromarray(np.asarray(skimage.data.chelsea())).save(path, quality=95)
    return path
