"""The app in a real browser: headless Debian Chromium driven by Playwright."""

import shutil
from pathlib import Path

import pytest

import app
from pneumolens.explain import METHODS
from pneumolens.modeling import ModelSource
from pneumolens.service import PneumoLensService

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")

# No background traffic: this machine has no network, and the test must not depend on one.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def app_url(tiny_trained_dirs, tmp_path_factory):
    from tests.test_app import faithfulness_summary_file

    # With a faithfulness measurement, so the captions carry verdicts as long as the bundled model's.
    directory = tmp_path_factory.mktemp("browser") / "model"
    shutil.copytree(tiny_trained_dirs["dinov2"], directory)
    faithfulness_summary_file(directory)
    demo = app.build_demo(PneumoLensService(ModelSource(str(directory))))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    yield url
    demo.close()


def _inside_viewport(page, selector: str) -> bool:
    """Whether the element is wholly on screen without scrolling."""
    box = page.locator(selector).first.bounding_box()
    viewport = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= viewport["height"] \
        and box["x"] + box["width"] <= viewport["width"]


def test_preview_then_analysis_then_report_download(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        # A laptop screen: after Analyse the decision, the probabilities and every map must be in view.
        page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        page.goto(app_url, wait_until="load")
        page.get_by_role("button", name="Analyse").wait_for(timeout=60_000)
        assert "Not a medical device" in page.content()
        page.locator("input[type=file]").first.set_input_files(app.EXAMPLES[-1])
        # The image shows as soon as it is uploaded, before any analysis.
        page.locator("#preview img").first.wait_for(state="visible", timeout=60_000)
        page.locator("#preview-details").get_by_text("px as decoded").wait_for(timeout=30_000)
        assert page.locator("#decision").inner_text().strip() == ""
        page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)
        page.get_by_role("button", name="Analyse").click()
        page.locator("#decision").get_by_text("Decision:").wait_for(timeout=120_000)
        for method in METHODS:
            page.locator(f"#map-{method} img").first.wait_for(state="visible", timeout=60_000)
        label_text = page.locator(".output-class, [data-testid=label-output-value]").first.inner_text(timeout=10_000)
        decision = page.locator("#decision").inner_text()
        page.wait_for_timeout(500)  # let the layout settle before measuring it
        in_view = {name: _inside_viewport(page, selector) for name, selector in [
            ("decision", "#decision"), ("probabilities", ".output-class, [data-testid=label-output-value]"),
            *((method, f"#map-{method} img") for method in METHODS)]}
        assert not page.locator("#downloads").is_visible()  # no empty download box before a report
        page.screenshot(path=str(tmp_path / "analysis.png"))  # the viewport: what a person sees
        page.get_by_role("button", name="Report and raw maps").click()
        link = page.locator("#downloads a[download='report.html']").first
        link.wait_for(timeout=120_000)
        with page.expect_download(timeout=60_000) as download:
            link.click()
        download.value.save_as(tmp_path / "report.html")
        page.screenshot(path=str(tmp_path / "downloads.png"), full_page=True)
        for name in ("preview", "analysis", "downloads"):
            shutil.copy(tmp_path / f"{name}.png", f"/tmp/pneumolens-browser-{name}.png")
        browser.close()
    assert all(in_view.values()), in_view
    assert label_text.strip() in ("NORMAL", "PNEUMONIA")
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f"Decision: {label_text.strip()}" in report or label_text.strip() in decision
    assert "Not a medical device" in report and report.count("data:image/jpeg;base64,") == 1 + len(METHODS)
    assert (tmp_path / "analysis.png").stat().st_size > 20_000
