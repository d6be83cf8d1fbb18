"""One decision everywhere, and probabilities that mean what they say (pneumolens/calibration.py).

The decision test builds a tiny model whose three real radiographs fall below 0.5, between 0.5 and the
operating threshold, and above it, and asks every way of using the model: the page's function, /predict,
/explain, /report, `explain.py`, `explain.py report`, `evaluate_hf.py` and a plain transformers
`pipeline` on the saved folder.
"""

import csv
import json
import re
import shutil

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image
from sklearn.metrics import brier_score_loss
from transformers import pipeline

import app
import evaluate_hf
import explain as explain_cli
from pneumolens import commands
from pneumolens.calibration import calibrate, calibration_metrics, fit_platt, fold_decision, recalibrated
from pneumolens.decision import (
    CALIBRATION_KEY, REFERRAL_KEY, THRESHOLD_KEY, Calibration, ReferralBand, class_probabilities, decide,
    shown_probabilities,
)

from pneumolens.modeling import BUNDLED_MODEL, ModelSource, load_model, save_model, stored_dtype, load_model_and_processor
from pneumolens.preprocessing import pixel_values
from pneumolens.service import PneumoLensService
from pneumolens.serving.api import ProgramApi
from pneumolens.serving.page import PageHandlers
from tests.conftest import run_main
from tests.test_app import explained

MODEL_ID = "pneumolens/tiny-decision"


# -- calibration --------------------------------------------------------------------------------------------

def test_platt_scaling_recovers_the_scale_and_bias_that_generated_the_labels():
    rng = np.random.default_rng(0)
    differences = rng.normal(0, 3, 20_000)
    truth = rng.random(20_000) < 1 / (1 + np.exp(-(0.5 * differences + 1.2)))
    fitted = fit_platt(differences, truth)
    assert fitted.scale == pytest.approx(0.5, abs=0.03) and fitted.bias == pytest.approx(1.2, abs=0.06)


def test_calibration_metrics_by_hand_and_against_scikit_learn():
    truth = np.array([0, 0, 1, 1, 1])
    probabilities = np.array([0.1, 0.12, 0.9, 0.95, 0.5])
    # 15 bins: [0.1, 0.12] share a bin (mean 0.11, observed 0), 0.5 alone (observed 1), 0.9 and 0.95 apart.
    expected_ece = (2 * 0.11 + 1 * 0.5 + 1 * 0.1 + 1 * 0.05) / 5
    measured = calibration_metrics(truth, probabilities)
    assert measured["ece"] == pytest.approx(expected_ece)
    assert measured["brier"] == pytest.approx(brier_score_loss(truth, probabilities))
    rng = np.random.default_rng(1)
    calibrated = rng.random(50_000)
    assert calibration_metrics(rng.random(50_000) < calibrated, calibrated)["ece"] < 0.01
    assert calibration_metrics(rng.random(50_000) < calibrated, calibrated ** 3)["ece"] > 0.15


@pytest.mark.parametrize("storage", [torch.float32, torch.float16])
def test_folding_keeps_every_decision_and_makes_the_top_logit_the_decision(tiny_trained_dirs, real_images, storage,
                                                                           tmp_path):
    source = ModelSource(str(tiny_trained_dirs["vit"]))
    model, processor = load_model_and_processor(source)
    images = [*real_images["NORMAL"], *real_images["PNEUMONIA"]]
    pixels = pixel_values(processor, images)
    setattr(model.config, CALIBRATION_KEY, None)
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    softmax = torch.softmax(logits, -1).numpy()
    # A threshold among these images' scores, so that folding has decisions to keep on both sides.
    setattr(model.config, THRESHOLD_KEY, float(np.median(softmax[:, 1])) + 1e-4)
    before = [decide(model.config, p) for p in softmax[:, 1]]
    assert len(set(before)) == 2
    calibration = Calibration(scale=1.7, bias=0.3)
    fold_decision(model, calibration, storage)
    model.to(storage).save_pretrained(tmp_path)
    assert stored_dtype(tmp_path) == storage
    folded = load_model(ModelSource(str(tmp_path)))
    with torch.no_grad():
        folded_logits = folded(pixel_values=pixels).logits
    shown = shown_probabilities(folded.config, folded_logits).numpy()
    assert [folded.config.id2label[int(i)] for i in folded_logits.argmax(-1)] == before
    assert [decide(folded.config, p) for p in shown[:, 1]] == before
    # What the app shows is the calibration of the logits before the fold, whatever the storage rounded.
    expected = recalibrated(softmax, calibration, positive=1)
    assert shown == pytest.approx(expected, abs=2e-3 if storage == torch.float16 else 1e-5)


