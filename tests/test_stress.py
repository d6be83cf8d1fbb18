"""The shortcut stress suite, the shortcut augmentation and selection on stressed validation copies."""

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pneumolens import acquisition
from pneumolens.augmentation import ShortcutAugmentation
from pneumolens.checkpoint_selection import robust_threshold, selection_metrics, stressed_transform, with_stressed_copies
from pneumolens.stress import CLEAN, SELECTION_CHANGES, STRESS_SUITE, stress_report
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def radiograph(real_images):
    return Image.open(real_images["NORMAL"][0]).convert("RGB")


@pytest.mark.parametrize("change", STRESS_SUITE, ids=lambda change: change.name)
@pytest.mark.parametrize("mode, size", [("RGB", (224, 224)), ("L", (150, 110))])
def test_each_change_keeps_size_and_mode_is_seeded_and_changes_the_image(change, mode, size, radiograph):
    image = radiograph.convert(mode).resize(size)
    changed = change(image, seed=3, index=7)
    assert changed.size == image.size and changed.mode == image.mode
    assert np.array_equal(np.asarray(changed), np.asarray(change(image, seed=3, index=7)))
    assert np.abs(np.asarray(changed, dtype=int) - np.asarray(image, dtype=int)).mean() > 0.1


@pytest.mark.parametrize("name", ["zoom_offcentre_65", "text_laterality", "text_mixed", "noise_10"])
def test_random_changes_depend_on_seed_and_image_index(name, radiograph):
    change = next(c for c in STRESS_SUITE if c.name == name)
    variants = {np.asarray(change(radiograph, seed, index)).tobytes() for seed in (0, 1) for index in (0, 1, 2)}
    assert len(variants) >= 4


def test_zoom_shows_the_centre_enlarged():
    # A frame with a bright border: zooming to the centre must remove the border.
    pixels = np.full((100, 100), 60, np.uint8)
    pixels[:10], pixels[-10:], pixels[:, :10], pixels[:, -10:] = 255, 255, 255, 255
    zoomed = np.asarray(acquisition.zoom(Image.fromarray(pixels), 0.65 ** 2))
    assert zoomed[:3].mean() < 100 and zoomed[45:55, 45:55].mean() == pytest.approx(60, abs=1)


def test_burned_in_text_lands_where_and_how_bright_it_was_asked():
    black = Image.new("L", (200, 200))
    marked = np.asarray(acquisition.burn_text(black, "R", (0.8, 0.05), 0.15, 230))
    ys, xs = np.nonzero(marked)
    assert xs.min() >= 150 and ys.max() < 60 and marked.max() == 230


def test_stretch_changes_the_anatomys_width_to_height_ratio():
    # A centred bright square: stretching to 80 % width must make it narrower than tall, and 125 % wider.
    pixels = np.zeros((200, 200), np.uint8)
    pixels[60:140, 60:140] = 255
    for aspect, wider in ((0.8, False), (1.25, True)):
        ys, xs = np.nonzero(np.asarray(acquisition.stretch(Image.fromarray(pixels), aspect)) > 128)
        width, height = np.ptp(xs) + 1, np.ptp(ys) + 1
        assert (width > height * 1.15) if wider else (height > width * 1.15)


def test_leads_and_tube_draw_bright_lines_that_reach_the_edge_or_the_top():
    black = Image.new("L", (200, 200))
    wired = np.asarray(acquisition.leads(black, 2, random.Random(0), grey=240))
    border = np.r_[wired[0], wired[-1], wired[:, 0], wired[:, -1]]
    assert wired.max() == 240 and (border == 240).any()
    tube = np.asarray(acquisition.tube(black, random.Random(0), grey=220))
    assert (tube[0] == 220).any() and not (tube[-1] == 220).any()


def test_exposure_gradient_darkens_one_side_and_brightens_the_other():
    grey = Image.new("L", (100, 100), 120)
    graded = np.asarray(acquisition.exposure_gradient(grey, 0.25, angle=0), dtype=float)
    assert graded[:, :10].mean() < 100 < 140 < graded[:, -10:].mean()
    assert graded[:, 45:55].mean() == pytest.approx(120, abs=4)


