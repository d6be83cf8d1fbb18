"""The third answer: the referral band, chosen on validation data only, and the same `refer` wherever the
decision goes."""

import hashlib
import json

import numpy as np
import pytest
import torch
from scipy.stats import binom

from pneumolens.decision import INSIDE_BAND, REFERRAL_KEY, Referral, ReferralBand, referral
from pneumolens.errors import PneumoLensError
from pneumolens.metrics import binary_metrics
from pneumolens.referral import STABILITY_CHANGES, choose_band, margins, width_grid
from pneumolens.robustness import check_image
from pneumolens.stress import CLEAN, STRESS_SUITE, stress_report

THRESHOLD = 0.5


def films_with_errors_inside(count: int, error_margin: float, seed: int, spread: float = 4.0):
    """`count` films, half positive, whose margins to THRESHOLD are spread evenly over [0, `spread`) log-odds;
    every film closer than `error_margin` is on the wrong side, every other on the right one. Returns
    (truth, shown probability of the positive class)."""
    rng = np.random.default_rng(seed)
    truth = rng.permutation(np.arange(count) % 2 == 0)
    margin = rng.permutation(np.linspace(0, spread, count, endpoint=False))
    wrong = margin < error_margin
    says_positive = truth ^ wrong
    log_odds = np.where(says_positive, margin + 1e-6, -margin - 1e-6)
    return truth, 1 / (1 + np.exp(-log_odds))


def test_the_band_is_the_narrowest_width_that_keeps_the_target_and_the_next_narrower_fails():
    truth, scores = films_with_errors_inside(2000, error_margin=1.0, seed=0)
    choice = choose_band(truth, {CLEAN: scores}, THRESHOLD, target_error=0.02, confidence=0.9)
    width = choice.band.width
    # Every decided film beyond the error margin is right, so the band need not reach past it, and it may
    # stop short of it only by the few errors the binomial test allows.
    assert 0.85 < width <= 1.0
    kept = margins(scores, THRESHOLD) >= width
    errors = int(np.sum((truth != (scores >= THRESHOLD)) & kept))
    assert binom.cdf(errors, kept.sum(), 0.02) <= 0.1
    # The next width of the label-free grid fails the test: the band is the narrowest that passes.
    grid = width_grid(margins(scores, THRESHOLD))
    narrower = grid[grid.index(width) + 1]
    kept = margins(scores, THRESHOLD) >= narrower
    errors = int(np.sum((truth != (scores >= THRESHOLD)) & kept))
    assert binom.cdf(errors, kept.sum(), 0.02) > 0.1
    # The bounds are the width either side of the threshold, on the probability.
    assert choice.band.lower == pytest.approx(1 / (1 + np.exp(width)))
    assert choice.band.upper == pytest.approx(1 / (1 + np.exp(-width)))
    figures = choice.sets[CLEAN]
    assert figures.errors_referred / figures.errors > 0.85


def test_a_stressed_copy_that_errs_further_out_widens_the_band():
    truth, clean = films_with_errors_inside(2000, error_margin=0.5, seed=1)
    _, stressed = films_with_errors_inside(2000, error_margin=1.5, seed=1)
    alone = choose_band(truth, {CLEAN: clean}, THRESHOLD).band.width
    both = choose_band(truth, {CLEAN: clean, "zoom_centre_55": stressed}, THRESHOLD).band.width
    assert alone <= 0.5 < 1.3 < both <= 1.5


def test_a_target_no_band_can_meet_is_refused_with_the_reason():
    truth, scores = films_with_errors_inside(300, error_margin=3.0, seed=2)
    with pytest.raises(PneumoLensError, match="No referral band that refers at most 50 %"):
        choose_band(truth, {CLEAN: scores}, THRESHOLD, target_error=0.01)
    with pytest.raises(PneumoLensError, match="unchanged films"):
        choose_band(truth, {"zoom_centre_55": scores}, THRESHOLD)


