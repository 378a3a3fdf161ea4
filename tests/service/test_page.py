"""The web page in a real browser: headless Chromium (Debian's package) driven by Playwright.

Skipped where there is no Chromium, except when LIT_NETS_REQUIRE_BROWSER=1 (CI sets it and installs Chromium):
then a missing browser fails the test instead of hiding it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LIT_NETS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("LIT_NETS_REQUIRE_BROWSER") == "1"
if not REQUIRED:
    pytest.importorskip("playwright")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)", allow_module_level=True)
# Chromium as root needs --no-sandbox; the network flags stop it calling home on a machine with no internet
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "LIT_NETS_REQUIRE_BROWSER=1 but no chromium on PATH"
    with sync_playwright() as p:  # one per module: Playwright's sync API cannot run two at once
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, cnn_service):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(cnn_service[0] + "/")
    page.wait_for_selector("#image-input:not(.hidden)")
    return page


def test_upload_a_real_digit_shows_its_label_bars_and_gradcam(page, cnn_run, tmp_path: Path) -> None:
    from torchvision.io import encode_png

    from lit_nets.data import MNISTDataModule

    work, _ = cnn_run
    x, y = MNISTDataModule(data_dir=str(work / "data"), download=False).splits.test
    index = int((y == 7).nonzero()[0])  # a real 7 from the test split
    digit = tmp_path / "seven.png"
    digit.write_bytes(encode_png(x[index]).numpy().tobytes())
    page.set_input_files("#file", str(digit))
    page.wait_for_function("document.querySelector('#label').textContent !== '–'")
    assert page.inner_text("#label") == "7"
    assert page.locator("#bars .bar").count() == 10 and page.inner_text("#bars .bar.top .name") == "7"
    page.wait_for_selector("#gradcam-panel:not(.hidden)")
    assert page.eval_on_selector("#gradcam", "img => img.complete && img.naturalWidth") == 224
    page.screenshot(path=str(tmp_path / "page-upload.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'page-upload.png'}")


def test_a_tabular_record_shows_each_columns_contribution_as_bars(browser, wine_service, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 760})
    page.goto(wine_service[0] + "/")
    page.wait_for_selector("#table-input:not(.hidden)")
    page.click("#predict-record")
    page.wait_for_selector("#contributions-panel:not(.hidden)")
    assert page.locator("#contributions .bar").count() == 13  # every column of wine
    about = page.inner_text("#contributions-about")
    assert about.startswith(f'to the score (logit) of "{page.inner_text("#label")}"'), about
    bars = page.eval_on_selector_all(
        "#contributions .bar",
        "rows => rows.map(r => [r.querySelector('.neg .fill').style.width, r.querySelector('.pos .fill').style.width, "
        "parseFloat(r.querySelector('.value').textContent)])",
    )
    assert max(bars[0][:2]) == "100%"  # the largest first, at full width
    for negative, positive, value in bars:  # a bar to the left (red) when it lowers the score, else to the right
        assert (negative, positive)[value < 0] == "0%" and (negative, positive)[value >= 0] != "0%", bars
    page.screenshot(path=str(tmp_path / "page-tabular.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'page-tabular.png'}")
    page.close()


def test_draw_a_one_on_the_canvas(page, tmp_path: Path) -> None:
    page.click("#clear")
    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 40)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(box["x"] + 140, box["y"] + 40 + 10 * step)
    page.mouse.up()
    page.evaluate("document.querySelector('#label').textContent = '–'")
    page.click("#predict-drawing")
    page.wait_for_function("document.querySelector('#label').textContent !== '–'")
    assert page.inner_text("#label") == "1"
    page.screenshot(path=str(tmp_path / "page-drawing.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'page-drawing.png'}")


def test_an_error_is_shown_not_swallowed(page, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error", state="visible")
    assert "400: the file is not a PNG or JPEG image" in page.inner_text("#error")


def test_drawing_nothing_says_so(page) -> None:
    page.click("#clear")
    page.click("#predict-drawing")
    assert page.inner_text("#error") == "draw something first"


def test_the_page_asks_for_the_api_key_of_a_locked_service(browser, locked_server, cnn_run, tmp_path: Path) -> None:
    """A service started with an API key: the page's first prediction gets 401, the page asks for the key (a
    prompt, answered here), sends again with it, and shows the label."""
    from torchvision.io import encode_png

    from lit_nets.data import MNISTDataModule

    work, _ = cnn_run
    x, y = MNISTDataModule(data_dir=str(work / "data"), download=False).splits.test
    index = int((y == 7).nonzero()[0])
    digit = tmp_path / "seven.png"
    digit.write_bytes(encode_png(x[index]).numpy().tobytes())
    service, _ = locked_server
    asked = []
    page = browser.new_page()
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept("s3cret-key")))
    page.goto(service.url + "/")
    page.wait_for_selector("#image-input:not(.hidden)")
    page.set_input_files("#file", str(digit))
    page.wait_for_function("document.querySelector('#label').textContent !== '–'")
    label = page.inner_text("#label")
    page.close()
    assert asked == ["This service needs its API key:"] and label == "7"


def test_a_regression_model_takes_a_row_and_shows_a_number(browser, tmp_path: Path) -> None:
    """configs/regression.yaml on Auto MPG, served by a real process: the page takes a record (not a drawing) and shows
    the predicted miles per gallon, no class bars, and the columns' contributions to the value."""
    import json
    import urllib.request

    from helpers.cli import CONFIGS, in_process
    from helpers.service import serving

    args = ("--data.path", "data/autompg.csv", "--data.target", "mpg", "--data.sample", "autompg")
    quick = ("--trainer.max_epochs", "5", "--test_after_fit", "false", "--figures.enabled", "false")
    in_process("fit", "--config", str(CONFIGS / "regression.yaml"), *args, *quick, cwd=tmp_path, check=True)
    with serving(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", tmp_path) as url:
        info = json.load(urllib.request.urlopen(url + "/info"))["model"]
        assert info["task"] == "value" and info["target"] == "mpg" and info["kind"] == "tabular"
        page = browser.new_page(viewport={"width": 1300, "height": 760})
        page.goto(url + "/")
        page.wait_for_selector("#table-input:not(.hidden)")
        page.click("#predict-record")
        page.wait_for_selector("#contributions-panel:not(.hidden)")
        mpg = float(page.inner_text("#label").replace(",", ""))
        assert 5 < mpg < 50 and page.inner_text("#probability") == "", mpg  # miles per gallon, not a class
        assert page.locator("#bars .bar").count() == 0 and page.inner_text("#model").endswith("predicts mpg")
        assert page.inner_text("#contributions-about").startswith('to the value of "mpg"')
        page.screenshot(path=str(tmp_path / "page-regression.png"), full_page=True)
        print(f"screenshot: {tmp_path / 'page-regression.png'}")
        page.close()
