"""Deploying the demo as a Hugging Face Space (Gradio SDK) in one commit: the app, this package, the
examples, the Space's requirements and card, and the model it serves.

Two ways to serve a model: the bundled one goes into the Space with the app (its weights by LFS), or a
model on the Hub by id, pinned to a commit, which the Space reads from its variables `MODEL_ID` and
`MODEL_REVISION` exactly as `python app.py` reads them from the environment.
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, SpaceCardData
from huggingface_hub.errors import HfHubHTTPError

from .errors import PneumoLensError
from .hub import PUBLISHED_FILES
from .modeling import BUNDLED_MODEL
from .wording import disclaimer_markdown

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
# What the Space runs; the tests, benchmarks and training script stay in the project.
APP_FILES = ("app.py", "pneumolens/**/*.py", "examples/*")


@dataclass
class ServedModel:
    """The bundled model (`model_id` None), or a Hub model at a commit."""

    model_id: str | None = None
    revision: str | None = None

    @property
    def bundled(self) -> bool:
        return self.model_id is None


ZERO_GPU_HARDWARE = "zero-a10g"


def space_card(model: ServedModel, requirements: str, zero_gpu: bool = False) -> str:
    """The Space's README.md: the front matter the Hub reads (SDK, version, app file, and with `zero_gpu`
    the suggested ZeroGPU hardware) and a short text."""
    gradio_version = re.search(r"^gradio(?:\[[\w,]+\])?==([\w.]+)", requirements, re.MULTILINE)
    data = SpaceCardData(
        title="PneumoLens", sdk="gradio", sdk_version=gradio_version[1] if gradio_version else None,
        python_version="3.11", app_file="app.py", license="apache-2.0",
        models=None if model.bundled else [model.model_id], datasets=["hf-vision/chest-xray-pneumonia"],
        short_description="Explainable pneumonia detection on chest X-rays",
        tags=["medical-imaging", "explainability", "chest-x-ray"],
        **({"suggested_hardware": ZERO_GPU_HARDWARE} if zero_gpu else {}),
    )
    served = ("the model bundled in `models/pneumolens-dinov2-small`" if model.bundled
              else f"[`{model.model_id}`](https://huggingface.co/{model.model_id}) at commit `{model.revision}` "
                   "(Space variables `MODEL_ID` and `MODEL_REVISION`)")
    body = (f"# PneumoLens\n\nExplainable pneumonia detection on pediatric chest X-rays: the decision and label "
            "probabilities with attention rollout, gradient saliency, Grad-CAM and transformer attribution maps, "
            f"each with its measured faithfulness verdict. Serves {served}"
            f"{', on ZeroGPU (the model calls run under `spaces.GPU`)' if zero_gpu else ''}.\n\n"
            f"> {disclaimer_markdown()}\n\nAPI: `gradio_client.Client(\"<this space>\").predict(handle_file(\"xray.jpeg\"), "
            "api_name=\"/predict\")` answers the JSON record. AI agents: the MCP server at `/gradio_api/mcp/`, whose "
            "tools are the same endpoints (`predict`, `explain`, `robustness`, `faithfulness_curves`, `report`).\n")
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def space_requirements(requirements: str, test_extra: list[str], zero_gpu: bool = False) -> str:
    """The project's pinned requirements without the packages of its `test` extra (pyproject.toml) and without
    installing itself (the Space runs from its folder); with `zero_gpu`, the `spaces` package that attaches a
    ZeroGPU to each model call."""
    testing = {package_name(requirement) for requirement in test_extra}
    keep = [line for line in requirements.splitlines()
            if not line.strip().startswith("-e") and package_name(line) not in testing]
    return "\n".join(keep + (["spaces"] if zero_gpu else [])) + "\n"


def package_name(requirement: str) -> str:
    """A requirement line's package, normalised as pip compares names ("Gradio[mcp]==6.31" -> "gradio")."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;#]", requirement.strip(), maxsplit=1)[0]).lower()


def test_extra(repo: Path = REPO) -> list[str]:
    """What only developing and testing the project needs: pyproject.toml's `test` extra."""
    return tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]


def space_operations(model: ServedModel, repo: Path = REPO, zero_gpu: bool = False) -> list[CommitOperationAdd]:
    """Every file of the Space as commit operations: app files from `repo`, a generated card and
    requirements, and the bundled model's published files when it is the one served."""
    requirements = (repo / "requirements.txt").read_text()
    files = sorted({path for pattern in APP_FILES for path in repo.glob(pattern) if path.is_file()})
    if model.bundled:
        model_dir = repo / "models" / BUNDLED_MODEL.name
        if not (model_dir / "model.safetensors").is_file():
            raise PneumoLensError(f"No bundled model to deploy in {model_dir}.")
        files += sorted({path for pattern in PUBLISHED_FILES for path in model_dir.glob(pattern) if path.is_file()})
    operations = [CommitOperationAdd(str(path.relative_to(repo)), str(path)) for path in files
                  if "__pycache__" not in path.parts]
    operations += [CommitOperationAdd("requirements.txt",
                                      space_requirements(requirements, test_extra(repo), zero_gpu).encode()),
                   CommitOperationAdd("README.md", space_card(model, requirements, zero_gpu).encode())]
    return operations


def deploy_space(space_id: str, model: ServedModel, token: str, private: bool | None = None,
                 endpoint: str | None = None, zero_gpu: bool = False) -> str:
    """Create (if needed) and update the Space in one commit; return the commit's URL.

    A Hub model is pinned: its revision (default main) is resolved to a commit now, so the Space keeps
    serving what was checked even when the model repository moves on.
    """
    api = HfApi(token=token, endpoint=endpoint)
    try:
        if not model.bundled:
            model = ServedModel(model.model_id, api.model_info(model.model_id, revision=model.revision).sha)
        url = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        operations = space_operations(model, zero_gpu=zero_gpu)
        if not model.bundled and any(path.startswith("models/") for path in api.list_repo_files(
                url.repo_id, repo_type="space")):
            # A Space that served the bundled model before: its weights would only take space.
            operations.append(CommitOperationDelete("models/"))
        commit = api.create_commit(url.repo_id, operations, repo_type="space", commit_message="Deploy PneumoLens"
                                   + ("" if model.bundled else f" serving {model.model_id}@{model.revision}"))
        _set_model_variables(api, url.repo_id, model)
    except (HfHubHTTPError, OSError) as err:
        raise PneumoLensError(f"Deploying the Space {space_id} failed ({str(err).splitlines()[0]}).") from err
    logger.info("Deployed %s (%s)", url, commit.oid)
    return commit.commit_url


def _set_model_variables(api: HfApi, space_id: str, model: ServedModel) -> None:
    """MODEL_ID and MODEL_REVISION for a Hub model; none for the bundled one (the app serves the bundled
    model exactly when MODEL_ID is unset)."""
    current = api.get_space_variables(space_id)
    if model.bundled:
        for key in ("MODEL_ID", "MODEL_REVISION"):
            if key in current:
                api.delete_space_variable(space_id, key)
        return
    for key, value in (("MODEL_ID", model.model_id), ("MODEL_REVISION", model.revision)):
        api.add_space_variable(space_id, key, value, description="The model PneumoLens serves")