def test_the_selective_figures_match_a_count_by_hand():
    truth = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    scores = np.array([0.95, 0.6, 0.3, 0.1, 0.55, 0.45, 0.52, 0.9])
    band = (0.4, 0.7)
    figures = binary_metrics(truth, scores, THRESHOLD, referral_band=band, risk_coverage=True)
    assert "risk_coverage" not in binary_metrics(truth, scores, THRESHOLD, referral_band=band)  # only when asked
    # Referred (0.4 < p < 0.7): 0.6, 0.55, 0.45, 0.52. Decided: 0.95 (TP), 0.3 (FN), 0.1 (TN), 0.9 (FP).
    assert figures["referred_share"] == 0.5
    # Errors at the threshold: 0.3 (FN), 0.55 (FP), 0.9 (FP); one of the three (0.55) referred.
    assert figures["errors_referred"] == pytest.approx(1 / 3)
    assert figures["decided_accuracy"] == 0.5
    assert figures["decided_sensitivity"] == 0.5 and figures["decided_specificity"] == 0.5
    # AURC by hand: the films in order of their margin in log-odds, the error rate after each.
    margin = np.abs(np.log(scores / (1 - scores)))
    wrong = (truth == 1) != (scores >= THRESHOLD)
    ordered = wrong[np.argsort(-margin, kind="stable")]
    assert figures["aurc"] == pytest.approx(np.mean(np.cumsum(ordered) / np.arange(1, 9)))
    assert figures["risk_coverage"]["risk"][-1] == pytest.approx(3 / 8)
    with_intervals = binary_metrics(truth, scores, THRESHOLD, bootstrap_samples=200, referral_band=band)
    low, high = with_intervals["intervals"]["referred_share"]
    assert low <= 0.5 <= high and low < high


def test_a_change_into_the_band_refers_and_only_a_decided_other_class_flips():
    band = ReferralBand(0.3, 0.8)
    changes = STRESS_SUITE[:3]
    moved = {changes[0].name: 0.95, changes[1].name: 0.6, changes[2].name: 0.1}
    answers = iter([moved[change.name] for change in changes])
    decide = lambda p: "PNEUMONIA" if p >= THRESHOLD else "NORMAL"  # noqa: E731
    from PIL import Image

    image = Image.new("L", (64, 64), 128)
    check = check_image(image, 0.95, lambda images: [next(answers) for _ in images], decide, THRESHOLD,
                        "PNEUMONIA", changes=changes, band=band)
    assert not check.refer and check.held == 1
    assert [o.name for o in check.referred] == [changes[1].name]  # 0.6: in the band, leaning the same way
    assert [o.name for o in check.flipped] == [changes[2].name]  # 0.1: decided NORMAL
    sentence = check.sentence()
    assert "flips it" in sentence and "into the referral band" in sentence
    record = check.record()
    assert record["referred"] == [changes[1].name] and record["flipped"] == [changes[2].name]
    # The same film inside the band: it stays referred, or a change decides it.
    answers = iter([moved[change.name] for change in changes])
    check = check_image(image, 0.6, lambda images: [next(answers) for _ in images], decide, THRESHOLD,
                        "PNEUMONIA", changes=changes, band=band)
    assert check.refer and check.held == 1 and {o.name for o in check.decided} == {changes[0].name, changes[2].name}
    assert check.sentence().startswith("This film is referred to a person (it leans to PNEUMONIA)")
    # Without a band, a change is a flip as before.
    answers = iter([moved[change.name] for change in changes])
    check = check_image(image, 0.95, lambda images: [next(answers) for _ in images], decide, THRESHOLD,
                        "PNEUMONIA", changes=changes)
    assert [o.name for o in check.flipped] == [changes[2].name] and check.held == 2 and not check.referred


def test_the_stress_report_says_which_films_a_change_moves_into_the_band():
    truth = np.array([0, 0, 1, 1])
    clean = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.05, 0.95]])
    zoomed = np.array([[0.45, 0.55], [0.8, 0.2], [0.1, 0.9], [0.5, 0.5]])
    report = stress_report(truth, {CLEAN: clean, "zoom_centre_55": zoomed}, 1, THRESHOLD, ReferralBand(0.4, 0.6))
    assert report["zoom_centre_55"]["moved_into_band"] == 0.5
    assert report["zoom_centre_55"]["referred_share"] == 0.5
    assert report[CLEAN]["referred_share"] == 0.0
    assert "referred_share" not in stress_report(truth, {CLEAN: clean}, 1, THRESHOLD)[CLEAN]


