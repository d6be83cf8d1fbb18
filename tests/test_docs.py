"""The README and docs/: every relative link and image resolves, and the README's three commands are the
ones CI runs."""

import functools
import re
import sys
from pathlib import Path

import pytest

import explain as explain_cli
from pneumolens import cli, commands

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


# -- what the docs show runs as shown -------------------------------------------------------------------------

DOCUMENTED = [*PAGES, REPO / "models" / "pneumolens-dinov2-small" / "README.md", REPO / "tools" / "gpu" / "README.md"]
# The project's command-line entry points, by how the docs start them.
SCRIPTS = {"train_hf.py": "train_hf", "evaluate_hf.py": "evaluate_hf", "explain.py": "explain",
           "deploy_space.py": "deploy_space"}
SUBCOMMANDS = {"explain": explain_cli.SUBCOMMANDS, "pneumolens.commands": tuple(commands.commands_of(commands.PNEUMOLENS))}


def documented_commands(text: str) -> list[str]:
    """The shell commands of a page: the lines of its bash blocks (continuations joined, comments cut) and
    its inline code that starts a Python script or `accelerate launch`."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        commands += [re.sub(r"\s+#.*$", "", line) for line in block.replace("\\\n", " ").splitlines()]
    commands += re.findall(r"`((?:python3? |accelerate launch )[^`]+)`", prose(text))
    return [command.strip() for command in commands if command.strip()]


def entry_point(tokens: list[str]) -> tuple[str, list[str]] | None:
    """(module, arguments) of a project command, or None for anything else (pip, pytest, app.py, bash)."""
    tokens = [token for token in tokens if not re.match(r"^[A-Z_]+=", token)]
    if len(tokens) < 2 or tokens[0] not in ("python", "python3"):
        return None
    if tokens[1:3] == ["-m", "pneumolens"]:
        return "pneumolens.commands", tokens[3:]
    if tokens[1] == "-m" and tokens[2].startswith(("pneumolens.", "benchmarks.")):
        return tokens[2], tokens[3:]
    script = tokens[1]
    if script in SCRIPTS:
        return SCRIPTS[script], tokens[2:]
    if script.startswith("benchmarks/") and script.endswith(".py"):
        return script[:-3].replace("/", "."), tokens[2:]
    return None


def help_text(module_name: str, arguments: list[str], monkeypatch, capsys) -> str:
    import importlib

    module = importlib.import_module(module_name)
    monkeypatch.setattr(sys, "argv", [module_name, *arguments, "--help"])
    with pytest.raises(SystemExit):
        module.main()
    return capsys.readouterr().out


def flags(tokens: list[str]) -> set[str]:
    return {token.split("=", 1)[0] for token in tokens if token.startswith("--")}


def test_every_flag_of_every_documented_command_is_one_its_script_takes(monkeypatch, capsys):
    from accelerate.commands.launch import launch_command_parser

    # Its parser's own option strings: its help text leaves some groups out under pytest.
    accelerate_flags = {option for action in launch_command_parser()._actions for option in action.option_strings}
    helps, unknown, checked = {}, [], 0
    for page in DOCUMENTED:
        for command in documented_commands(page.read_text()):
            tokens = [token for token in command.split() if token not in ("...", "\\")]
            if tokens[:2] == ["accelerate", "launch"]:
                script_at = next((i for i, token in enumerate(tokens) if token.endswith(".py") or token == "-m"),
                                 len(tokens))
                unknown += [f"{page.name}: {command}: accelerate {flag}"
                            for flag in flags(tokens[2:script_at]) - accelerate_flags]
                tokens = ["python3", *tokens[script_at:]]
            found = entry_point(tokens)
            if found is None:
                continue
            module, arguments = found
            if not flags(arguments):
                continue  # nothing to check (and a script without a parser would run)
            sub = [arguments[0]] if arguments and arguments[0] in SUBCOMMANDS.get(module, ()) else []
            key = (module, *sub)
            if key not in helps:
                helps[key] = set(re.findall(r"--[\w-]+", help_text(module, sub, monkeypatch, capsys)))
            unknown += [f"{page.name}: {command}: {flag}" for flag in flags(arguments) - helps[key]]
            # The docs spell an option the way its command names it first, not by an old alias.
            unknown += [f"{page.name}: {command}: {flag} is spelt {cli.OLD_SPELLINGS[flag]} now"
                        for flag in flags(arguments) if cli.OLD_SPELLINGS.get(flag) in helps[key]]
            checked += 1
    assert not unknown, unknown
    # Every entry point the docs name was reached (a parse that found none would pass vacuously).
    assert checked >= 30 and {"train_hf", "evaluate_hf", "explain", "deploy_space"} <= {key[0] for key in helps}
    assert {("pneumolens.commands", name) for name in commands.commands_of(commands.PNEUMOLENS)} <= set(helps)


def python_block(section: str) -> str:
    readme = (REPO / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", readme.split(section, 1)[1], re.DOTALL)[1]


@pytest.mark.slow
def test_the_readmes_gradio_client_example_runs_against_the_bundled_model(monkeypatch):
    import app
    from pneumolens.service import PneumoLensService

    service = PneumoLensService()
    # The example's curves at 3 steps, not 10: the test is about the example's calls, not the curves' detail.
    monkeypatch.setattr(service, "faithfulness_curves", functools.partial(service.faithfulness_curves, steps=3))
    demo = app.build_demo(service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    monkeypatch.chdir(REPO)  # the example names its image relative to the repository
    code = python_block("### 2. From a program")
    assert code.count('Client("http://127.0.0.1:7860/")') == 1
    namespace = {}
    try:
        exec(code.replace('Client("http://127.0.0.1:7860/")', f"Client({url!r}, verbose=False)"), namespace)
    finally:
        demo.close()
    record = namespace["record"]
    # What the example's comments promise is what the bundled model answers.
    settings = re.search(r'"gradcam"\]\s+# \{.*"settings": "([^"]+)"', code)[1]
    assert record["maps"]["gradcam"]["settings"] == settings
    assert record["decision"] == "PNEUMONIA" and record["out_of_distribution"]["flagged"] is False
    decided = namespace["decided"]
    assert '{"decision": "PNEUMONIA", "refer": false' in code and decided["decision"] == "PNEUMONIA"
    assert decided["refer"] is False
    assert namespace["check"]["changes"] == 26 and Path(namespace["robustness_png"]).name == "robustness.png"
    assert set(namespace["maps"]) == {"rollout", "attribution", "saliency", "gradcam"}
    assert all(max(image.size) == 384 for image in namespace["maps"].values())
    for path in [namespace["maps_jpeg"], namespace["report_html"], namespace["maps_npz"], namespace["curves_png"]]:
        assert Path(path).is_file(), path


def test_the_readmes_transformers_example_runs_on_the_bundled_model(monkeypatch):
    from pneumolens.modeling import BUNDLED_MODEL
    from pneumolens.service import PneumoLensService

    monkeypatch.chdir(REPO)
    code = python_block("### 3. The model from the Hub")
    assert code.count('"your-name/pneumolens-dinov2-small"') == 2
    namespace = {}
    # The bundled folder in place of the Hub repository (a local folder has no revisions to pin).
    exec(code.replace('"your-name/pneumolens-dinov2-small"', repr(str(BUNDLED_MODEL))), namespace)
    labels = namespace["classifier"]("examples/person1946_bacteria_4874.jpeg")
    assert namespace["model"].dtype == namespace["classifier"].model.dtype == __import__("torch").float32
    assert labels[0]["label"] == PneumoLensService().predict("examples/person1946_bacteria_4874.jpeg")["decision"]