def test_training_augmentation_covers_the_other_shortcut_kinds(monkeypatch, radiograph):
    calls = {name: _counting(monkeypatch, name)
             for name in ("stretch", "leads", "tube", "exposure_gradient", "equalize", "local_contrast")}
    augment = ShortcutAugmentation(rng=random.Random(1))
    for _ in range(300):
        augment(radiograph)
    counts = {name: len(made) for name, made in calls.items()}
    # Expected shares of 300: stretch 30 %, leads 17.5 %, tube 10 %, gradient 20 %, equalise 7.5 %,
    # local contrast 17.5 %; each kind happens, none on most images.
    assert all(5 <= count <= 150 for count in counts.values()), counts
    aspects = [args[1] for args in calls["stretch"]]
    assert min(aspects) < 0.85 and max(aspects) > 1.15


def _counting(monkeypatch, name):
    calls = []
    original = getattr(acquisition, name)

    def wrapped(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(acquisition, name, wrapped)
    return calls


def test_training_augmentation_produces_zoom_and_text_variants(monkeypatch, radiograph):
    zooms, texts = _counting(monkeypatch, "zoom"), _counting(monkeypatch, "burn_text")
    augment = ShortcutAugmentation(rng=random.Random(0))
    outputs, marked = [], 0
    for _ in range(200):
        before = len(texts)
        outputs.append(augment(radiograph))
        marked += len(texts) > before
    assert all(o.size == radiograph.size and o.mode == "RGB" for o in outputs)
    areas = [args[1] for args in zooms]
    # About half the images are zoomed, some of them to less than half the frame; about half get text.
    assert 70 <= len(areas) <= 130 and sum(a < 0.5 for a in areas) >= 20
    assert 70 <= marked <= 130
    assert {args[1] for args in texts} & set(acquisition.LATERALITY_MARKERS)
    assert any(":" in args[1] for args in texts)
    unchanged = sum(np.array_equal(np.asarray(o), np.asarray(radiograph)) for o in outputs)
    assert unchanged < 20


def test_augmentation_is_reproducible_with_a_seeded_generator(radiograph):
    first = ShortcutAugmentation(rng=random.Random(5))(radiograph)
    second = ShortcutAugmentation(rng=random.Random(5))(radiograph)
    assert np.array_equal(np.asarray(first), np.asarray(second))


def _prediction(scores_positive, labels):
    scores = np.asarray(scores_positive, dtype=np.float64)
    logits = np.stack([np.zeros_like(scores), np.log(scores / (1 - scores))], axis=1)
    return SimpleNamespace(predictions=logits, label_ids=np.asarray(labels))


def test_selection_metric_punishes_a_model_whose_scores_move_with_framing():
    labels = np.array([0] * 5 + [1] * 5)
    clean = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.55, 0.6, 0.65, 0.7, 0.75])
    # Zoom pushes NORMAL scores up among the clean PNEUMONIA ones, but keeps the order inside the change.
    shifted = np.array([0.6, 0.65, 0.7, 0.72, 0.74, 0.8, 0.85, 0.9, 0.95, 0.97])
    names = [CLEAN] * 10 + ["zoom_centre_55"] * 10
    steady = selection_metrics(1, names)(_prediction(np.r_[clean, clean], np.r_[labels, labels]))
    fooled = selection_metrics(1, names)(_prediction(np.r_[clean, shifted], np.r_[labels, labels]))
    assert steady["roc_auc"] == fooled["roc_auc"] == 1.0
    assert fooled["roc_auc_zoom_centre_55"] == 1.0 and fooled["worst_roc_auc"] == 1.0
    assert steady["robust_roc_auc"] == 1.0 and fooled["robust_roc_auc"] == pytest.approx(0.845)


def test_robust_threshold_moves_above_stressed_normal_scores():
    truth = np.array([0] * 50 + [1] * 50)
    rng = np.random.default_rng(0)
    clean = np.r_[rng.uniform(0.0, 0.3, 50), rng.uniform(0.9, 1.0, 50)]
    zoomed = np.r_[rng.uniform(0.5, 0.8, 50), rng.uniform(0.9, 1.0, 50)]
    probabilities = {CLEAN: np.stack([1 - clean, clean], 1), "zoom_centre_55": np.stack([1 - zoomed, zoomed], 1)}
    clean_only = robust_threshold(truth, probabilities, 1, changes=())
    pooled = robust_threshold(truth, probabilities, 1, changes=("zoom_centre_55",))
    assert clean_only < 0.9 and 0.8 <= pooled <= 0.9
    report = stress_report(truth, probabilities, 1, pooled)
    assert report["zoom_centre_55"]["specificity"] == 1.0 and report["zoom_centre_55"]["flip_rate"] == 0.0
    report = stress_report(truth, probabilities, 1, 0.45)
    assert report["zoom_centre_55"]["flip_rate_negative"] > 0.5 and report["zoom_centre_55"]["flip_rate_positive"] == 0