def test_the_rule_is_none_without_a_band_and_for_an_image_that_is_not_a_radiograph():
    class Config:
        id2label = {0: "NORMAL", 1: "PNEUMONIA"}
        label2id = {"NORMAL": 0, "PNEUMONIA": 1}
        positive_label = "PNEUMONIA"

    config = Config()
    inside = {"NORMAL": 0.4, "PNEUMONIA": 0.6}
    assert not referral(config, inside, {"flagged": False}).refer
    setattr(config, REFERRAL_KEY, ReferralBand(0.5, 0.7).saved())
    assert referral(config, inside, {"flagged": False}) == Referral(True, INSIDE_BAND)
    assert not referral(config, inside, {"flagged": True}).refer
    assert referral(config, {"NORMAL": 0.2, "PNEUMONIA": 0.8}, {"flagged": False}) == Referral()


def test_the_command_chooses_the_band_on_the_carved_validation_films_only(tiny_trained_dirs, real_imagefolder,
                                                                          copy_of, monkeypatch, capsys):
    from pneumolens.commands import main, referral_band
    from pneumolens.data import carved_split, image_sources

    model_dir = copy_of(tiny_trained_dirs["dinov2"])
    training, validation = carved_split(str(real_imagefolder), 0.25)
    names = validation.features["label"].names
    positive_of = {_key(source): names[label] == "PNEUMONIA"
                   for source, label in zip(image_sources(validation), validation["label"])}
    seen = {}

    def scored(model, processor, images, changes, seed, batch_size):
        # Scores that make a band possible (the tiny model's own are near chance): every film far on its
        # right side of any threshold.
        seen["images"], seen["changes"] = [_key(image) for image in images], [change.name for change in changes]
        positive = np.array([0.999 if positive_of[key] else 0.001 for key in seen["images"]])
        return {name: np.stack([1 - positive, positive], axis=1) for name in (CLEAN, *seen["changes"])}

    from pneumolens import referral as referral_module

    real_checks = referral_module.predict_checked

    def checked(model, processor, images, sets, checks, chosen, seed, batch_size):
        seen["checked_images"], seen["checks"] = [_key(image) for image in images], checks
        seen["checked_sets"] = set(sets)
        return real_checks(model, processor, images, sets, checks, chosen, seed, batch_size)

    monkeypatch.setattr(referral_band, "predict_stressed", scored)
    monkeypatch.setattr(referral_module, "predict_checked", checked)
    arguments = ["referral-band", "--model_name_or_path", str(model_dir), "--dataset_name_or_dir",
                 str(real_imagefolder), "--validation_fraction", "0.25"]
    with pytest.raises(PneumoLensError, match="No referral band"):  # 12 films cannot show 2 % with 90 % confidence
        main(arguments)
    main([*arguments, "--target_error", "0.45", "--confidence", "0.6"])
    assert seen["images"] == seen["checked_images"] == [_key(source) for source in image_sources(validation)]
    assert seen["checks"] == STABILITY_CHANGES and seen["checked_sets"] == {CLEAN, *seen["changes"]}
    assert not {_key(source) for source in image_sources(training)} & set(seen["images"])
    assert seen["changes"] == ["zoom_centre_55", "zoom_offcentre_65", "letterbox_75", "stretch_narrow_80",
                               "text_mixed", "leads_3", "gamma_1.7", "local_contrast"]
    saved = json.loads((model_dir / "config.json").read_text())[REFERRAL_KEY]
    # Every film is right and far from the threshold: the narrowest band of the grid, none wide, passes.
    assert saved["width"] == 0.0 and saved["lower"] == pytest.approx(saved["upper"])
    assert saved["target_error"] == 0.45 and saved["confidence"] == 0.6
    # No film lies near enough to the threshold to be checked, so no change moved one: no stability rule.
    assert json.loads((model_dir / "config.json").read_text()).get("referral_stability") is None
    record = json.loads((model_dir / "eval" / "referral" / "referral.json").read_text())
    assert set(record["sets"]) == {CLEAN, *seen["changes"]}
    card = (model_dir / "README.md").read_text()
    assert "## Referral band" in card and "### Refer or decide" in card
    assert card.index("## Referral band") < card.index("## How to use") < card.index("### Refer or decide")
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):])["band"] == saved


