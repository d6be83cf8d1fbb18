"""`--push_to_hub` over real HTTP, against a loopback server that speaks the Hub's create/commit API."""

import json

import pytest
from safetensors import safe_open

from tests.hub_server import FakeHub, train_hf_runs

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def pushes(tmp_path_factory, small_imagefolder, tiny_backbone_dirs):
    """Two tiny trainings that push at the end, in one process: with the Hub's token, and with a wrong one."""
    root = tmp_path_factory.mktemp("pushes")

    def training(name: str, *extra) -> list:
        return ["--dataset_name_or_dir", small_imagefolder, "--model_name_or_path", tiny_backbone_dirs["vit"],
                "--output_dir", root / name, "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2",
                "--validation_fraction", "0.25",
                # What is pushed, not how it was made: the stress suite is not needed, a detector is.
                "--stress_selection_images", "0", "--stress_suite", "false", "--ood_num_train", "8",
                "--push_to_hub", "true", *extra]

    with FakeHub(token="hf_test_token") as hub:
        answers = train_hf_runs(hub.client_env(root / "hf-home"),
                                training("model", "--hub_model_id", "pneumolens/tiny-test"),
                                training("refused", "--hub_model_id", "pneumolens/refused", "--hub_token", "hf_wrong"))
    return hub, root, answers


def test_push_uploads_weights_processor_config_and_filled_card(pushes):
    hub, root, ((status, errors), _) = pushes
    assert status == 0, errors[-3000:]
    files = hub.files("pneumolens/tiny-test")
    assert {"model.safetensors", "ood_detector.safetensors"} <= hub.lfs_paths("pneumolens/tiny-test")
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md",
            "ood_detector.safetensors"} <= set(files)
    assert not [name for name in files if name.startswith("checkpoint-") or name.endswith((".bin", ".pt"))]
    assert "eval/carved_validation/roc_curve.png" in files

    (root / "pushed.safetensors").write_bytes(files["model.safetensors"])
    with safe_open(root / "pushed.safetensors", "pt") as weights:
        assert any(key.startswith("classifier") for key in weights.keys())
    config = json.loads(files["config.json"])
    assert config["id2label"] == {"0": "NORMAL", "1": "PNEUMONIA"} and "operating_threshold" in config
    card = files["README.md"].decode()
    assert card.startswith("---\n") and "pipeline_tag: image-classification" in card
    assert "Operating threshold" in card and "{{" not in card
    assert card == (root / "model" / "README.md").read_text()


def test_push_with_a_wrong_token_fails_clearly(pushes):
    hub, root, (_, (status, errors)) = pushes
    assert status == 2
    assert errors.strip().splitlines()[-1].startswith("error: Pushing to pneumolens/refused failed")
    assert (root / "refused" / "model.safetensors").exists(), "the trained model is kept when the push fails"
    assert ("model", "pneumolens/refused") not in hub.repos
