"""Publishing a trained model directory to the Hub in one commit.

    python -m pneumolens push MODEL_DIR --repo_id NAME [--private] [--revision BRANCH]

prints the commit to pin (`from_pretrained(NAME, revision=COMMIT)`, `MODEL_REVISION=COMMIT python3 app.py`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from .errors import PneumoLensError
from .ood import OOD_FILE
from .similar import FILMS_FILE, INDEX_FILE

logger = logging.getLogger(__name__)

# The model, its preprocessing, its card and the card's figures; never checkpoints or optimizer state.
PUBLISHED_FILES = [
    "model*.safetensors", "model.safetensors.index.json", "config.json", "preprocessor_config.json",
    "README.md", "training_args.json", OOD_FILE, INDEX_FILE, FILMS_FILE,
    "eval/**/*.json", "eval/**/*.png", "eval/**/*.csv",
]


def resolve_token(token: str | None) -> str:
    """The token to push with: the given one, else `HF_TOKEN`, else a saved login; error if none."""
    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise PneumoLensError(
            "Pushing to the Hub needs a token: set HF_TOKEN, pass --hub_token or run `hf auth login`."
        )
    return token


# What a folder needs to be a model that PneumoLens, `from_pretrained` and `pipeline` can load, by what it is.
REQUIRED_FILES = {"config.json": "the configuration, with the labels", "preprocessor_config.json": "the image processor",
                  "README.md": "the model card"}
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def missing_files(model_dir: str | Path) -> list[str]:
    """What `model_dir` lacks of a complete model, each named with what it is; empty when complete."""
    folder = Path(model_dir)
    missing = [f"{name} ({what})" for name, what in REQUIRED_FILES.items() if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHTS):
        missing.insert(0, f"{WEIGHTS[0]} (the weights, as safetensors)")
    return missing


def push_model_dir(model_dir: str, repo_id: str, token: str, private: bool | None = None,
                   revision: str | None = None) -> CommitInfo:
    """Create `repo_id` if needed and upload the model directory's published files in one commit, to the
    branch `revision` (created from main if new) or to main; the commit's `oid` is what to pin.

    One commit with our own README.md, rather than `Trainer.push_to_hub`, which uploads its own
    auto-generated card over ours.
    """
    missing = missing_files(model_dir)
    if missing:
        raise PneumoLensError(f"{model_dir} is not a complete model: it has no {', no '.join(missing)}.")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(url.repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=url.repo_id, folder_path=model_dir, allow_patterns=PUBLISHED_FILES, revision=revision,
            commit_message="Upload PneumoLens model, image processor and model card",
        )
    except (HfHubHTTPError, OSError) as err:
        raise PneumoLensError(
            f"Pushing to {repo_id} failed ({str(err).splitlines()[0]}); the model is saved in {model_dir}."
        ) from err
    logger.info("Pushed %s to %s (%s)", model_dir, url, commit.oid)
    return commit



if __name__ == "__main__":  # the command's earlier name: say where it went rather than do nothing
    raise SystemExit("error: this command is `python -m pneumolens push` now, with the same options")
