"""Screenshots of the page after Analyse, at a desktop and a phone size, for the docs and for a person to
look at: the bundled model (or MODEL_ID) served in this process, Debian's Chromium driven by Playwright.

    python3 tools/screenshots.py examples/person1951_bacteria_4882.jpeg --name referred --out docs/images
    python3 tools/screenshots.py FILM.dcm --window Lung --zoom 14 --phone_scroll_to "#large-view" --name dicom-lung
    PNEUMOLENS_TRAINING_FILMS=../shared/data/chest_xray python3 tools/screenshots.py EXAMPLE --name similar \
        --scroll_to "#similar-films" --out docs/images

Writes NAME-desktop.png (1440x900) and NAME-phone.png (390x844, the viewport after Analyse, where the page
brings the decision into view) and prints the headline each shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app  # noqa: E402
from pneumolens.serving.settings import ServingSettings  # noqa: E402

VIEWPORTS = {"desktop": (1440, 900), "phone": (390, 844)}
HIDE_FILMS = ("#similar-gallery img { visibility: hidden !important; }"
              "#similar-gallery .thumbnail-item { background: repeating-linear-gradient(45deg, #bbb 0 6px, #d4d4d4 6px 12px)"
              " !important; }")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def capture(url: str, image: str, out: Path, name: str, large: str | None = None,
            phone_scroll_to: str | None = None, scroll_to: str | None = None, show_films: bool = False,
            window: str | None = None, zoom: int = 0, quiz_read: str | None = None) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                             args=CHROMIUM_FLAGS)
        for size, (width, height) in VIEWPORTS.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url + ("?mode=quiz" if quiz_read else ""), wait_until="load")
            if quiz_read:
                page.wait_for_function("() => document.querySelector('#quiz-switch input')?.checked", timeout=30_000)
            page.locator("input[type=file]").first.set_input_files(image)
            page.locator("#preview img").first.wait_for(state="visible", timeout=60_000)
            if window:  # a DICOM's window preset, chosen before the analysis
                page.locator("#window-choice input").click()
                page.get_by_role("option", name=window).first.click()
                page.wait_for_timeout(1500)
            page.get_by_role("button", name="Analyse").click()
            if quiz_read:  # read-first: the film alone, then the student's read reveals the rest
                page.locator("#quiz-film img").first.wait_for(state="visible", timeout=120_000)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out / f"{name}-before-{size}.png"))
                page.locator(f"#read-{quiz_read.lower().replace(' ', '-')}").click()
                name_now = f"{name}-after"
            page.locator("#probability").wait_for(timeout=120_000)
            page.locator("#large-view img").first.wait_for(state="visible", timeout=60_000)
            page.wait_for_timeout(1500)  # the scroll to the decision and the maps' layout
            if large:
                page.locator("#large-choice").get_by_text(large, exact=True).click()
                page.wait_for_timeout(1500)
            page.locator("#similar-sentence p").first.wait_for(timeout=60_000)  # the row, filled after the maps
            target = phone_scroll_to if size == "phone" and phone_scroll_to else scroll_to
            if target:
                page.locator(target).first.scroll_into_view_if_needed()
                page.wait_for_timeout(1500)  # the row's pictures
            if zoom:  # wheel steps over the large view, a third of the way across
                box = page.locator("#large-view img").first.bounding_box()
                page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.45)
                for _ in range(zoom):
                    page.mouse.wheel(0, -200)
                    page.wait_for_timeout(120)
                page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] - 30)  # the pointer out of the picture
                page.wait_for_timeout(1500)
            # No training film goes into the repository, not even in a screenshot: the row's pictures are
            # hatched over, their labels and similarities kept (look at them unhidden with --show_films).
            if not show_films:
                page.add_style_tag(content=HIDE_FILMS)
                page.wait_for_timeout(300)
            path = out / f"{name_now if quiz_read else name}-{size}.png"
            page.screenshot(path=str(path))
            print(f"{path}: {page.locator('#decision h3').first.inner_text()}")
            page.close()
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="The film to analyse (an official validation image: no training film).")
    parser.add_argument("--name", required=True, help="The screenshots' file name stem.")
    parser.add_argument("--out", default="outputs/screenshots", help="Output directory.")
    parser.add_argument("--large", default=None, help="The map to show large, by its title (e.g. 'Attention rollout').")
    parser.add_argument("--phone_scroll_to", default=None,
                        help="On the phone, scroll this element (a CSS selector) into view before the screenshot.")
    parser.add_argument("--scroll_to", default=None,
                        help="At both sizes (unless --phone_scroll_to), scroll this element into view first.")
    parser.add_argument("--window", default=None,
                        help="For a DICOM: the window preset to choose before Analyse, by the start of its name ('Lung').")
    parser.add_argument("--zoom", type=int, default=0, help="Wheel steps to zoom the large view by after the analysis.")
    parser.add_argument("--quiz_read", default=None,
                        help="Read-first mode (/?mode=quiz): NAME-before-SIZE.png after Analyse, then this read "
                             "('PNEUMONIA', 'NORMAL', 'Not sure') and NAME-after-SIZE.png.")
    parser.add_argument("--show_films", action="store_true",
                        help="Leave the similar training films' pictures visible (to look at; never to commit).")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = app.build_demo(app.service_for(ServingSettings.from_environment()))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        capture(url, args.image, out, args.name, args.large, args.phone_scroll_to, args.scroll_to, args.show_films,
                args.window, args.zoom, args.quiz_read)
    finally:
        demo.close()


if __name__ == "__main__":
    main()
