"""The package's import graph: no two modules import each other, directly or through others, counting the
imports inside functions too (a lazy import that dodges a cycle is still a cycle in the design)."""

import ast
import os
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "pneumolens"


def module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(REPO).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target, *(f"{target}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in files and target != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for following in graph[todo.pop()] - seen:
            seen.add(following)
            todo.append(following)
    return seen


def test_no_two_modules_import_each_other():
    graph = import_graph()
    assert {"pneumolens.decision", "pneumolens.calibration", "pneumolens.explain.explainer"} <= set(graph)
    assert "pneumolens.decision" in graph["pneumolens.evaluation"]  # the graph sees relative imports
    reach = {name: reachable(graph, name) for name in graph}
    circles = sorted({tuple(sorted((a, b))) for a in graph for b in reach[a] if a in reach[b]})
    assert not circles, circles


def test_the_decision_rule_needs_no_fitting_code():
    """Serving applies two saved floats: the runtime rule imports neither calibration's fitting nor
    scikit-learn (which grad-cam still brings in, outside this package)."""
    graph = import_graph()
    assert not reachable(graph, "pneumolens.decision") & {"pneumolens.calibration", "pneumolens.evaluation"}
    source = (PACKAGE / "decision.py").read_text()
    assert "sklearn" not in source
    for name in ("pneumolens.service", "pneumolens.explain.explainer", "pneumolens.evaluation"):
        assert "pneumolens.calibration" not in reachable(graph, name), name


def test_one_version_and_one_list_of_image_suffixes(tmp_path):
    import tomllib

    from pneumolens.commands.explain_report import image_files
    import pneumolens
    from pneumolens.images import IMAGE_SUFFIXES, PICTURE_SUFFIXES

    assert pneumolens.__version__ == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for name in ("a.jpeg", "b.gif", "c.dcm", "d.TIFF", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    # explain.py searches a folder for every file it can decode; imagefolder reads the pictures among them.
    assert [p.name for p in image_files([str(tmp_path)])] == ["a.jpeg", "b.gif", "c.dcm", "d.TIFF"]
    assert set(IMAGE_SUFFIXES) - set(PICTURE_SUFFIXES) == {".dcm"}


def test_the_low_modules_load_no_drawing_and_no_serving_library():
    """referral (run at training time), data and space write words and numbers: importing them must not load
    matplotlib, pytorch-grad-cam or gradio (a fresh interpreter: this one has imported everything)."""
    import subprocess
    import sys

    code = ("import sys, pneumolens.referral, pneumolens.data, pneumolens.space; "
            "print(sorted(n for n in ('matplotlib', 'pytorch_grad_cam', 'gradio') if n in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout.strip()
    assert loaded == "[]", loaded


def test_the_layers_read_model_explain_service_presentation_serving_with_no_arrow_upwards():
    """The service answers as data: nothing it reaches draws a page or a report, or knows Gradio; the words
    it carries come from `wording`. Drawing and the report sit above it, the serving layer above them."""
    graph = import_graph()
    drawing = {"pneumolens.presentation", "pneumolens.report"}
    serving = {name for name in graph if name.startswith("pneumolens.serving")}
    below_drawing = reachable(graph, "pneumolens.service") | {"pneumolens.service"}
    assert "pneumolens.wording" in below_drawing and "pneumolens.explain.explainer" in below_drawing
    assert not below_drawing & (drawing | serving), below_drawing & (drawing | serving)
    for name in drawing:
        assert not reachable(graph, name) & serving, name
    assert "pneumolens.serving.displayed" in graph["pneumolens.serving.page"]  # the page's drawing cache beside it