def _key(source) -> str:
    return source if isinstance(source, str) else hashlib.sha1(source).hexdigest()


def test_a_model_without_a_band_decides_every_film_as_before(tiny_trained_dirs, real_images):
    from pneumolens.modeling import ModelSource
    from pneumolens.presentation import decision_markdown
    from pneumolens.service import PneumoLensService

    service = PneumoLensService(ModelSource(str(tiny_trained_dirs["dinov2"])))
    assert REFERRAL_KEY not in service.config.to_dict() or service.config.to_dict()[REFERRAL_KEY] is None
    image = real_images["PNEUMONIA"][0]
    predicted = service.predict(image)
    assert predicted["refer"] is False and predicted["referral_band"] is None
    analysis = service.analyse(image)
    record = analysis.record()
    assert record["refer"] is False and record["referral_band"] is None
    assert record["decision"] == predicted["decision"] in ("NORMAL", "PNEUMONIA")
    page = decision_markdown(analysis)
    assert page.startswith(f"### Decision: {record['decision']}\n") and "referral" not in page
    assert "probability-band" not in page
    assert not service.robustness(image).record()["referred"]


def test_evaluation_reports_the_selective_figures_and_the_risk_coverage_curve(tiny_trained_dirs, real_imagefolder,
                                                                                copy_of):
    import evaluate_hf
    from pneumolens.decision import operating_threshold
    from pneumolens.modeling import ModelSource, load_model

    model_dir = copy_of(tiny_trained_dirs["dinov2"])
    evaluate_hf.main(["--model_name_or_path", str(model_dir), "--dataset_name_or_dir", str(real_imagefolder),
                      "--split", "validation", "--output_dir", str(model_dir / "without"), "--bootstrap_samples", "50"])
    without = json.loads((model_dir / "without" / "metrics.json").read_text())
    assert "referred_share" not in without and (model_dir / "without" / "risk_coverage.png").is_file()
    # A band around the threshold as wide as the whole range refers every film but those at the very ends.
    config = load_model(ModelSource(str(model_dir))).config
    band = ReferralBand.around(operating_threshold(config), 30.0)
    setattr(config, REFERRAL_KEY, band.saved())
    config.save_pretrained(model_dir)
    evaluate_hf.main(["--model_name_or_path", str(model_dir), "--dataset_name_or_dir", str(real_imagefolder),
                      "--split", "validation", "--output_dir", str(model_dir / "with"), "--bootstrap_samples", "50"])
    metrics = json.loads((model_dir / "with" / "metrics.json").read_text())
    predictions = np.loadtxt(model_dir / "with" / "predictions.csv", delimiter=",", skiprows=1, usecols=4)
    assert metrics["referred_share"] == pytest.approx(np.mean((predictions > band.lower) & (predictions < band.upper)),
                                                      abs=1e-6)
    assert metrics["referral_band"] == [band.lower, band.upper]
    for name in ("referred_share", "errors_referred", "decided_accuracy", "aurc"):
        assert name in metrics["intervals"], name
    # AURC by hand from the predictions file: the films in order of their margin, the error rate after each.
    labels = np.loadtxt(model_dir / "with" / "predictions.csv", delimiter=",", skiprows=1, usecols=1, dtype=str)
    wrong = (labels == "PNEUMONIA") != (predictions >= metrics["threshold"])
    ordered = wrong[np.argsort(-margins(predictions, metrics["threshold"]), kind="stable")]
    assert metrics["aurc"] == pytest.approx(np.mean(np.cumsum(ordered) / np.arange(1, len(ordered) + 1)), abs=1e-3)
    assert "risk_coverage" not in metrics  # drawn, not stored