def test_calibrate_writes_figures_and_keeps_the_carved_split_metrics(tiny_trained_dirs, real_images, tmp_path):
    source = ModelSource(str(tiny_trained_dirs["dinov2"]))
    model, processor = load_model_and_processor(source)
    setattr(model.config, CALIBRATION_KEY, None)
    setattr(model.config, THRESHOLD_KEY, 0.5)
    images = [*real_images["NORMAL"], *real_images["PNEUMONIA"]]
    truth = np.array([0] * len(real_images["NORMAL"]) + [1] * len(real_images["PNEUMONIA"]))
    # Probabilities that are informative but overconfident: Platt scaling must lower the log loss.
    rng = np.random.default_rng(0)
    differences = (truth - 0.5) * 6 + rng.normal(0, 3, len(truth))
    positive = 1 / (1 + np.exp(-differences))
    probabilities = np.stack([1 - positive, positive], axis=1)
    groups = [f"patient{i // 2}" for i in range(len(images))]
    record = calibrate(model, truth, probabilities, groups, tmp_path)
    assert record["after"]["log_loss"] < record["before"]["log_loss"]
    assert record["decisions_changed"] == 0
    assert (tmp_path / "reliability.png").stat().st_size > 5_000
    assert json.loads((tmp_path / "calibration.json").read_text())["calibration"] == getattr(model.config, CALIBRATION_KEY)


def test_a_model_that_cannot_be_calibrated_still_gets_its_decision_folded(tiny_trained_dirs, tmp_path):
    model = load_model(ModelSource(str(tiny_trained_dirs["vit"])))
    setattr(model.config, CALIBRATION_KEY, None)
    setattr(model.config, THRESHOLD_KEY, 0.7)
    truth = np.array([1, 1, 1, 1])  # one class only
    probabilities = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.35, 0.65]])
    record = calibrate(model, truth, probabilities, ["a", "b", "c", "d"], tmp_path)
    assert record["calibration"] is None and getattr(model.config, THRESHOLD_KEY) == 0.5
    assert record["decisions_changed"] == 0


def test_a_trained_model_ships_calibrated_with_its_decision_folded(tiny_trained_dirs):
    for model_type, directory in tiny_trained_dirs.items():
        config = json.loads((directory / "config.json").read_text())
        assert THRESHOLD_KEY in config, model_type
        assert (directory / "eval" / "calibration" / "reliability.png").is_file(), model_type
        card = (directory / "README.md").read_text()
        assert card.count("\n## Calibration\n") == 1 and "### Calibration" not in card, model_type


