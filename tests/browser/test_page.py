"""The page at / in a real browser: what a person sees and can do with it."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import BrowserPage

pytestmark = pytest.mark.integration

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}
EXPLAIN_TIMEOUT_MS = 180_000  # a default grid is 170 forward passes; this machine is shared


def load(browser_page: BrowserPage) -> None:
    page = browser_page.page
    page.goto(browser_page.server.url + "/")
    page.wait_for_selector("#model:not([disabled])")


def upload(browser_page: BrowserPage, *paths: Path) -> None:
    browser_page.page.set_input_files("#file", [str(path) for path in paths])


def bars(browser_page: BrowserPage) -> list[tuple[str, str]]:
    """(label, score text) of each bar of the newest result, best first."""
    page = browser_page.page
    page.wait_for_selector(".result .bar")
    first = page.locator(".result").first
    labels = first.locator(".bar .label").all_inner_texts()
    scores = first.locator(".bar .score").all_inner_texts()
    return list(zip(labels, scores, strict=True))


def canvas_pixels(browser_page: BrowserPage, selector: str) -> np.ndarray:
    """The RGBA pixels of a canvas, read back from the page."""
    data = browser_page.page.evaluate(
        """(selector) => {
            const canvas = document.querySelector(selector);
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
            return {width: canvas.width, height: canvas.height, data: Array.from(pixels.data)};
        }""",
        selector,
    )
    return np.asarray(data["data"], dtype=np.uint8).reshape(data["height"], data["width"], 4)


def test_a_cat_photo_its_top_classes_and_where_the_model_looked(desktop: BrowserPage, chelsea_jpg: Path) -> None:
    page = desktop.page
    load(desktop)
    assert page.locator("#model").input_value() == "efficientnet-lite0"
    upload(desktop, chelsea_jpg)
    top = bars(desktop)
    assert len(top) == 5
    cats = [(label, score) for label, score in top[:3] if label in CAT_CLASSES]
    assert cats, top
    label, score = cats[0]
    assert score.endswith("%") and 1.0 < float(score[:-1]) <= 100.0
    page.wait_for_function("document.querySelector('#status').textContent.includes('chelsea.jpg')")

    # Toggle that class's heatmap: the page draws the service's overlay PNG into the canvas.
    button = page.locator(".result").first.locator(".bar", has_text=label).locator("button")
    with page.expect_response(lambda r: "/explain" in r.url, timeout=EXPLAIN_TIMEOUT_MS) as answer:
        button.click()
    page.wait_for_selector(".result .heat:not([hidden])", timeout=EXPLAIN_TIMEOUT_MS)
    assert button.get_attribute("aria-pressed") == "true"
    assert page.locator(".result .photo").first.is_hidden()
    explanation = answer.value.json()
    assert explanation["target"]["label"] == label
    png = base64.b64decode(explanation["overlay"].split(",", 1)[1])
    expected = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    drawn = canvas_pixels(desktop, ".result .heat")
    assert drawn.shape == expected.shape == (224, 224, 4)
    assert np.abs(drawn.astype(int) - expected.astype(int)).max() <= 2  # the overlay, pixel for pixel
    assert drawn[..., 3].min() == 255 and drawn[..., :3].std() > 20  # opaque, and a picture, not a blank
    assert "What the model saw" in page.locator(".result .caption").first.inner_text()
    desktop.screenshot("page-heatmap")
    desktop.screenshot("page-heatmap-full", full_page=True)

    button.click()  # off again: the photo is back
    assert button.get_attribute("aria-pressed") == "false"
    assert page.locator(".result .photo").first.is_visible()
    desktop.log.assert_clean()


def test_the_model_card_of_the_default_model(desktop: BrowserPage) -> None:
    page = desktop.page
    load(desktop)
    page.click("#card summary")
    card = page.locator("#card-body")
    card.get_by_text("1000 classes", exact=True).wait_for()
    assert card.locator(".labels li").count() == 1000
    card.get_by_text("All 1000 labels, by index").click()
    assert card.locator(".labels li").nth(285).inner_text() == "Egyptian cat"
    detail = json.loads(page.evaluate("fetch('v1/models/efficientnet-lite0').then(r => r.text())"))
    for name, digest in detail["files"].items():
        assert card.get_by_text(digest).is_visible(), name
    assert card.get_by_text("centre 224×224 px").is_visible()
    assert card.get_by_text("no validation metrics").is_visible()
    desktop.screenshot("card-default", full_page=True)
    desktop.log.assert_clean()


def test_the_card_of_a_trained_model_draws_its_curves_and_confusion_matrix(desktop: BrowserPage) -> None:
    page = desktop.page
    load(desktop)
    page.select_option("#model", "digits")
    page.click("#card summary")
    card = page.locator("#card-body")
    card.get_by_text("digits", exact=True).wait_for()
    charts = card.locator("svg.chart:not(.reliability)")
    assert charts.count() == 2  # loss and accuracy per epoch
    epochs = int(page.evaluate("fetch('v1/models/digits').then(r => r.json()).then(d => d.metrics.history.length)"))
    assert epochs == 8
    for chart in charts.all():
        assert chart.locator("polyline").count() == 2  # training and validation
        assert chart.locator("circle").count() == 2 * epochs
    assert card.locator("svg.matrix rect").count() == 100  # 10 x 10
    assert card.locator("table", has_text="Per-class scores").locator("tbody tr").count() == 10
    accuracy = card.locator("dt", has_text="Accuracy").first.locator("xpath=following-sibling::dd[1]").inner_text()
    assert accuracy.endswith("%") and float(accuracy[:-1]) > 80
    desktop.screenshot("card-digits", full_page=True)
    desktop.log.assert_clean()


def test_a_text_file_gets_the_services_own_words(desktop: BrowserPage, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    page = desktop.page
    load(desktop)
    upload(desktop, notes)
    error = page.locator(".result .error").first
    error.wait_for()
    text = error.inner_text()
    assert "not an image the service can read" in text  # in plain words
    assert "the data is not an image in a supported format" in text  # and what the API said
    assert "notes.txt" in page.locator("#status").inner_text()  # announced to screen readers too
    desktop.screenshot("page-error")
    desktop.log.assert_clean(expected_statuses=(415,))


def test_several_images_at_once(desktop: BrowserPage, chelsea_jpg: Path, tmp_path: Path) -> None:
    import skimage.data

    coffee = tmp_path / "coffee.png"
    Image.fromarray(np.asarray(skimage.data.coffee())).save(coffee)
    load(desktop)
    upload(desktop, chelsea_jpg, coffee)
    page = desktop.page
    page.wait_for_function("document.querySelectorAll('.result .bar').length === 10")
    names = page.locator(".result .name").all_inner_texts()
    assert sorted(names) == ["chelsea.jpg", "coffee.png"]
    coffee_result = page.locator(".result", has_text="coffee.png")
    assert coffee_result.locator(".bar .label").first.inner_text() == "espresso"
    desktop.log.assert_clean()


def test_keyboard_only(desktop: BrowserPage, chelsea_jpg: Path) -> None:
    """Tab to the file picker, open it with the keyboard, then tab to a heatmap button and press it."""
    page = desktop.page
    load(desktop)
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file":
            break
    assert page.evaluate("document.activeElement.id") == "file"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(str(chelsea_jpg))
    bars(desktop)
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('heat-toggle')"):
            break
    focused_label = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused_label.startswith("Show where the model saw")
    page.keyboard.press("Enter")
    page.wait_for_selector(".result .heat:not([hidden])", timeout=EXPLAIN_TIMEOUT_MS)
    assert page.evaluate("document.activeElement.getAttribute('aria-pressed')") == "true"
    assert "Heatmap of" in page.locator("#status").inner_text()
    desktop.log.assert_clean()


def test_usable_on_a_phone_sized_screen(phone: BrowserPage, chelsea_jpg: Path) -> None:
    page = phone.page
    load(phone)
    upload(phone, chelsea_jpg)
    top = bars(phone)
    assert any(label in CAT_CLASSES for label, _ in top[:3])
    page.click("#card summary")
    page.locator("#card-body").get_by_text("1000 classes", exact=True).wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen: it scrolls sideways"
    button = page.locator(".result .heat-toggle").first
    box = button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390 and box["height"] >= 32  # on screen, big enough to tap
    phone.screenshot("phone")
    phone.log.assert_clean()


def test_drop_and_paste(desktop: BrowserPage, chelsea_jpg: Path) -> None:
    """A file dropped on the drop zone and an image pasted into the page are classified like a picked one."""
    data = base64.b64encode(chelsea_jpg.read_bytes()).decode()
    page = desktop.page
    load(desktop)
    page.evaluate(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const file = (name) => new File([bytes], name, {type: "image/jpeg"});
            const dropped = new DataTransfer();
            dropped.items.add(file("dropped.jpg"));
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dropped, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dropped, bubbles: true, cancelable: true}));
            const pasted = new DataTransfer();
            pasted.items.add(file("pasted.jpg"));
            const paste = {clipboardData: pasted, bubbles: true, cancelable: true};
            document.dispatchEvent(new ClipboardEvent("paste", paste));
        }""",
        data,
    )
    page.wait_for_function("document.querySelectorAll('.result .bar').length === 10")
    for name in ("dropped.jpg", "pasted.jpg"):
        result = page.locator(".result", has_text=name)
        assert result.locator(".bar .label").first.inner_text() in CAT_CLASSES
    desktop.log.assert_clean()


def test_a_small_upload_is_scaled_up_with_crisp_pixels(desktop: BrowserPage, chelsea_jpg: Path, tmp_path: Path) -> None:
    digit = tmp_path / "digit.png"
    Image.fromarray((np.indices((28, 28)).sum(axis=0) % 2 * 255).astype(np.uint8)).save(digit)  # a 28 px checkerboard
    load(desktop)
    upload(desktop, digit, chelsea_jpg)
    page = desktop.page
    page.wait_for_function("document.querySelectorAll('.result .bar').length === 10")
    small = page.locator(".result", has_text="digit.png").locator(".photo")
    large = page.locator(".result", has_text="chelsea.jpg").locator(".photo")
    style = "(node) => [getComputedStyle(node).imageRendering, node.getBoundingClientRect().width]"
    rendering, width = small.evaluate(style)
    assert rendering == "pixelated" and width >= 200, (rendering, width)  # not a 28 px speck
    assert large.evaluate(style)[0] == "auto"  # a photo larger than its box is left as it was
    desktop.log.assert_clean()
