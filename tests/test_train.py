"""End-to-end training runs of a few steps on tiny random models and a generated image folder."""

import json
from pathlib import Path
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForImageClassification, pipeline

from pneumolens.modeling import ModelSource
from pneumolens.ood import OODDetector
from pneumolens.training import last_complete_checkpoint, restore_weights, save_atomically
from tests.conftest import REPO, train_tiny


@pytest.mark.parametrize("model_type", ["vit", "dinov2", "convnext"])
def test_training_produces_a_loadable_model_with_card_and_threshold(
        model_type, tmp_path, small_imagefolder, tiny_backbone_dirs, real_images):
    output = tmp_path / "model"
    train_tiny(small_imagefolder, tiny_backbone_dirs[model_type], output,
                 "--card_base_model", f"example/{model_type}-base")

    model = AutoModelForImageClassification.from_pretrained(output)
    assert model.config.id2label == {0: "NORMAL", 1: "PNEUMONIA"}
    assert model.config.positive_label == "PNEUMONIA"
    assert 0.0 <= model.config.operating_threshold <= 1.0
    assert (output / "model.safetensors").is_file() and not list(output.glob("*.bin"))
    detector = OODDetector.load(ModelSource(str(output)))
    assert detector.mean.shape == (detector.precision.shape[0],) and detector.threshold > 0

    classifier = pipeline("image-classification", model=str(output))
    predictions = classifier(str(real_images["PNEUMONIA"][0]))
    assert {p["label"] for p in predictions} == {"NORMAL", "PNEUMONIA"}
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)

    card = ModelCard.load(output / "README.md")
    assert card.data.base_model == f"example/{model_type}-base"
    assert card.data.pipeline_tag == "image-classification" and card.data.library_name == "transformers"
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    saved = json.loads((output / "eval" / "carved_validation" / "metrics.json").read_text())
    assert results[("carved_validation", "roc_auc")] == pytest.approx(saved["roc_auc"], abs=1e-4)
    assert "{{" not in card.text and f"{model.config.operating_threshold:.4f}" in card.text
    assert "python train_hf.py --dataset_name_or_dir" in card.text
    for folder in ("carved_validation", "official_validation"):
        for name in ("metrics.json", "predictions.csv", "roc_curve.png", "confusion_matrix.png"):
            assert (output / "eval" / folder / name).stat().st_size > 0


def test_training_can_end_by_choosing_and_confirming_the_explanation_settings(tmp_path, small_imagefolder,
                                                                           tiny_backbone_dirs):
    from pneumolens.explain import METHODS
    from pneumolens.explain.options import SETTINGS_FILE, options_for
    from pneumolens.explain.standing import FAITHFULNESS_FILE
    from pneumolens.modeling import ModelSource

    output = tmp_path / "model"
    train_tiny(small_imagefolder, tiny_backbone_dirs["dinov2"], output, "--max_steps", "2",
               "--explanation_settings_images", "4", "--faithfulness_images", "4")
    stored = json.loads((output / SETTINGS_FILE).read_text())
    measured = json.loads((output / FAITHFULNESS_FILE).read_text())
    assert set(stored["selection"]["chosen"]) == {"gradcam", "rollout"}
    assert options_for(ModelSource(str(output))).gradcam_layer == stored["settings"]["gradcam_layer"]
    assert set(measured["summary"]["all"]["verdicts"]) == set(METHODS) and measured["summary"]["all"]["images"] == 4


@pytest.fixture(scope="module")
def flagged_run(tmp_path_factory, small_imagefolder, tiny_backbone_dirs):
    """One tiny training with the flags whose effects do not touch each other, read by one test each."""
    output = tmp_path_factory.mktemp("sweep") / "r2_z85_cons5"  # a sweep's run directory
    return train_tiny(small_imagefolder, tiny_backbone_dirs["dinov2"], output, "--freeze_layers", "1",
                      "--save_dtype", "float16", "--hub_model_id", "someone/pneumolens-tiny-dinov2")


