"""The app and its report in a real browser: headless Debian Chromium driven by Playwright."""

import shutil
from pathlib import Path

import pytest

import app
from pneumolens.explain import METHODS
from pneumolens.modeling import ModelSource
from pneumolens.service import PneumoLensService
from pneumolens.serving.displayed import report_html
from tests.conftest import run_main
from tests.test_presentation import CERTAINTY

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")]

# No background traffic: this machine has no network, and the test must not depend on one.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser_service(tiny_trained_dirs, real_imagefolder, tmp_path_factory):
    from pneumolens.commands import main as pneumolens_main
    from tests.test_app import faithfulness_summary_file

    # With a faithfulness measurement, so the captions carry verdicts as long as the bundled model's, and
    # its training films indexed and at hand, so the row of similar films is pictured.
    directory = tmp_path_factory.mktemp("browser") / "model"
    shutil.copytree(tiny_trained_dirs["dinov2"], directory)
    faithfulness_summary_file(directory)
    indexed = run_main(pneumolens_main, "python -m pneumolens", "index-films", "--model_name_or_path", directory,
                       "--dataset_name_or_dir", real_imagefolder, "--validation_fraction", "0.25")
    assert indexed.returncode == 0, indexed.stderr
    return PneumoLensService(ModelSource(str(directory)), films_setting=str(real_imagefolder))


