"""High-norm artifact tokens and the share of each attention map they hold."""

import json

import numpy as np
import pytest

import explain as explain_cli
from pneumolens.explain.artifacts import high_norm_tokens, mass_share, token_maps
from pneumolens.explain import Explainer
from pneumolens.modeling import ModelSource, load_model_and_processor


def test_high_norm_tokens_and_the_mass_they_hold():
    norms = np.ones((4, 4))
    norms[0, 3], norms[2, 1] = 9.0, 2.5
    mask = high_norm_tokens(norms, ratio=2.0)
    assert mask.sum() == 2 and mask[0, 3] and mask[2, 1]
    concentrated = np.where(mask, 10.0, 0.1)
    assert mass_share(concentrated, mask) == pytest.approx(20 / (20 + 14 * 0.1))
    assert mass_share(np.ones((4, 4)), mask) == pytest.approx(2 / 16)  # a flat map: the tokens' own share
    assert mass_share(np.zeros((4, 4)), mask) == 0.0


def test_token_maps_are_per_patch_token(tiny_trained_dirs, real_images):
    source = ModelSource(str(tiny_trained_dirs["dinov2"]))
    explainer = Explainer(*load_model_and_processor(source))
    _, pixels, layout = explainer.prepare(real_images["NORMAL"][0])
    maps = token_maps(explainer.model, pixels)
    assert {name: m.shape for name, m in maps.items()} == {name: layout.grid for name in ("norm", "rollout", "attribution")}
    assert (maps["norm"] > 0).all() and maps["rollout"].sum() > 0


def test_command_line_reports_artifacts_and_refuses_convnext(tiny_trained_dirs, real_imagefolder, copy_of, tmp_path):
    model = copy_of(tiny_trained_dirs["dinov2"])
    out = tmp_path / "artifacts.json"
    explain_cli.main(["artifacts", "--dataset_name_or_dir", str(real_imagefolder), "--validation_fraction", "0.3",
                      "--num_images", "3", "--model_name_or_path", str(model), "--out", str(out), "--card"])
    report = json.loads(out.read_text())
    assert report["summary"]["images"] == 3 and len(report["images"]) == 3
    assert all(0.0 <= row["rollout_share"] <= 1.0 and row["max_norm_ratio"] >= 1.0 for row in report["images"])
    assert "## Explanations: artifact tokens" in (model / "README.md").read_text()
    with pytest.raises(Exception, match="no attention maps"):
        explain_cli.main(["artifacts", "--dataset_name_or_dir", str(real_imagefolder), "--validation_fraction", "0.3",
                          "--num_images", "1", "--model_name_or_path", str(tiny_trained_dirs["convnext"])])