def test_processor_is_saved_with_square_resize(flagged_run):
    processor = json.loads((flagged_run / "preprocessor_config.json").read_text())
    assert processor["do_center_crop"] is False
    assert processor["size"] == {"height": 32, "width": 32}


def test_the_card_names_the_model_by_its_id_not_its_output_directory(flagged_run):
    card = ModelCard.load(flagged_run / "README.md")
    assert card.data.model_name == "someone/pneumolens-tiny-dinov2"
    assert "model-index:\n- name: someone/pneumolens-tiny-dinov2" in (flagged_run / "README.md").read_text()
    assert "# someone/pneumolens-tiny-dinov2" in card.text and "r2_z85_cons5" not in card.text.split("## Training")[0]


def test_float16_storage_round_trips(flagged_run):
    from safetensors import safe_open
    with safe_open(flagged_run / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.float16}
    from pneumolens.modeling import ModelSource, load_model
    assert next(load_model(ModelSource(str(flagged_run))).parameters()).dtype == torch.float32


def test_freeze_layers_leaves_early_blocks_untouched(flagged_run, tiny_backbone_dirs):
    base = AutoModelForImageClassification.from_pretrained(tiny_backbone_dirs["dinov2"], num_labels=2)
    tuned = AutoModelForImageClassification.from_pretrained(flagged_run)
    first, second = (block.mlp.fc1.weight for block in base.dinov2.encoder.layer[:2])
    # Stored in float16: a frozen weight is the base's, rounded as it is stored.
    assert torch.equal(first.half().float(), tuned.dinov2.encoder.layer[0].mlp.fc1.weight)
    assert not torch.equal(second.half().float(), tuned.dinov2.encoder.layer[1].mlp.fc1.weight)


