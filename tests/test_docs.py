"""The README and docs/: every relative link and image resolves, and the README's three commands are the
ones CI runs."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks (a link inside code is an example, not a link)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in prose(path.read_text()).splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_image_resolves(page):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not this test's business
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part).resolve() if file_part else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading '#{anchor}' in {path.relative_to(REPO)}")
    assert not broken, broken


def test_the_readme_is_short_and_its_three_commands_are_the_ones_ci_runs():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    install, serve, test = (block.strip() for block in re.findall(r"```bash\n(.*?)```", quick_start, re.DOTALL))
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert install in ci and test in ci
    assert serve == "python3 app.py" and (REPO / "app.py").is_file()
    assert (REPO / "docs" / "images" / "app.png").stat().st_size < 400_000  # the screenshot, kept small


def test_the_slug_rule_matches_githubs_for_the_headings_we_link():
    assert slug("The bundled model under the stress suite") == "the-bundled-model-under-the-stress-suite"
    assert slug("From a program (`gradio_client`)") == "from-a-program-gradio_client"