@pytest.fixture(scope="module")
def app_url(browser_service):
    demo = app.build_demo(browser_service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    yield url
    demo.close()


def _inside_viewport(page, selector: str) -> bool:
    """Whether the element is wholly on screen without scrolling."""
    box = page.locator(selector).first.bounding_box()
    viewport = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= viewport["height"] \
        and box["x"] + box["width"] <= viewport["width"]


def test_preview_then_analysis_then_report_download(app_url, browser_service, tmp_path):
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
        page.locator("#large-view img").first.wait_for(state="visible", timeout=60_000)
        decision = page.locator("#decision").inner_text()
        label_text = decision.splitlines()[0].removeprefix("Decision:").strip()
        page.wait_for_timeout(500)  # let the layout settle before measuring it
        in_view = {name: _inside_viewport(page, selector) for name, selector in [
            ("decision", "#decision"), ("probabilities", "#probability"), ("threshold", ".probability-threshold"),
            *((method, f"#map-{method} img") for method in METHODS),
            *((f"scale of {method}", f"#scale-{method}") for method in METHODS)]}
        # Each scale sits beside its own map: just below it, as wide as it at most.
        beside = {}
        for method in METHODS:
            shown, scale = (page.locator(selector).first.bounding_box()
                            for selector in (f"#map-{method}", f"#scale-{method}"))
            beside[method] = 0 <= scale["y"] - (shown["y"] + shown["height"]) < 80 and \
                shown["x"] - 2 <= scale["x"] <= shown["x"] + shown["width"]
        large = page.locator("#large-view img").first.bounding_box()
        page_text = page.locator("body").inner_text()
        # The reading of the maps: one line above them, and a caveat under each map that peaks at the edge.
        agreement_line = page.locator("#maps-agreement").inner_text().strip()
        caveats = {element.get_attribute("id").removeprefix("caveat-")
                   for element in page.locator(".edge-caveat").all() if element.is_visible()}
        assert not page.locator("#downloads").is_visible()  # no empty download box before a report
        page.screenshot(path=str(tmp_path / "analysis.png"))  # the viewport: what a person sees
        # Below the maps: the similar training films, pictured (this server has the training images).
        page.locator("#similar-gallery img").nth(5).wait_for(state="attached", timeout=60_000)
        similar_sentence = page.locator("#similar-sentence").inner_text()
        films_shown = page.locator("#similar-gallery img").count()
        # Does this decision hold? The check's sentence and figure, on demand.
        page.get_by_text("Does this decision hold?").first.click()
        page.get_by_role("button", name="Check this image").click()
        page.locator("#robustness-sentence").get_by_text("holds under").wait_for(timeout=120_000)
        page.locator("#robustness-figure img").first.wait_for(state="visible", timeout=60_000)
        robustness_sentence = page.locator("#robustness-sentence").inner_text()
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
    assert all(beside.values()), beside
    expected = browser_service.analyse(app.EXAMPLES[-1])
    assert agreement_line == expected.agreement["sentence"] and agreement_line
    assert caveats == {name for name, reading in expected.readings.items() if reading.peak_at_edge}
    assert large["width"] >= 600, large  # one map, large, over the radiograph
    assert not CERTAINTY.search(page_text), "a probability printed as 100 % or 0 %"
    assert "decided from" in decision and "%" in decision  # the threshold, in words beside its mark
    assert label_text.strip() in ("NORMAL", "PNEUMONIA")
    assert robustness_sentence.startswith(f"The decision {label_text.strip()} holds under")
    similar = expected.similar
    assert f"{similar['counts']['PNEUMONIA']} of the 20 most similar training films are PNEUMONIA" in similar_sentence
    assert "not a second opinion" in similar_sentence and films_shown == 6
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    # The check ran on this upload, so the page's report holds it too.
    assert "<h2>Does this decision hold?</h2>" in report
    assert f"Decision: {label_text.strip()}" in report or label_text.strip() in decision
    # The film, its maps and the six similar films.
    assert "Not a medical device" in report and report.count("data:image/jpeg;base64,") == 1 + len(METHODS) + 6
    assert (tmp_path / "analysis.png").stat().st_size > 20_000


def test_on_a_phone_the_decision_comes_into_view_after_analyse_and_the_maps_stack(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        page.goto(app_url, wait_until="load")
        page.get_by_role("button", name="Analyse").wait_for(timeout=60_000)
        page.locator("input[type=file]").first.set_input_files(app.EXAMPLES[0])
        page.locator("#preview img").first.wait_for(state="visible", timeout=60_000)
        page.get_by_role("button", name="Analyse").scroll_into_view_if_needed()
        before = _inside_viewport(page, "#decision")
        page.get_by_role("button", name="Analyse").click()
        page.locator("#decision").get_by_text("Decision:").wait_for(timeout=120_000)
        for method in METHODS:
            page.locator(f"#map-{method} img").first.wait_for(state="visible", timeout=60_000)
        page.wait_for_timeout(1000)  # the page scrolls itself; the test does not
        decision_in_view = _inside_viewport(page, "#decision")
        boxes = [page.locator(f"#map-{method} img").first.bounding_box() for method in METHODS]
        page.screenshot(path=str(tmp_path / "phone.png"))
        shutil.copy(tmp_path / "phone.png", "/tmp/pneumolens-browser-phone.png")
        browser.close()
    assert not before and decision_in_view
    assert min(box["width"] for box in boxes) >= 300, boxes  # one map a row, the width of the screen
    assert min(box["height"] for box in boxes) >= 150, boxes  # and each one drawn, none collapsed


def test_a_dicom_at_a_lung_window_zooms_and_pans_with_its_map(app_url, tmp_path):
    """A hospital film (JPEG Lossless, MONOCHROME1): its window control appears, the lung preset changes the
    preview, and after Analyse the wheel zooms the large view, film and map together; its button resets."""
    import numpy as np
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from tests.dicom_films import film_dicom, twelve_bit

    grey = np.asarray(Image.open(app.EXAMPLES[0]).convert("L").resize((640, 512)))
    film = tmp_path / "IM0001.dcm"
    film.write_bytes(film_dicom(4095 - twelve_bit(grey), "jpeg-lossless-sv1", "MONOCHROME1", window=(2000, 3500)))
    transforms = "() => [...document.querySelectorAll('#large-view img')].map(image => getComputedStyle(image).transform)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(app_url, wait_until="load")
        page.locator("input[type=file]").first.set_input_files(str(film))
        page.locator("#window-choice").wait_for(state="visible", timeout=60_000)
        page.locator("#preview img").first.wait_for(state="visible", timeout=60_000)
        as_stored = page.locator("#preview img").first.get_attribute("src")
        page.locator("#window-choice input").click()
        page.get_by_role("option", name="Lung").first.click()
        page.wait_for_function(f"() => document.querySelector('#preview img').src !== {as_stored!r}", timeout=30_000)
        level = page.locator("#window-level input[type=number]").first.input_value()
        page.get_by_role("button", name="Analyse").click()
        page.locator("#probability").wait_for(timeout=120_000)
        page.locator("#large-view img").first.wait_for(state="visible", timeout=60_000)
        page.wait_for_timeout(1000)
        before = page.evaluate(transforms)
        box = page.locator("#large-view img").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.45)
        for _ in range(10):
            page.mouse.wheel(0, -200)
            page.wait_for_timeout(100)
        page.wait_for_timeout(500)
        zoomed = page.evaluate(transforms)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.6, steps=5)
        page.mouse.up()
        panned = page.evaluate(transforms)
        page.screenshot(path=str(tmp_path / "dicom.png"))
        page.locator("#large-view").get_by_role("button", name="Undo").click()
        page.wait_for_timeout(300)
        reset = page.evaluate(transforms)
        browser.close()
    assert float(level) != 2000  # the lung preset moved the level from the file's own window
    scale = float(zoomed[0].split("(")[1].split(",")[0])
    assert len(zoomed) == 2 and zoomed[0] == zoomed[1] and scale > 1.5, zoomed  # film and map zoom as one
    assert panned[0] == panned[1] and panned[0] != zoomed[0]
    assert before[0] in ("none", "matrix(1, 0, 0, 1, 0, 0)") and reset[0] in ("none", "matrix(1, 0, 0, 1, 0, 0)")