def test_training_saves_the_band_it_can_choose_and_goes_on_without_one_it_cannot(tmp_path, caplog):
    from types import SimpleNamespace

    from transformers import PretrainedConfig

    import train_hf

    truth, scores = films_with_errors_inside(2000, error_margin=1.0, seed=3)
    probabilities = {CLEAN: np.stack([1 - scores, scores], axis=1),
                     "zoom_centre_55": np.stack([1 - scores, scores], axis=1)}
    config = PretrainedConfig(id2label={0: "NORMAL", 1: "PNEUMONIA"}, label2id={"NORMAL": 0, "PNEUMONIA": 1},
                              operating_threshold=THRESHOLD)
    model = SimpleNamespace(config=config)
    model_args = SimpleNamespace(referral_target_error=0.02, referral_confidence=0.9, referral_stability_changes="")
    record = train_hf._choose_referral_band(model, tmp_path, truth, probabilities, 1, ["zoom_centre_55"], model_args,
                                            "python train_hf.py ...")
    saved = json.loads((tmp_path / "config.json").read_text())[REFERRAL_KEY]
    assert saved == record["band"] and 0.85 < saved["width"] <= 1.0
    assert set(record["sets"]) == {CLEAN, "zoom_centre_55"}
    # A target no band can meet: a warning, and the model decides every film.
    model = SimpleNamespace(config=PretrainedConfig(id2label=config.id2label, label2id=config.label2id,
                                                    operating_threshold=THRESHOLD))
    model_args.referral_target_error = 0.001
    assert train_hf._choose_referral_band(model, tmp_path / "none", truth, probabilities, 1, [], model_args, "") is None
    assert getattr(model.config, REFERRAL_KEY, None) is None
    assert "No referral band" in caplog.text
    model_args.referral_target_error = 0.0  # off
    assert train_hf._choose_referral_band(model, tmp_path / "off", truth, probabilities, 1, [], model_args, "") is None


