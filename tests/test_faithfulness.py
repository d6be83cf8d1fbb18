"""Faithfulness measurement: curves, fills, ROAD, paired intervals, verdicts, and the command line.

A hand-made model whose logit reads one quadrant of the image is the ground truth: a map that marks
that quadrant must measure as faithful, and a map that marks the opposite one must not.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import explain as explain_cli
from pneumolens.data import balanced_sample, carved_validation
from pneumolens.explain import METHODS
from pneumolens.modeling import BUNDLED_MODEL
from pneumolens.explain.faithfulness import (
    RANDOM, FaithfulnessReport, FaithfulnessSettings, ImageRecord, _switched, class_log_odds, fill_image, image_scores,
    paired_interval, percentile_interval, pixel_order, ranking, summarise, verdict, with_random_map,
)

SIZE = 16


class QuadrantModel(torch.nn.Module):
    """Class 1's logit is the mean brightness of the top-left quadrant; class 0's is zero."""

    def forward(self, pixel_values):
        evidence = pixel_values[:, :, : SIZE // 2, : SIZE // 2].mean(dim=(1, 2, 3))
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(evidence), 4 * evidence], dim=1))


def quadrant_maps():
    right = np.zeros((SIZE, SIZE), dtype=np.float32)
    right[: SIZE // 2, : SIZE // 2] = 1.0
    wrong = np.zeros((SIZE, SIZE), dtype=np.float32)
    wrong[SIZE // 2:, SIZE // 2:] = 1.0
    return {"right": right, "wrong": wrong}


def bright_image(seed: int) -> torch.Tensor:
    """Noise, and the evidence: a top-left quadrant brighter than the rest (which every fill dims)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, SIZE, SIZE, generator=generator)
    image[:, :, : SIZE // 2, : SIZE // 2] += 2.0
    return image


def test_switched_batch_moves_the_highest_ranked_pixels_first_in_equal_steps():
    start, finish = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    order = pixel_order(np.arange(16, dtype=np.float32).reshape(4, 4), np.random.default_rng(0))
    batch = _switched(start, finish, order, steps=4)
    assert batch.shape == (5, 3, 4, 4)
    assert batch[0].sum() == 0 and torch.equal(batch[-1], torch.ones(3, 4, 4))
    assert [int(b[0].sum()) for b in batch] == [0, 4, 8, 12, 16]
    assert batch[1][0].flatten()[-4:].tolist() == [1, 1, 1, 1]  # the four highest map values went first


def test_ties_are_broken_at_random_not_top_rows_first():
    order = pixel_order(np.zeros((SIZE, SIZE)), np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(SIZE * SIZE))
    assert (order[: SIZE] >= SIZE).any()  # the first "row" of the order is not the image's first row


def test_log_odds_and_fills():
    logits = torch.tensor([[0.3, -1.2, 2.0], [1.0, 1.0, 1.0]])
    p = torch.softmax(logits, dim=1)[:, 2]
    assert torch.allclose(class_log_odds(logits, 2), torch.log(p / (1 - p)), atol=1e-5)
    image = bright_image(0)
    mean = fill_image(image, "mean")
    assert torch.allclose(mean[0, :, 0, 0], image[0].mean(dim=(1, 2)))
    assert mean.std(dim=(-2, -1)).max() == 0
    blurred = fill_image(image, "blur")
    assert blurred.shape == image.shape and blurred.std() < image.std()
    with pytest.raises(ValueError, match="fill"):
        fill_image(image, "black")


def test_the_map_of_the_evidence_beats_random_and_the_wrong_map_does_not():
    settings = FaithfulnessSettings(steps=8, road_percentiles=(50,), seed=0)
    rng = np.random.default_rng(0)
    records = []
    for seed in range(12):
        maps = with_random_map(quadrant_maps(), rng)
        records.append(ImageRecord(f"image-{seed}", 1, 1, image_scores(QuadrantModel(), bright_image(seed), maps, 1, settings, rng)))
    summary = summarise(records, ["right", "wrong"], settings.metrics(), seed=0, resamples=500)
    assert summary["verdicts"]["right"]["passes"], summary["verdicts"]["right"]
    assert not summary["verdicts"]["wrong"]["passes"] and "does not beat a random per-pixel map" in summary["verdicts"]["wrong"]["reason"]
    assert summary["ranking"] == ["right", "wrong"]
    for metric in settings.metrics():  # including ROAD
        assert summary["pairs"]["right vs wrong"][metric]["low"] > 0, metric
    assert summary["means"]["right"]["deletion_blur"] < summary["means"][RANDOM]["deletion_blur"]
    assert summary["means"]["right"]["insertion_mean"] > summary["means"][RANDOM]["insertion_mean"]


def test_paired_interval_is_exact_for_constant_differences_and_covers_zero_for_noise():
    rng = np.random.default_rng(0)
    assert paired_interval(np.full(50, 0.25), rng, 200) == {"mean": 0.25, "low": 0.25, "high": 0.25}
    noise = paired_interval(np.random.default_rng(1).normal(0, 1, 200), rng, 1000)
    assert noise["low"] < 0 < noise["high"]


def test_the_interval_is_bca_and_corrects_the_percentile_intervals_skew():
    # Skewed differences (log-normal): BCa moves the interval towards the long tail, where the mean's
    # sampling distribution leans; the percentile interval does not.
    skewed = np.random.default_rng(3).lognormal(0, 1.2, 40)
    bca = paired_interval(skewed, np.random.default_rng(0), 4000)
    percentile = percentile_interval(skewed, np.random.default_rng(0), 4000)
    assert bca["mean"] == percentile["mean"] == pytest.approx(skewed.mean())
    assert bca["low"] > percentile["low"] and bca["high"] > percentile["high"]
    assert bca["low"] < bca["mean"] < bca["high"]


def test_the_bundled_models_stored_verdicts_are_what_its_stored_scores_give_now():
    """The app's verdicts and captions come from the stored summary: it must be the one the code computes
    from the stored per-image scores (benchmarks/faithfulness_bca.py --write recomputes it)."""
    stored = json.loads((BUNDLED_MODEL / "eval" / "faithfulness.json").read_text())
    again = FaithfulnessReport.from_json(stored).summary()
    assert json.dumps(again, sort_keys=True) == json.dumps(stored["summary"], sort_keys=True)
    assert again["all"]["images"] == 100 and all(v["passes"] for v in again["all"]["verdicts"].values())


def test_verdict_needs_every_curve_and_ranking_orders_by_improvement():
    good, bad = {"mean": 1.0, "low": 0.5, "high": 1.5}, {"mean": 0.1, "low": -0.2, "high": 0.4}
    assert verdict({"deletion_blur": good, "insertion_blur": good, "road": bad})["passes"]  # ROAD informs, curves decide
    failing = verdict({"deletion_blur": good, "insertion_blur": bad})
    assert not failing["passes"] and "insertion (blur fill)" in failing["reason"]
    assert ranking({"a": {"x": bad, "y": bad}, "b": {"x": good, "y": good}}) == ["b", "a"]


def test_balanced_sample_splits_classes_evenly_and_is_seeded(real_imagefolder):
    validation = carved_validation(str(real_imagefolder), 0.3, seed=42)
    sample = balanced_sample(validation, 4, seed=1)
    assert sorted(sample["label"]) == [0, 0, 1, 1]
    assert balanced_sample(validation, 4, seed=1)["image"] == sample["image"]
    assert len(balanced_sample(validation, 10_000, seed=1)) == len(validation)


def test_command_line_measures_every_method_writes_json_and_card(tiny_trained_dirs, real_imagefolder, copy_of, tmp_path):
    model = copy_of(tiny_trained_dirs["dinov2"])
    out = tmp_path / "faithfulness.json"
    explain_cli.main(["faithfulness", "--dataset_name_or_dir", str(real_imagefolder), "--validation_fraction", "0.3",
                      "--num_images", "4", "--steps", "3", "--road_percentiles", "50", "--model_name_or_path", str(model),
                      "--out", str(out), "--card"])
    result = json.loads(out.read_text())
    assert result["summary"]["all"]["images"] == 4 and len(result["images"]) == 4
    assert set(result["images"][0]["scores"]) == {*METHODS, RANDOM, "random@4x4"}  # the 32 px input in 8 px patches
    assert set(result["images"][0]["scores"][RANDOM]) == {"deletion_blur", "insertion_blur", "deletion_mean",
                                                         "insertion_mean", "road"}
    assert all(record["image"].endswith(".jpeg") for record in result["images"])
    card = (model / "README.md").read_text()
    assert "## Explanations: faithfulness" in card and "log-odds" in card and "random map" in card


def test_curves_share_their_ends_and_match_the_direct_computation():
    from pneumolens.explain.faithfulness import curves, log_odds_of

    image, model, settings = bright_image(3), QuadrantModel(), FaithfulnessSettings(steps=4, road_percentiles=())
    result = curves(model, image, quadrant_maps(), 1, settings, np.random.default_rng(0))
    order = pixel_order(quadrant_maps()["right"], np.random.default_rng(0))  # "right" is ranked first, same rng
    for fill in ("blur", "mean"):
        filled = fill_image(image, fill)
        direct = log_odds_of(model, _switched(image, filled, order, 4), 1, 8)
        assert np.allclose(result["right"][f"deletion_{fill}"], direct, atol=1e-5)
        assert result["wrong"][f"insertion_{fill}"][0] == pytest.approx(direct[-1], abs=1e-5)  # starts at the fill


def test_a_random_map_of_a_grid_is_constant_in_spirit_on_its_cells_and_the_baselines_follow_granularity():
    from pneumolens.explain.faithfulness import baseline_name, random_map

    rng = np.random.default_rng(0)
    coarse, fine = random_map((32, 32), (4, 4), rng), random_map((32, 32), None, rng)
    # Upsampled from 4x4: neighbouring pixels nearly agree; per-pixel noise does not.
    assert np.abs(np.diff(coarse, axis=1)).mean() < 0.1 < np.abs(np.diff(fine, axis=1)).mean()
    maps = with_random_map({"patchy": coarse, "pixelwise": fine}, rng, {"patchy": (4, 4), "pixelwise": None})
    assert set(maps) == {"patchy", "pixelwise", RANDOM, "random@4x4"}
    assert baseline_name((4, 4)) == "random@4x4" and baseline_name(None) == RANDOM


def test_the_verdict_is_decided_against_the_random_map_of_the_same_granularity():
    """A coarse map that beats a random map of its own grid passes even where per-pixel noise scores
    higher on insertion, and both comparisons are kept."""
    rng = np.random.default_rng(0)
    records = []
    for index in range(40):
        noise = rng.normal(0, 0.2, 3)
        scores = {"coarse": {"deletion_blur": 2.0 + noise[0], "insertion_blur": 4.0 + noise[1]},
                  RANDOM: {"deletion_blur": 3.0, "insertion_blur": 4.5 + noise[2]},
                  "random@4x4": {"deletion_blur": 3.0, "insertion_blur": 3.0}}
        records.append(ImageRecord(f"image-{index}", 1, 1, scores))
    summary = summarise(records, ["coarse"], ["deletion_blur", "insertion_blur"], seed=0, resamples=500,
                        baselines={"coarse": "random@4x4"})
    assert summary["verdicts"]["coarse"]["passes"] and "4x4 grid" in summary["verdicts"]["coarse"]["reason"]
    assert summary["vs_baseline"]["coarse"]["insertion_blur"]["low"] > 0
    assert summary["vs_random"]["coarse"]["insertion_blur"]["high"] < 0  # per pixel it would have failed
    unmatched = summarise(records, ["coarse"], ["deletion_blur", "insertion_blur"], seed=0, resamples=500)
    assert not unmatched["verdicts"]["coarse"]["passes"] and unmatched["verdicts"]["coarse"]["failed"] == ["insertion_blur"]


def test_the_map_of_the_evidence_beats_its_grid_random_map_on_the_quadrant_model():
    settings = FaithfulnessSettings(steps=8, road_percentiles=(), seed=0)
    rng = np.random.default_rng(0)
    records = []
    for seed in range(12):
        coarse = quadrant_maps()  # a 2x2 map upsampled is still the quadrant
        maps = with_random_map(coarse, rng, {"right": (2, 2), "wrong": (2, 2)})
        records.append(ImageRecord(f"image-{seed}", 1, 1, image_scores(QuadrantModel(), bright_image(seed), maps, 1, settings, rng)))
    summary = summarise(records, ["right", "wrong"], settings.metrics(), 0, 500, {"right": "random@2x2", "wrong": "random@2x2"})
    assert summary["verdicts"]["right"]["passes"] and not summary["verdicts"]["wrong"]["passes"]
    assert summary["baselines"] == {"right": "random@2x2", "wrong": "random@2x2"}


def test_validation_parts_are_disjoint_by_patient_and_hold_both_classes(real_imagefolder):
    from pneumolens.data import patient_groups, validation_parts

    validation = carved_validation(str(real_imagefolder), 0.3, seed=42)
    parts = validation_parts(validation, seed=42)
    selection, confirmation = parts["selection"], parts["confirmation"]
    assert len(selection) + len(confirmation) == len(validation)
    assert not set(patient_groups(selection)) & set(patient_groups(confirmation))
    assert sorted(set(selection["label"])) == sorted(set(confirmation["label"])) == [0, 1]
    assert validation_parts(validation, seed=42)["selection"]["label"] == selection["label"]  # seeded


def test_the_candidate_with_the_highest_worst_lower_bound_is_chosen():
    from pneumolens.explain.selection import Candidate, choose

    def intervals(*lows):
        return {m: {"mean": low + 0.5, "low": low, "high": low + 1} for m, low in
                zip(("deletion_blur", "insertion_blur", "deletion_mean", "insertion_mean"), lows)}

    found = [Candidate("gradcam", (("gradcam_layer", "0.norm1"),)), Candidate("gradcam", (("gradcam_layer", "1.norm2"),)),
             Candidate("rollout", (("head_fusion", "mean"),))]
    summary = {"vs_baseline": {found[0].key: intervals(3.0, -0.1, 2.0, 2.0),  # great on three, fails one
                               found[1].key: intervals(0.2, 0.3, 0.2, 0.4),  # modest, passes all
                               found[2].key: intervals(0.1, 0.1, 0.1, 0.1)}}
    chosen = choose(summary, found)
    assert chosen == {"gradcam": found[1], "rollout": found[2]}


def test_select_stores_settings_that_the_cli_the_app_and_the_confirmation_use(
        tiny_trained_dirs, real_imagefolder, copy_of, tmp_path, real_images):
    from pneumolens.explain.options import SETTINGS_FILE, options_for
    from pneumolens.modeling import ModelSource
    from pneumolens.service import PneumoLensService

    model = copy_of(tiny_trained_dirs["dinov2"])
    common = ["--dataset_name_or_dir", str(real_imagefolder), "--validation_fraction", "0.3", "--num_images", "4",
              "--steps", "3", "--model_name_or_path", str(model)]
    explain_cli.main(["select", *common, "--gradcam_layers", "0.norm2", "1.output", "--cams", "gradcam", "hirescam",
                      "--head_fusions", "mean", "max", "--discard_ratios", "0", "--card"])
    stored = json.loads((model / SETTINGS_FILE).read_text())
    selection = stored["selection"]
    assert len(selection["candidates"]) == 2 * 2 + 2 and selection["images"] == 4
    chosen_gradcam = next(c for c in selection["candidates"] if c["key"] == selection["chosen"]["gradcam"])
    assert chosen_gradcam["margin"] == max(c["margin"] for c in selection["candidates"] if c["method"] == "gradcam")
    assert stored["settings"] == {**chosen_gradcam["settings"],
                                  **next(c["settings"] for c in selection["candidates"] if c["key"] == selection["chosen"]["rollout"])}
    assert "Explanations: method settings" in (model / "README.md").read_text()

    options = options_for(ModelSource(str(model)))
    assert (options.gradcam_layer, options.cam) == (stored["settings"]["gradcam_layer"], stored["settings"]["cam"])
    served = PneumoLensService(ModelSource(str(model))).analyse(real_images["NORMAL"][0])
    layer_words = {"0.norm2": "block 1 of 2, norm2", "1.output": "block 2 of 2, output"}[options.gradcam_layer]
    assert layer_words in served.explanation.settings["gradcam"] and layer_words in served.record()["maps"]["gradcam"]["settings"]
    out = tmp_path / "maps"
    explain_cli.main([str(real_images["NORMAL"][0]), "--model_name_or_path", str(model), "--out", str(out)])
    printed = json.loads((out / f"{real_images['NORMAL'][0].stem}_explanation.json").read_text())
    assert layer_words in printed["settings"]["gradcam"]

    # Confirmed on the other half: none of the images that chose the settings.
    measured = tmp_path / "faithfulness.json"
    explain_cli.main(["faithfulness", *common, "--road_percentiles", "--out", str(measured)])
    result = json.loads(measured.read_text())
    assert not {r["image"] for r in result["images"]} & set(selection["image_names"])
    assert result["baselines"]["saliency"] == RANDOM and result["baselines"]["gradcam"].startswith("random@")
    assert layer_words in result["map_settings"]["gradcam"]


def test_default_candidates_cover_the_last_blocks_or_stages_and_rollout_only_for_transformers():
    from pneumolens.explain.selection import candidates
    from pneumolens.modeling import CONVOLUTIONAL, TRANSFORMER

    vit = candidates(TRANSFORMER, 12)
    layers = {dict(c.settings)["gradcam_layer"] for c in vit if c.method == "gradcam"}
    assert layers == {f"{block}.{part}" for block in (9, 10, 11) for part in ("norm1", "norm2", "output")}
    assert {c.method for c in vit} == {"gradcam", "rollout"} and len({c.key for c in vit}) == len(vit)
    convnext = candidates(CONVOLUTIONAL, 2, cams=("gradcam", "hirescam"))
    assert {c.key for c in convnext} == {f"gradcam[gradcam_layer={s}.output, cam={cam}]" for s in (0, 1)
                                         for cam in ("gradcam", "hirescam")}