@pytest.fixture(scope="module")
def quiz_url(browser_service, tmp_path_factory, real_images):
    """The page with a case set of six real films, two of them pneumonia."""
    from pneumolens.teaching import CaseSet

    root = tmp_path_factory.mktemp("cases")
    for label, count in (("NORMAL", 4), ("PNEUMONIA", 2)):
        (root / label).mkdir()
        for path in real_images[label][:count]:
            shutil.copy(path, root / label / path.name)
    demo = app.build_demo(browser_service, cases=CaseSet.from_setting(str(root)))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    yield url
    demo.close()


def test_read_first_mode_holds_the_answer_until_the_read_and_tallies_the_session(quiz_url, tmp_path):
    """/?mode=quiz: after Analyse the page shows no decision, probability or map until a read is committed;
    "Next case" never repeats a case; the tally matches a hand count."""
    import hashlib
    import re

    import httpx
    from playwright.sync_api import sync_playwright

    reads = ["NORMAL", "PNEUMONIA", "Not sure", "NORMAL", "PNEUMONIA", "NORMAL"]
    answer_words = re.compile(r"Decision|Refer|P\(PNEUMONIA\)|%|more evidence for|more relevance for")
    seen, before_read, after_read, results, previous = [], [], [], [], ""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(quiz_url + "?mode=quiz", wait_until="load")
        page.wait_for_function("() => document.querySelector('#quiz-switch input')?.checked", timeout=30_000)
        for number, read in enumerate(reads, start=1):
            page.get_by_role("button", name="Next case").click()
            page.wait_for_function(f"() => document.body.innerText.includes('case-{number:03d}')", timeout=60_000)
            page.wait_for_function(  # this case's preview, not the last one's
                f"() => {{ const i = document.querySelector('#preview img'); return i && i.src !== {previous!r}; }}",
                timeout=60_000)
            previous = page.locator("#preview img").first.get_attribute("src")
            seen.append(hashlib.sha1(httpx.get(previous).content).hexdigest())
            page.get_by_role("button", name="Analyse").click()
            page.locator("#quiz-film img").first.wait_for(state="visible", timeout=120_000)
            page.wait_for_timeout(500)
            visible_maps = sum(page.locator(f"#map-{method} img").first.is_visible() for method in METHODS
                               if page.locator(f"#map-{method} img").count())
            before_read.append((answer_words.findall(page.inner_text("body")), visible_maps))
            if number == 1:
                page.screenshot(path=str(tmp_path / "quiz-before.png"))
            page.locator(f"#read-{read.lower().replace(' ', '-')}").click()
            page.locator("#decision h3").first.wait_for(timeout=60_000)
            page.locator(f"#map-{METHODS[0]} img").first.wait_for(state="visible", timeout=60_000)
            after_read.append(bool(answer_words.search(page.inner_text("body"))))
            results.append(page.locator("#quiz-result").inner_text())
        page.get_by_role("button", name="Next case").click()
        page.get_by_text("You have read every case of this set (6)").wait_for(timeout=30_000)
        tally = page.locator("#tally-text").inner_text()
        page.screenshot(path=str(tmp_path / "quiz-after.png"))
        browser.close()
    assert before_read == [([], 0)] * len(reads), before_read  # nothing the model says, before the read
    assert all(after_read)
    assert len(set(seen)) == len(reads)  # no case twice
    # The hand count, from each case's comparison line.
    parsed = [re.match(r"(?:You read (\w+)|You were not sure); the model says (\w+)( but refers)?.*label is (\w+)",
                       line).groups() for line in results]
    student_right = sum(student == label for student, _, _, label in parsed if student)
    committed = sum(student is not None for student, _, _, _ in parsed)
    decided = [(model, label) for _, model, referred, label in parsed if not referred]
    assert f"Cases read: {len(reads)}." in tally
    assert f"matched the label in {student_right} of {committed} (not sure: 1)" in tally
    if decided:
        assert f"{sum(m == l for m, l in decided)} of the {len(decided)} it decided" in tally
    differ = sum(student is not None and student != model for student, model, _, _ in parsed)
    assert (f"differed on {differ}" in tally) == (differ > 0)


