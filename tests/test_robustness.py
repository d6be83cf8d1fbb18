"""Does this decision hold? One image under every change of the stress suite (pneumolens/robustness.py)."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

import app
import explain as explain_cli
from pneumolens.modeling import ModelSource
from pneumolens.robustness import check_image
from pneumolens.service import PneumoLensService
from pneumolens.stress import STRESS_SUITE

GREY = Image.new("RGB", (224, 224), (128, 128, 128))


def corner_model(image: Image.Image) -> float:
    """A model made sensitive to the top-left corner: P(PNEUMONIA) high while that corner is lit."""
    corner = np.asarray(image.convert("L"), dtype=np.float32)[:8, :8].mean() / 255.0
    return float(1 / (1 + np.exp(-20 * (corner - 0.3))))


def decide(p: float) -> str:
    return "PNEUMONIA" if p >= 0.5 else "NORMAL"


def test_a_change_that_darkens_the_corner_flips_a_corner_sensitive_decision():
    def predict(images):
        return [corner_model(image) for image in images]

    check = check_image(GREY, corner_model(GREY), predict, decide, 0.5, "PNEUMONIA")
    assert [outcome.name for outcome in check.outcomes] == [change.name for change in STRESS_SUITE]
    assert check.decision == "PNEUMONIA"
    flipped = {outcome.name for outcome in check.flipped}
    # A black border reaches the corner; a pasted marker in another corner, or a darker mid-tone, does not.
    assert {"letterbox_75", "shift_12"} <= flipped and not flipped & {"gamma_0.6", "jpeg_20", "blur_1.5"}
    assert all(outcome.decision == "NORMAL" for outcome in check.flipped)
    sentence = check.sentence()
    assert sentence.startswith(f"The decision PNEUMONIA holds under {26 - len(flipped)} of 26 changes")
    assert "shrunk to 75 %, centred on a black border (letterbox_75) to NORMAL" in sentence
    assert check.record() == check_image(GREY, corner_model(GREY), predict, decide, 0.5, "PNEUMONIA").record()  # seeded


def test_the_changed_images_go_through_the_model_in_batches():
    batches = []

    def predict(images):
        batches.append(len(images))
        return [0.9] * len(images)

    check = check_image(GREY, 0.9, predict, decide, 0.5, "PNEUMONIA", batch_size=9)
    # The 26 changed images in three passes (the unchanged image's probability is given, not recomputed).
    assert batches == [9, 9, 8] and not check.flipped and check.sentence().endswith("26 of 26 changes.")


@pytest.fixture(scope="module")
def corner_service(tiny_trained_dirs, tmp_path_factory):
    """The tiny DINOv2 classifier's service with its forward pass made corner-sensitive, no detector."""
    directory = tmp_path_factory.mktemp("corner") / "model"
    shutil.copytree(tiny_trained_dirs["dinov2"], directory)
    service = PneumoLensService(ModelSource(str(directory)))
    service.ood_detector = None
    real = service.explainer.predict_pixels

    def predict_pixels(pixels):
        # The processor's normalised input: its top-left corner's brightness, back in [0, 1].
        corner = (pixels[:, :, :2, :2].mean(dim=(1, 2, 3)) * 0.226 + 0.449).clamp(0, 1)
        real(pixels)  # the real pass still runs
        return [{"NORMAL": 1 - p, "PNEUMONIA": p} for p in (1 / (1 + np.exp(-20 * (corner.numpy() - 0.3)))).tolist()]

    service.explainer.predict_pixels = predict_pixels
    return service


def test_the_endpoint_answers_one_row_per_change_the_same_twice_with_the_flip(corner_service, tmp_path):
    image = tmp_path / "grey.png"
    GREY.save(image)
    demo = app.build_demo(corner_service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        client = Client(url, verbose=False)
        answers = [client.predict(handle_file(str(image)), api_name="/robustness") for _ in range(2)]
    finally:
        demo.close()
    (record, figure), (again, _) = [(json.loads(text), figure) for text, figure in answers]
    sentence = record["sentence"]
    assert record == again and Path(figure).name == record["figure"] == "robustness.png"
    assert [row["name"] for row in record["outcomes"]] == [change.name for change in STRESS_SUITE]
    assert record["decision"] == "PNEUMONIA" and "letterbox_75" in record["flipped"]
    assert sentence == record["sentence"] and ("this one flips it" in sentence or "these flip it" in sentence)
    assert Image.open(figure).width >= 600


def test_explain_report_robustness_adds_the_check_to_the_report_and_the_summary(tiny_trained_dirs, real_images,
                                                                                   tmp_path):
    image = real_images["PNEUMONIA"][0]
    explain_cli.main(["report", str(image), "--model_name_or_path", str(tiny_trained_dirs["dinov2"]), "--out", str(tmp_path),
                      "--robustness"])
    (row,) = list(csv.DictReader(open(tmp_path / "summary.csv")))
    report = (tmp_path / row["report"]).read_text(encoding="utf-8")
    assert "<h2>Does this decision hold?</h2>" in report and "data:image/png;base64," in report
    if row["decision"] != "not a chest radiograph":
        held, _, total = row["robustness_held"].partition(" of ")
        assert total == "26" and 0 <= int(held) <= 26
        assert (26 - int(held)) == len(row["robustness_flipped"].split())
    assert json.dumps(row)  # a plain CSV row
