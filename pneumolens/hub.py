"""Publishing a trained model directory to the Hub in one commit."""

from __future__ import annotations

import logging
import os

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from .errors import PneumoLensError

logger = logging.getLogger(__name__)

# The model, its preprocessing, its card and the card's figures; never checkpoints or optimizer state.
PUBLISHED_FILES = [
    "model*.safetensors", "model.safetensors.index.json", "config.json", "preprocessor_config.json",
    "README.md", "training_args.json", "ood_detector.safetensors", "eval/**/*.json", "eval/**/*.png", "eval/**/*.csv",
]


def resolve_token(token: str | None) -> str:
    """The token to push with: the given one, else `HF_TOKEN`, else a saved login; error if none."""
    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise PneumoLensError(
            "Pushing to the Hub needs a token: set HF_TOKEN, pass --hub_token or run `hf auth login`."
        )
    return token


def push_model_dir(model_dir: str, repo_id: str, token: str, private: bool | None = None) -> str:
    """Create `repo_id` if needed and upload the model directory's published files in one commit.

    One commit with our own README.md, rather than `Trainer.push_to_hub`, which uploads its own
    auto-generated card over ours.
    """
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=url.repo_id, folder_path=model_dir, allow_patterns=PUBLISHED_FILES,
            commit_message="Upload PneumoLens model, image processor and model card",
        )
    except (HfHubHTTPError, OSError) as err:
        raise PneumoLensError(
            f"Pushing to {repo_id} failed ({str(err).splitlines()[0]}); the model is saved in {model_dir}."
        ) from err
    logger.info("Pushed %s to %s (%s)", model_dir, url, commit.oid)
    return commit.commit_url