def test_restore_weights_converts_renamed_keys(tmp_path, tiny_backbone_dirs):
    """The Trainer saves DINOv2 attention weights under their original names; restoring must map them."""
    model = AutoModelForImageClassification.from_pretrained(tiny_backbone_dirs["dinov2"], num_labels=2)
    model.save_pretrained(tmp_path / "checkpoint-1")
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    restore_weights(model, str(tmp_path / "checkpoint-1"))
    assert all(torch.equal(expected[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, small_imagefolder, tiny_backbone_dirs):
    output = tmp_path / "model"
    command = [sys.executable, "train_hf.py", "--dataset_name_or_dir", str(small_imagefolder),
               "--model_name_or_path", str(tiny_backbone_dirs["vit"]), "--output_dir", str(output),
               "--max_steps", "40", "--eval_steps", "3", "--save_steps", "3", "--save_total_limit", "50",
               "--per_device_train_batch_size", "4", "--validation_fraction", "0.25", "--use_cpu", "true",
               "--early_stopping_patience", "100",
               # Checkpoints and their resumption, not what follows training.
               "--stress_selection_images", "0", "--stress_suite", "false", "--ood_num_train", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (output / "checkpoint-6" / "trainer_state.json").exists():
        assert first.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline, "no checkpoint-6 within 240 s"
        time.sleep(0.05)
    time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # The kill can land while a checkpoint is being written; resume must (and does) skip that one.
    from pneumolens.training import last_complete_checkpoint

    last = int(Path(last_complete_checkpoint(output)).name.split("-")[1])
    assert 6 <= last < 40

    resumed = subprocess.run(command + ["--resume_from_checkpoint", "last"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 40
    trained_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    # Steps before the checkpoint were not redone: the resumed run logged only steps after it.
    assert f"Restored weights from {output / f'checkpoint-{last}'}" in resumed.stderr
    assert trained_steps and max(trained_steps) == 40


@pytest.mark.parametrize("args, message", [
    (["--dataset_name_or_dir", "/nonexistent/data"], "Data directory not found: /nonexistent/data"),
    (["--model_name_or_path", "nobody/no-such-model"], "Could not load .* 'nobody/no-such-model'.*HF_HUB_OFFLINE"),
    (["--push_to_hub", "true", "--hub_model_id", "me/model"], "needs a token"),
    (["--push_to_hub", "true"], "needs --hub_model_id"),
    (["--positive_label", "EFFUSION"], "--positive_label EFFUSION is not a class"),
])
def test_bad_input_ends_with_one_line_error(args, message, tmp_path, small_imagefolder, tiny_backbone_dirs,
                                           monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("pneumolens.hub.get_token", lambda: None)  # no saved login either
    result = train_in_process(["--dataset_name_or_dir", str(small_imagefolder), "--model_name_or_path",
                               str(tiny_backbone_dirs["vit"]), "--output_dir", str(tmp_path / "out"), *args])
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ")
    import re
    assert re.search(message, last_line), last_line
    assert "Traceback" not in result.stderr


def train_in_process(argv: list[str]) -> subprocess.CompletedProcess:
    """train_hf.py in this process (`run_main`); the kill/resume run starts a process of its own."""
    import train_hf
    from tests.conftest import run_main

    return run_main(train_hf.main, "train_hf.py", *argv)


def test_help_lists_argument_groups():
    result = train_in_process(["--help"])
    assert result.returncode == 0
    for option in ("--dataset_name_or_dir", "--freeze_layers", "--validation_fraction", "--save_dtype",
                   "--push_to_hub", "--resume_from_checkpoint"):
        assert option in result.stdout
    assert "Share of the training split carved out, by patient" in " ".join(result.stdout.split())


def test_resume_skips_a_half_written_checkpoint(tmp_path):
    for step, files in ((100, ("model.safetensors", "trainer_state.json")), (200, ("model.safetensors",))):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}")
    (tmp_path / "checkpoint-300").mkdir()  # killed before anything was written
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-100")
    assert last_complete_checkpoint(tmp_path / "nothing-here") is None


def test_a_failed_final_save_leaves_the_previous_model(tmp_path):
    (tmp_path / "model.safetensors").write_text("old weights")
    with pytest.raises(RuntimeError):
        with save_atomically(tmp_path) as staging:
            (staging / "model.safetensors").write_text("new wei")
            raise RuntimeError("disk full")
    assert (tmp_path / "model.safetensors").read_text() == "old weights"
    with save_atomically(tmp_path) as staging:
        (staging / "model.safetensors").write_text("new weights")
        (staging / "config.json").write_text("{}")
    assert (tmp_path / "model.safetensors").read_text() == "new weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_consistency_loss_is_zero_for_agreeing_views_and_bounded():
    from pneumolens.training import consistency_loss

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    assert consistency_loss(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-7)
    apart = torch.tensor([[-1.0, 2.0], [0.3, 0.5]])
    assert consistency_loss(logits, apart).item() == pytest.approx(consistency_loss(apart, logits).item())
    assert consistency_loss(logits, apart).item() > 0.05
    opposite = torch.tensor([[40.0, -40.0]]), torch.tensor([[-40.0, 40.0]])
    assert consistency_loss(*opposite).item() == pytest.approx(float(torch.log(torch.tensor(2.0))), abs=1e-4)


def test_paired_transform_gives_two_views_of_each_image(real_images):
    from transformers import ViTImageProcessor

    from pneumolens.preprocessing import batch_transform, radiograph_augmentation
    from pneumolens.training import PAIRED_KEY

    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    batch = {"image": [{"path": str(path), "bytes": None} for path in real_images["NORMAL"][:3]], "label": [0, 0, 0]}
    plain = batch_transform(processor, paired=True)(batch)
    assert torch.equal(plain["pixel_values"], plain[PAIRED_KEY])
    import random
    augmented = batch_transform(processor, radiograph_augmentation(rng=random.Random(0)), paired=True)(batch)
    assert augmented[PAIRED_KEY].shape == augmented["pixel_values"].shape == (3, 3, 32, 32)
    assert not torch.equal(augmented["pixel_values"], augmented[PAIRED_KEY])
    assert PAIRED_KEY not in batch_transform(processor)(batch)


def test_consistency_term_pulls_the_two_views_together(tiny_backbone_dirs):
    """The trainer's loss on paired views is the mean label loss plus weight x JSD, and descending it
    brings the two views' predictions closer than the label loss alone does."""
    from transformers import TrainingArguments

    from pneumolens.training import PAIRED_KEY, CheckpointSafeTrainer, consistency_loss

    torch.manual_seed(0)
    views = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    labels = torch.tensor([0, 1] * 4)

    def gap_after_training(weight: float) -> float:
        model = AutoModelForImageClassification.from_pretrained(tiny_backbone_dirs["vit"], num_labels=2)
        trainer = CheckpointSafeTrainer(model=model, args=TrainingArguments("unused", use_cpu=True, report_to=[]),
                                        consistency_weight=weight)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(30):
            loss = trainer.compute_loss(model, {"pixel_values": views[0], PAIRED_KEY: views[1], "labels": labels})
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return consistency_loss(model(pixel_values=views[0]).logits, model(pixel_values=views[1]).logits).item()

    model = AutoModelForImageClassification.from_pretrained(tiny_backbone_dirs["vit"], num_labels=2)
    trainer = CheckpointSafeTrainer(model=model, args=TrainingArguments("unused", use_cpu=True, report_to=[]),
                                    consistency_weight=3.0)
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, {"pixel_values": views[0], PAIRED_KEY: views[1], "labels": labels})
        first, second = model(pixel_values=views[0]).logits, model(pixel_values=views[1]).logits
        cross_entropy = torch.nn.functional.cross_entropy
        expected = 0.5 * (cross_entropy(first, labels) + cross_entropy(second, labels)) \
            + 3.0 * consistency_loss(first, second)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert gap_after_training(20.0) < 0.5 * gap_after_training(0.0)


def test_training_with_the_consistency_term_says_so_in_the_card(tmp_path, small_imagefolder, tiny_backbone_dirs):
    output = tmp_path / "model"
    train_tiny(small_imagefolder, tiny_backbone_dirs["dinov2"], output, "--consistency_weight", "5",
               "--max_steps", "2")
    assert "consistency term: 5 x Jensen-Shannon divergence" in ModelCard.load(output / "README.md").text
    assert AutoModelForImageClassification.from_pretrained(output).config.operating_threshold is not None


def test_a_trained_model_ships_its_detector_index_and_their_card_sections(tiny_trained_dirs):
    for model_type, directory in tiny_trained_dirs.items():
        card = (directory / "README.md").read_text()
        assert (directory / "ood_detector.safetensors").is_file() and (directory / "similar_films.faiss").is_file()
        for section in ("Out-of-distribution detector", "Similar training films"):
            assert card.count(f"\n## {section}\n") == 1, (model_type, section)
        assert card.index("## Similar training films") < card.index("## How to use")
        assert "Command: `python train_hf.py" in card.split("## Out-of-distribution detector", 1)[1]


def test_the_bundled_card_says_what_its_detector_holds():
    from pneumolens.modeling import BUNDLED_MODEL

    section = (BUNDLED_MODEL / "README.md").read_text().split("## Out-of-distribution detector\n", 1)[1]
    assert "Mahalanobis distance exceeds 50.22" in section.split("\n## ", 1)[0]


def test_the_trainer_overrides_are_checked_against_the_installed_transformers():
    from transformers import Trainer

    from pneumolens.errors import PneumoLensError
    from pneumolens.training import check_trainer

    check_trainer()  # the pinned transformers calls them as overridden

    class Renamed(Trainer):
        def _load_from_checkpoint(self, checkpoint, model=None):  # a parameter renamed upstream
            pass

    with pytest.raises(PneumoLensError, match=r"changed what pneumolens/training.py overrides: "
                                              r"Trainer._load_from_checkpoint\('self', 'resume_from_checkpoint'"):
        check_trainer(trainer=Renamed)
