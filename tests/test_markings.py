"""How much of each map falls on burned-in text."""

import json

import numpy as np
import pytest
from PIL import Image
from transformers import BitImageProcessor

import explain as explain_cli
from pneumolens import acquisition as acq
from pneumolens.explain.markings import marking_mask, summarise_markings


def test_the_mask_is_the_marking_as_the_model_sees_it():
    original = Image.new("RGB", (400, 200), (90, 90, 90))
    marked = acq.burn_text(original, "R", (0.9, 0.05), 0.2, 235, boxed=True)  # top right corner
    square = BitImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False)
    mask = marking_mask(square, original, marked)
    assert mask.shape == (32, 32)
    assert mask[:8, 24:].any() and not mask[12:, :].any() and not mask[:, :16].any()
    # A processor that crops the centre square never shows the corner: nothing to measure there.
    crop = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=True)
    assert not marking_mask(crop, original, marked).any()
    assert not marking_mask(square, original, original).any()


def test_lift_says_how_much_denser_a_map_is_on_the_marking():
    rows = [{"image": 0, "marking": "text_laterality", "method": "m", "area": 0.1, "share": 0.5, "lift": 5.0},
            {"image": 1, "marking": "text_laterality", "method": "m", "area": 0.1, "share": 0.1, "lift": 1.0}]
    summary = summarise_markings(rows)["text_laterality"]["m"]
    assert summary["lift"] == pytest.approx(3.0) and summary["share"] == pytest.approx(0.3)
    assert summary["share_of_images_with_lift_over_2"] == pytest.approx(0.5) and summary["images"] == 2


def test_command_line_measures_every_method_on_every_marking(tiny_trained_dirs, real_imagefolder, copy_of, tmp_path):
    model = copy_of(tiny_trained_dirs["vit"])
    out = tmp_path / "markings.json"
    explain_cli.main(["markings", "--dataset_name_or_dir", str(real_imagefolder), "--validation_fraction", "0.3",
                      "--num_images", "2", "--markings", "text_laterality", "text_timestamp",
                      "--model_name_or_path", str(model), "--out", str(out), "--card"])
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"text_laterality", "text_timestamp"}
    methods = {row["method"] for row in report["rows"]}
    assert methods == {"rollout", "attribution", "saliency", "gradcam"}
    for row in report["rows"]:
        assert 0.0 < row["area"] < 0.5 and 0.0 <= row["share"] <= 1.0
        assert row["lift"] == pytest.approx(row["share"] / row["area"])
    assert "## Explanations: burned-in text" in (model / "README.md").read_text()
    assert np.isfinite([row["lift"] for row in report["rows"]]).all()