@pytest.mark.parametrize("example", [app.EXAMPLES[0], app.EXAMPLES[-1]])
def test_the_report_prints_on_a4_and_letter_in_two_pages_with_every_map_and_its_scale(example, tmp_path):
    """Printed by Chromium on A4 and on US Letter, read back with pypdf: at most 2 pages on each, the input and
    the four maps as images, each map's scale in words, and no page that ends on a heading."""
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader

    from pneumolens.explain import TITLES

    service = PneumoLensService()  # the bundled model: every map, with its measured verdict
    report = tmp_path / "report.html"
    report.write_text(report_html(service, service.analyse(example), 0.45, Path(example).name), encoding="utf-8")
    papers = ("A4", "Letter")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(report.as_uri(), wait_until="load")
        for paper in papers:
            page.pdf(path=str(tmp_path / f"report-{paper}.pdf"), format=paper)
        browser.close()
    for paper in papers:
        pages = PdfReader(tmp_path / f"report-{paper}.pdf").pages
        texts = [" ".join(page.extract_text().split()) for page in pages]
        text = " ".join(texts)
        assert len(pages) <= 2, (paper, len(pages))
        assert sum(len(page.images) for page in pages) == 1 + len(METHODS)
        assert "Not a medical device" in text and "pneumolens-dinov2-small" in text and Path(example).name in text
        for method in METHODS:
            assert TITLES[method] in text
        assert text.count("low (clear) high high:") == len(METHODS) and text.count("relative to this image's strongest") >= 4
        headings = ("PneumoLens report", "Image", "Explanation maps", "Appendix: how each map was made and measured")
        for page in pages:
            last = [line.strip() for line in page.extract_text().splitlines() if line.strip()][-1]
            assert last not in headings and not last.startswith("Decision:"), (paper, last)
        assert not CERTAINTY.search(text)