def test_stressed_copies_apply_each_change_to_the_same_images(real_imagefolder, tiny_backbone_dirs):
    from datasets import load_dataset
    from datasets import Image as ImageFeature
    from transformers import AutoImageProcessor

    validation = load_dataset("imagefolder", data_dir=str(real_imagefolder))["validation"]
    validation = validation.cast_column("image", ImageFeature(decode=False))
    copies = with_stressed_copies(validation, SELECTION_CHANGES, max_images=3, seed=0)
    rows = copies.with_format(None)
    assert len(copies) == len(validation) + 3 * len(SELECTION_CHANGES)
    assert rows["stress"][:len(validation)] == [CLEAN] * len(validation)
    indices = [i for name, i in zip(rows["stress"], rows["stress_index"]) if name == SELECTION_CHANGES[0]]
    assert len(set(indices)) == 3
    processor = AutoImageProcessor.from_pretrained(tiny_backbone_dirs["vit"])
    copies.set_transform(stressed_transform(processor, seed=0))
    batch = copies[len(validation):len(validation) + 3]
    plain = validation.with_format(None)
    clean = stressed_transform(processor)({"image": [plain[i]["image"] for i in indices],
                                           "label": [plain[i]["label"] for i in indices],
                                           "stress": [CLEAN] * 3, "stress_index": indices})
    assert batch["pixel_values"].shape == clean["pixel_values"].shape
    assert not np.allclose(batch["pixel_values"].numpy(), clean["pixel_values"].numpy())


def test_training_selects_on_stressed_copies_and_reports_the_suite(tmp_path, real_imagefolder, tiny_backbone_dirs):
    output = tmp_path / "model"
    train_tiny(real_imagefolder, tiny_backbone_dirs["vit"], output, "--stress_selection_images", "4",
               "--stress_suite", "true", "--stress_suite_images", "5")
    state = json.loads((output / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_robust_roc_auc" in entry]
    assert evaluations and all(f"eval_roc_auc_{name}" in evaluations[0] for name in SELECTION_CHANGES)
    assert state["best_metric"] == max(entry["eval_robust_roc_auc"] for entry in evaluations)
    stress = json.loads((output / "eval" / "stress" / "stress.json").read_text())
    assert set(stress["changes"]) == {CLEAN, *(change.name for change in STRESS_SUITE)}
    # The suite ran on a subset of 5; the clean carved metrics still count every carved image.
    carved = json.loads((output / "eval" / "carved_validation" / "metrics.json").read_text())
    assert stress["num_images"] == 5 < carved["num_images"]
    config = json.loads((output / "config.json").read_text())
    assert stress["threshold"] == pytest.approx(config["operating_threshold"])
    card = (output / "README.md").read_text()
    assert "### Stress suite" in card and "| zoom_centre_65 | framing |" in card
    assert "zoom/crop to 30-100 % of the area, aspect 0.75-1.33, off-centre (50 %)" in card
    assert (output / "eval" / "stress" / "stress.png").stat().st_size > 0


def test_evaluate_cli_runs_the_stress_suite(tmp_path, real_imagefolder, tiny_trained_dirs):
    import evaluate_hf
    from tests.conftest import run_main

    result = run_main(evaluate_hf.main, "evaluate_hf.py", "--model_name_or_path", tiny_trained_dirs["vit"], "--dataset_name_or_dir",
                      real_imagefolder, "--split", "validation", "--output_dir", tmp_path / "eval", "--stress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| text_laterality | text |" in result.stdout
    stress = json.loads((tmp_path / "eval" / "stress" / "stress.json").read_text())
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert stress["changes"][CLEAN]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert stress["num_images"] == metrics["num_images"] == 8
    assert (tmp_path / "eval" / "stress" / "stress_examples.png").stat().st_size > 0