def films_with_far_errors_that_move(count: int, seed: int):
    """`films_with_errors_inside` (margins spread over 8 log-odds, errors closer than 0.5), plus 5 % far errors
    at 2-3 log-odds that every change moves to the threshold; one change ("gamma_0.6") also moves a tenth of
    the right films. The known best rule: a band of about 0.5, and the first change alone, one move enough."""
    truth, scores = films_with_errors_inside(count, error_margin=0.5, seed=seed, spread=8.0)
    rng = np.random.default_rng(seed)
    far = rng.choice(np.flatnonzero(_margins(scores) > 2.0), count // 20, replace=False)
    far_margin = rng.uniform(2.0, 3.0, len(far))
    says_positive = ~truth[far]  # wrong
    scores[far] = 1 / (1 + np.exp(-np.where(says_positive, far_margin, -far_margin)))
    moved_to = np.full(count, np.nan)
    moved_to[far] = THRESHOLD
    noisy = rng.random(count) < 0.1
    unmoved = np.where(np.isnan(moved_to), scores, moved_to)
    checks = {"zoom_centre_80": unmoved, "contrast_0.6": unmoved, "gamma_0.6": np.where(noisy, THRESHOLD, unmoved)}
    return truth, scores, far, {CLEAN: scores, **checks}


def _margins(scores):
    return margins(scores, THRESHOLD)


def test_the_band_and_the_stability_rule_are_chosen_together_and_the_known_best_setting_wins():
    from pneumolens.referral import choose_referral

    truth, scores, far, checked = films_with_far_errors_that_move(2000, seed=4)
    changes = ("zoom_centre_80", "contrast_0.6", "gamma_0.6")
    choice = choose_referral(truth, {CLEAN: checked}, THRESHOLD, changes, target_error=0.02, confidence=0.9)
    # The band alone must reach past the far errors; with the rule, it need not.
    alone = choose_band(truth, {CLEAN: scores}, THRESHOLD, target_error=0.02, confidence=0.9)
    assert alone.band.width > 2.5
    assert 0.4 < choice.band.width <= 0.5
    # Every far error is referred by the rule, and the cheapest rule that does so wins: the first change, once.
    assert choice.rule.changes == ("zoom_centre_80",) and choice.rule.min_moved == 1
    figures = choice.sets[CLEAN]
    assert figures.errors_unstable == figures.unstable == len(far)
    assert figures.referred < alone.sets[CLEAN].referred
    # The zone reaches the furthest film a change moved, and no further.
    assert choice.rule.zone_width == pytest.approx(_margins(scores[far]).max())
    # The record and the selective figures count the rule's referrals as referred.
    record = choice.record()
    assert record["stability"] == {"changes": ["zoom_centre_80"], "min_moved": 1, "zone_width": choice.rule.zone_width}
    assert record["sets"][CLEAN]["metrics"]["referred_share"] == pytest.approx(figures.referred / 2000)
    triage = record["sets"][CLEAN]["triage"]
    assert 0 < triage["normal_decided_alone"] <= 1 and triage["normal_decided_alone_at_sensitivity_0.98"] >= \
        triage["normal_decided_alone_at_sensitivity_0.99"]


def test_a_change_that_moves_nothing_gives_no_rule_and_the_band_alone_as_before():
    from pneumolens.referral import choose_referral

    truth, scores = films_with_errors_inside(2000, error_margin=1.0, seed=0)
    still = {CLEAN: scores, "zoom_centre_80": scores}
    choice = choose_referral(truth, {CLEAN: still}, THRESHOLD, ("zoom_centre_80",), target_error=0.02)
    assert choice.rule is None
    assert choice.band == choose_band(truth, {CLEAN: scores}, THRESHOLD, target_error=0.02).band


def test_a_film_the_changes_move_is_referred_with_its_reason_and_one_far_from_the_band_is_not_checked(
        referring_model):
    from pneumolens.decision import INSIDE_BAND, StabilityRule
    from pneumolens.modeling import ModelSource
    from pneumolens.service import PneumoLensService

    directory, films = referring_model
    service = PneumoLensService(ModelSource(str(directory)))
    rule = StabilityRule.of(service.config)
    passes = []
    service.model.register_forward_hook(
        lambda module, args, kwargs, output: passes.append(len(kwargs["pixel_values"])), with_kwargs=True)
    answers = {}
    for role, film in films.items():
        passes.clear()
        answers[role] = service.predict(film)
        answers[role]["passes"] = list(passes)
    # Inside the band: referred for that, and no change is made.
    assert answers["band"]["refer"] and answers["band"]["refer_reason"] == INSIDE_BAND
    assert answers["band"]["stability_check"] is None and len(answers["band"]["passes"]) == 1
    # In the zone: one more pass, every change of the rule in it, and the reason names the changes that moved it.
    checked = answers["stability"]
    assert checked["refer"] and checked["passes"][1:] == [len(rule.changes)]
    moved = checked["stability_check"]["moved"]
    assert moved and checked["refer_reason"] == (f"moves into the band under {len(moved)} of the "
                                                 f"{len(rule.changes)} changes: {', '.join(moved)}")
    assert checked["stability_check"]["changes"] == list(rule.changes)
    # Beyond the zone: decided from its one pass, nothing checked.
    far = answers["decided"]
    assert not far["refer"] and far["refer_reason"] is None and far["stability_check"] is None
    assert len(far["passes"]) == 1
    # The analysis and the robustness check give the same answer, for the same reason.
    for role, film in films.items():
        analysis = service.analyse(film)
        assert (analysis.refer, analysis.referral.reason) == (answers[role]["refer"], answers[role]["refer_reason"])
        check = service.robustness(film)
        assert (check.refer, check.refer_reason) == (answers[role]["refer"], answers[role]["refer_reason"])
    # The robustness check sees the same changes move it (made the same way, seed 0).
    check = service.robustness(films["stability"]).record()
    assert set(moved) <= set(check["referred"]) | set(check["flipped"])
    assert check["sentence"].startswith("This film is referred to a person: its answer moves into the band under")
