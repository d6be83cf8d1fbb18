"""`--push_to_hub` over real HTTP, against a loopback server that speaks the Hub's create/commit API."""

import pytest
import json
import subprocess
import sys

from safetensors import safe_open

from tests.conftest import REPO
from tests.hub_server import FakeHub

pytestmark = [pytest.mark.slow]


def test_push_uploads_weights_processor_config_and_filled_card(tmp_path, small_imagefolder, tiny_backbone_dirs):
    with FakeHub(token="hf_test_token") as hub:
        env = hub.client_env(tmp_path / "hf-home")
        command = [sys.executable, "train_hf.py", "--dataset_name_or_dir", str(small_imagefolder),
                   "--model_name_or_path", str(tiny_backbone_dirs["vit"]), "--output_dir", str(tmp_path / "model"),
                   "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--validation_fraction", "0.25",
                   # What is pushed, not how it was made: the stress suite is not needed, a detector is.
                   "--stress_selection_images", "0", "--stress_suite", "false", "--ood_num_train", "8",
                   "--push_to_hub", "true", "--hub_model_id", "pneumolens/tiny-test"]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]

    files = hub.files("pneumolens/tiny-test")
    assert {"model.safetensors", "ood_detector.safetensors"} <= hub.lfs_paths("pneumolens/tiny-test")
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md",
            "ood_detector.safetensors"} <= set(files)
    assert not [name for name in files if name.startswith("checkpoint-") or name.endswith((".bin", ".pt"))]
    assert "eval/carved_validation/roc_curve.png" in files

    (tmp_path / "pushed.safetensors").write_bytes(files["model.safetensors"])
    with safe_open(tmp_path / "pushed.safetensors", "pt") as weights:
        assert any(key.startswith("classifier") for key in weights.keys())
    config = json.loads(files["config.json"])
    assert config["id2label"] == {"0": "NORMAL", "1": "PNEUMONIA"} and "operating_threshold" in config
    card = files["README.md"].decode()
    assert card.startswith("---\n") and "pipeline_tag: image-classification" in card
    assert "Operating threshold" in card and "{{" not in card
    assert card == (tmp_path / "model" / "README.md").read_text()


def test_push_with_a_wrong_token_fails_clearly(tmp_path, small_imagefolder, tiny_backbone_dirs):
    with FakeHub(token="hf_right") as hub:
        env = hub.client_env(tmp_path / "hf-home", token="hf_wrong")
        command = [sys.executable, "train_hf.py", "--dataset_name_or_dir", str(small_imagefolder),
                   "--model_name_or_path", str(tiny_backbone_dirs["vit"]), "--output_dir", str(tmp_path / "model"),
                   "--max_steps", "1", "--eval_steps", "1", "--save_steps", "1", "--validation_fraction", "0.25",
                   "--stress_selection_images", "0", "--stress_suite", "false", "--ood_num_train", "0",
                   "--push_to_hub", "true", "--hub_model_id", "pneumolens/tiny-test"]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: Pushing to pneumolens/tiny-test failed")
    assert (tmp_path / "model" / "model.safetensors").exists(), "the trained model is kept when the push fails"