# -- one decision everywhere ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_sided_model(tiny_trained_dirs, real_images, tmp_path_factory):
    """The tiny DINOv2 classifier, its bias and calibration set so that three real radiographs have shown
    P(PNEUMONIA) below 0.5, between 0.5 and the operating threshold, and above the threshold.
    Yields (model directory, {side: image path}). No OOD detector: the test is about the threshold."""
    directory = tmp_path_factory.mktemp("three-sided") / "model"
    shutil.copytree(tiny_trained_dirs["dinov2"], directory)
    (directory / "ood_detector.safetensors").unlink(missing_ok=True)
    source = ModelSource(str(directory))
    model, processor = load_model_and_processor(source)
    images = [*real_images["NORMAL"], *real_images["PNEUMONIA"]]
    with torch.no_grad():
        logits = model(pixel_values=pixel_values(processor, images)).logits
    differences = (logits[:, 1] - logits[:, 0]).numpy()
    order = np.argsort(differences)
    low, middle, high = order[0], order[len(order) // 2], order[-1]
    assert differences[low] < differences[middle] < differences[high]
    # Move the equal-logit point between the middle and the high image, then calibrate so that 0.5 falls
    # between the low and the middle one: the middle image is then above 0.5 and below the threshold.
    centre = (differences[middle] + differences[high]) / 2
    with torch.no_grad():
        model.classifier.bias[1] -= float(centre)
    bias = -((differences[low] + differences[middle]) / 2 - centre)
    setattr(model.config, CALIBRATION_KEY, {"method": "platt", "scale": 1.0, "bias": float(bias)})
    setattr(model.config, THRESHOLD_KEY, float(1 / (1 + np.exp(-bias))))
    # A referral band around the threshold that holds the middle image alone: it is referred, leaning NORMAL.
    shown_log_odds = differences - centre + bias
    lower, upper = (shown_log_odds[low] + shown_log_odds[middle]) / 2, (bias + shown_log_odds[high]) / 2
    setattr(model.config, REFERRAL_KEY, ReferralBand(float(1 / (1 + np.exp(-lower))), float(1 / (1 + np.exp(-upper)))).saved())
    model.save_pretrained(directory)
    return directory, {"below 0.5": images[low], "between": images[middle], "above": images[high]}


def test_every_way_of_using_the_model_gives_the_same_decision(three_sided_model, tmp_path, capsys):
    directory, images = three_sided_model
    service = PneumoLensService(ModelSource(str(directory)))
    threshold = service.predict(images["above"])["threshold"]
    shown = {side: service.predict(path)["probabilities"]["PNEUMONIA"] for side, path in images.items()}
    assert shown["below 0.5"] < 0.5 <= shown["between"] < threshold <= shown["above"], (shown, threshold)
    expected = {"below 0.5": "NORMAL", "between": "NORMAL", "above": "PNEUMONIA"}
    answers = {way: {} for way in ("page", "/predict", "/explain", "/report", "report file",
                                   "explain.py", "explain.py report", "evaluate_hf.py", "pipeline")}
    # The middle image lies in the model's referral band: every way that carries the referral says so.
    expected_referral = {"below 0.5": False, "between": True, "above": False}
    referrals = {way: {} for way in ("page", "/predict", "/explain", "/report", "report file",
                                     "explain.py", "explain.py report")}

    demo = app.build_demo(service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        client = Client(url, verbose=False)
        for side, path in images.items():
            # The API's endpoints (MCP agents call the same ones: tests/test_mcp.py).
            record, _ = explained(client, handle_file(str(path)))
            answers["/explain"][side], referrals["/explain"][side] = record["decision"], record["refer"]
            by_predict = json.loads(client.predict(handle_file(str(path)), api_name="/predict"))
            answers["/predict"][side], referrals["/predict"][side] = by_predict["decision"], by_predict["refer"]
            reported, report_file, _ = client.predict(handle_file(str(path)), app.PREDICTED, 0.5, api_name="/report")
            answers["/report"][side], referrals["/report"][side] = json.loads(reported)["decision"], \
                json.loads(reported)["refer"]
            html = open(report_file, encoding="utf-8").read()
            heading = html.split('<h2 id="decision">')[1].split("<")[0]
            answers["report file"][side], referrals["report file"][side] = headline_answer(heading)
            # The page's own handler.
            page = PageHandlers(ProgramApi(service)).analysis(str(path), app.PREDICTED, 0.5)
            answers["page"][side], referrals["page"][side] = page_answer(page["decision"])
    finally:
        demo.close()

    # The command lines, called in-process as their own `main`s (their own processes are tested elsewhere).
    for side, path in images.items():
        explain_cli.main([str(path), "--model_name_or_path", str(directory), "--out", str(tmp_path / "maps")])
        printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        answers["explain.py"][side], referrals["explain.py"][side] = printed["decision"], printed["refer"]

    folder = tmp_path / "images"
    for side, path in images.items():
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.parent.name / path.name)
    explain_cli.main(["report", str(folder), "--model_name_or_path", str(directory), "--out", str(tmp_path / "reports")])
    rows = list(csv.DictReader(open(tmp_path / "reports" / "summary.csv")))
    by_name = {row["image"].rsplit("/", 1)[-1]: row["decision"] for row in rows}
    referred = {row["image"].rsplit("/", 1)[-1]: row["refer"] == "True" for row in rows}
    evaluate_hf.main(["--model_name_or_path", str(directory), "--dataset_name_or_dir", str(folder), "--output_dir", str(tmp_path / "eval")])
    predicted = {row["image"]: row["predicted"] for row in csv.DictReader(open(tmp_path / "eval" / "predictions.csv"))}
    for side, path in images.items():
        answers["explain.py report"][side] = by_name[path.name]
        referrals["explain.py report"][side] = referred[path.name]
        answers["evaluate_hf.py"][side] = predicted[path.name]

    # A plain transformers pipeline on the saved folder, with its default arguments (a Hub round trip at a
    # revision is tests/test_hub.py's).
    classifier = pipeline("image-classification", model=str(directory))
    answers["pipeline"] = {side: classifier(str(path))[0]["label"] for side, path in images.items()}

    for way, decided in answers.items():
        assert decided == expected, way
    for way, referral in referrals.items():
        assert referral == expected_referral, way


def page_answer(markdown: str) -> tuple[str, bool]:
    """The page's headline as (the class decided or leant to, referred)."""
    return headline_answer(markdown.split("\n")[0].removeprefix("### "))


def headline_answer(heading: str) -> tuple[str, bool]:
    referral = re.fullmatch(r"Refer: a radiologist should read this film \(leans to (\w+)\)", heading)
    return (referral.group(1), True) if referral else (heading.removeprefix("Decision: "), False)


def test_plain_transformers_and_the_cards_lines_give_the_apps_float32_model(three_sided_model, tmp_path):
    """The card's "How to use", run as written on a model stored in float16: the pipeline and
    `from_pretrained` load float32 by default, and give the app's decisions and probabilities."""
    directory, images = three_sided_model
    stored = tmp_path / "float16"
    shutil.copytree(directory, stored)
    save_model(load_model(ModelSource(str(directory))), stored, torch.float16)
    assert stored_dtype(stored) == torch.float16
    service = PneumoLensService(ModelSource(str(stored)))
    how_to_use = (BUNDLED_MODEL / "README.md").read_text().split("## How to use", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", how_to_use, re.DOTALL))
    assert code.count('"models/pneumolens-dinov2-small"') == 3 and code.count('"chest_xray.jpeg"') == 2
    for side, path in images.items():
        namespace = {}
        exec(code.replace('"models/pneumolens-dinov2-small"', repr(str(stored)))
             .replace('"chest_xray.jpeg"', repr(str(path))), namespace)
        assert namespace["classifier"].model.dtype == namespace["model"].dtype == torch.float32
        expected = service.predict(path)
        assert namespace["decision"] == expected["decision"] == namespace["classifier"](str(path))[0]["label"], side
        assert float(namespace["probability"]) == pytest.approx(expected["probabilities"]["PNEUMONIA"], abs=1e-5)
        assert namespace["refer"] == expected["refer"] == (side == "between"), side
    # The bundled model: small on disk, float32 when loaded.
    assert stored_dtype(BUNDLED_MODEL) == torch.float16
    assert json.loads((BUNDLED_MODEL / "config.json").read_text())["dtype"] == "float32"


def test_class_probabilities_are_the_calibrated_ones(three_sided_model, real_images):
    directory, images = three_sided_model
    source = ModelSource(str(directory))
    model, processor = load_model_and_processor(source)
    pixels = pixel_values(processor, [Image.open(images["between"]).convert("RGB")])
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits[0]
    calibration = Calibration.of(model.config)
    expected = 1 / (1 + np.exp(-calibration.log_odds(float(logits[1] - logits[0]))))
    assert class_probabilities(model, pixels)[0, 1] == pytest.approx(expected, abs=1e-6)
    assert torch.softmax(logits, -1)[1] < 0.5 < expected  # the pipeline's score and the shown probability differ


def test_the_probabilities_given_back_after_a_fold_without_calibration_are_the_folded_softmax(tiny_trained_dirs,
                                                                                             real_images, tmp_path):
    from pneumolens.calibration import shown_after

    source = ModelSource(str(tiny_trained_dirs["vit"]))
    model, processor = load_model_and_processor(source)
    setattr(model.config, CALIBRATION_KEY, None)
    setattr(model.config, THRESHOLD_KEY, 0.6)
    pixels = pixel_values(processor, real_images["NORMAL"][:3])
    before = class_probabilities(model, pixels)
    record = calibrate(model, np.ones(3), before, ["a", "b", "c"], tmp_path)  # one class: no calibration
    assert recalibrated(before, shown_after(record), 1) == pytest.approx(class_probabilities(model, pixels), abs=1e-5)


def test_the_calibration_command_updates_a_saved_model_and_its_card(tiny_trained_dirs, real_imagefolder, copy_of):
    directory = copy_of(tiny_trained_dirs["convnext"])
    (directory / "eval" / "calibration").rename(directory / "eval" / "calibration-from-training")
    before = load_model(ModelSource(str(directory)))
    result = run_main(commands.main, "python -m pneumolens", "calibrate", "--model_name_or_path", directory,
                      "--dataset_name_or_dir", real_imagefolder, "--validation_fraction", "0.25")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((directory / "eval" / "calibration" / "calibration.json").read_text())
    assert record["decisions_changed"] == 0 and record["images"] >= 8
    after = load_model(ModelSource(str(directory)))
    assert getattr(after.config, THRESHOLD_KEY) == pytest.approx(record["threshold_after"])
    # Refitted on an already folded model: the boundary was at equal logits, so the bias moves by ~0.
    assert torch.allclose(after.classifier.bias, before.classifier.bias, atol=1e-5)
    card = (directory / "README.md").read_text()
    assert card.count("\n## Calibration\n") == 1 and "python -m pneumolens calibrate --model_name_or_path" in card
    assert "## How to use" in card and "### Figures" in card  # nothing else was replaced
    missing = run_main(commands.main, "python -m pneumolens", "calibrate", "--model_name_or_path",
                       directory / "nothing", "--dataset_name_or_dir", real_imagefolder)
    assert missing.returncode == 2 and "Model directory not found" in missing.stderr


def test_a_card_section_is_found_by_its_whole_heading(tmp_path):
    from pneumolens.card import set_card_section

    card = tmp_path / "README.md"
    card.write_text("## Results\n\n### Calibration\n\nold\n\n### Stress\n\nrows\n\n## How to use\n\ncode\n")
    set_card_section(card, "Calibration", "new")
    text = card.read_text()
    assert "### Calibration\n\nold" in text and "### Stress\n\nrows" in text
    assert text.index("## Calibration\n\nnew") < text.index("## How to use")
    set_card_section(card, "Calibration", "newer")
    assert "newer" in card.read_text() and "\n\nnew\n" not in card.read_text() and "### Stress" in card.read_text()


def test_the_card_says_what_the_pipeline_scores_are_for_each_kind_of_model():
    from pneumolens.card import how_to_decide

    unfolded = how_to_decide("PNEUMONIA", folded=False, calibrated=False, repo_id="a/b")
    folded = how_to_decide("PNEUMONIA", folded=True, calibrated=False, repo_id="a/b")
    calibrated = how_to_decide("PNEUMONIA", folded=True, calibrated=True, repo_id="a/b")
    assert "the top label is not the decision" in unfolded
    assert "top label is the model's decision" in folded and "not calibrated" in folded
    assert "probability_calibration" not in folded and "probability_calibration" in calibrated

