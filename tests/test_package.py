"""The package as `pip install .` installs it: a wheel built from the tree holds every module, and the
commands answer from a fresh virtual environment, away from the checkout."""

import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow]

SCRIPTS = ("app", "explain", "train_hf", "evaluate_hf", "deploy_space")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    # Built from a copy of the sources: setuptools writes build/ beside them. Offline: with the installed
    # setuptools rather than a fetched one.
    source = tmp_path_factory.mktemp("source") / "pneumolens"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "models", "docs", "examples", "tests", "benchmarks", "tools", "build", "*.egg-info", "__pycache__",
        "outputs", ".gradio"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist)], check=True, capture_output=True)
    return next(dist.glob("pneumolens-*.whl"))


def test_the_wheel_holds_every_module_of_the_tree_and_the_files_the_package_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "pneumolens").rglob("*.py")
               if "__pycache__" not in path.parts}
    assert {"pneumolens/commands/explain_maps.py", "pneumolens/explain/explainer.py"} <= modules
    assert not modules - names, sorted(modules - names)
    assert {f"{script}.py" for script in SCRIPTS} <= names
    # What the package opens at run time: the card template and the `evaluate` metric module.
    assert {"pneumolens/model_card.md", "pneumolens/binary_metrics/binary_metrics.py"} <= names
    template = zipfile.ZipFile(wheel).read("pneumolens/model_card.md")
    assert template == (REPO / "model_card.md").read_bytes()  # the file itself, not the link


def test_the_installed_commands_answer_help_from_a_fresh_environment(wheel, tmp_path):
    # The environment sees this interpreter's installed dependencies (no network here to fetch them) and the
    # wheel alone for PneumoLens; the commands run from a folder that is not the checkout. `--system-site-packages`
    # alone is not enough: from inside a venv it shows the base interpreter's packages, not the venv's, so a
    # .pth file names this interpreter's own site-packages, wherever they are.
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "env")], check=True)
    python = str(tmp_path / "env" / "bin" / "python")
    env_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    ours = [path for path in {*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
            if Path(path).is_dir()]
    Path(env_site, "_this_interpreter.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True)
    where = subprocess.run([python, "-c", "import pneumolens, pneumolens.card as card, explain; "
                            "print(pneumolens.__file__); print(card.TEMPLATE.is_file()); print(explain.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(tmp_path / "env") in path for path in (where[0], where[2])) and where[1] == "True", where
    for command, words in ((["-m", "pneumolens", "--help"], "index-films"), (["-m", "explain", "--help"], "report"),
                           (["-m", "pneumolens", "index-films", "--help"], "--dataset_name_or_dir")):
        answer = subprocess.run([python, *command], cwd=tmp_path, capture_output=True, text=True,
                                env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
        assert answer.returncode == 0 and "usage" in answer.stdout and words in answer.stdout, answer.stderr[-2000:]
