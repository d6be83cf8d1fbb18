"""Explanation maps on tiny ViT / DINOv2 / ConvNeXt classifiers fine-tuned for a few steps on real X-rays."""

import gc
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BitImageProcessor

import explain as explain_cli
from pneumolens.errors import PneumoLensError
from pneumolens.explain import METHODS, REGISTRY, Explainer, ExplanationOptions, layout_of, overlay
from pneumolens.explain.attribution import transformer_attribution
from pneumolens.explain.method import Needs
from pneumolens.explain import sanity
from pneumolens.explain.geometry import input_box
from pneumolens.explain.sanity import randomization_check
from pneumolens.modeling import (CONVOLUTIONAL, TRANSFORMER, ModelSource, backbone_blocks, family, load_image_processor,
                                 load_model_and_processor)

MODEL_TYPES = ["vit", "dinov2", "convnext"]
OPTION_SETS = [
    ExplanationOptions(),
    ExplanationOptions(head_fusion="max", discard_ratio=0.6, gradient_rollout=True, smoothgrad_samples=4),
    ExplanationOptions(head_fusion="min", methods=("rollout", "gradcam")),
    ExplanationOptions(gradcam_layer="0.output", cam="gradcam++"),
    ExplanationOptions(gradcam_layer="-2.output", cam="layercam", methods=("gradcam", "saliency")),
]


@pytest.fixture(scope="module")
def explainers(tiny_trained_dirs):
    result = {}
    for model_type, directory in tiny_trained_dirs.items():
        source = ModelSource(str(directory))
        result[model_type] = Explainer(*load_model_and_processor(source))
    return result


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_maps_are_unit_range_arrays_at_the_image_resolution(model_type, explainers, real_images):
    image = Image.open(real_images["PNEUMONIA"][1]).resize((300, 180))  # not square, not the input size
    explanation = explainers[model_type].explain(image)
    kind = family(explainers[model_type].model.config).kind
    assert set(explanation.maps) == {name for name, m in REGISTRY.items() if kind in m.architectures}
    for heatmap in explanation.maps.values():
        assert heatmap.shape == (180, 300) and heatmap.dtype == np.float32
        assert heatmap.min() == 0.0 and heatmap.max() == pytest.approx(1.0)
    assert sum(explanation.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert explanation.explained_class == max(explanation.probabilities, key=explanation.probabilities.get)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("options", OPTION_SETS, ids=["default", "max-discard-gradient-smoothgrad", "min",
                                                     "first-stage-gradcam++", "layercam"])
def test_fused_pass_equals_separate_reference_passes(model_type, options, explainers, real_images):
    explainer = explainers[model_type]
    fused = explainer.explain(real_images["NORMAL"][2], options=options)
    reference = explainer.explain_separately(real_images["NORMAL"][2], options=options)
    assert fused.explained_index == reference.explained_index
    for label, probability in reference.probabilities.items():
        assert fused.probabilities[label] == pytest.approx(probability, abs=1e-6)
    assert set(fused.maps) == set(reference.maps) and fused.maps
    for method in fused.maps:
        np.testing.assert_allclose(fused.input_maps[method], reference.input_maps[method], atol=1e-4)
        np.testing.assert_allclose(fused.maps[method], reference.maps[method], atol=1e-4)


def test_target_class_changes_grad_cam_and_out_of_range_target_is_named(explainers, real_images):
    explainer = explainers["vit"]
    zero = explainer.explain(real_images["PNEUMONIA"][0], explained_index=0)
    one = explainer.explain(real_images["PNEUMONIA"][0], explained_index=1)
    assert zero.explained_class == "NORMAL" and one.explained_class == "PNEUMONIA"
    assert not np.allclose(zero.maps["gradcam"], one.maps["gradcam"])
    with pytest.raises(PneumoLensError, match="The explained class 5 is out of range: the model has 2 classes"):
        explainer.explain(real_images["PNEUMONIA"][0], explained_index=5)


@pytest.mark.parametrize("method", [name for name, m in REGISTRY.items() if CONVOLUTIONAL not in m.architectures])
def test_attention_methods_on_convnext_are_reported_unavailable(method, explainers, real_images):
    explanation = explainers["convnext"].explain(real_images["NORMAL"][0], options=ExplanationOptions(methods=(method,)))
    assert explanation.maps == {}
    assert "convolutional" in explanation.unavailable[method]


@pytest.mark.parametrize("method", METHODS)
def test_every_registered_method_declares_what_it_is_and_needs(method):
    declared = REGISTRY[method]
    assert declared.name == method and declared.title and len(declared.how_to_read) > 40
    assert set(declared.architectures) <= {TRANSFORMER, CONVOLUTIONAL} and declared.architectures
    for options in OPTION_SETS:
        assert isinstance(declared.needs(options), Needs) and declared.needs(options) != Needs()


def test_unknown_method_is_named(explainers, real_images):
    with pytest.raises(PneumoLensError, match="Unknown explanation method 'lime'; choose from rollout"):
        explainers["vit"].explain(real_images["NORMAL"][0], options=ExplanationOptions(methods=("lime",)))


def test_transformer_attribution_adds_gradient_weighted_attention_to_the_residual_path():
    # CLS + 2 patches, one layer, one head. Relevance = I + (A * G)+ (heads averaged).
    attention = torch.tensor([[[[0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]]])
    gradient = torch.tensor([[[[1.0, 2.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]]])
    relevance = transformer_attribution([attention], [gradient], special_tokens=1, grid=(1, 2))
    # Row of CLS over the patches: (A*G)+ = [0.2, 1.0, 0 (negative dropped)]; I adds nothing off-diagonal.
    np.testing.assert_allclose(relevance.numpy(), [[1.0, 0.0]], atol=1e-6)
    two_layers = transformer_attribution([attention, attention], [gradient, gradient], 1, (1, 2))
    # R2 = R1 + W R1 with W = (A*G)+: CLS row over the patches = R1[0, 1:] + W[0] @ R1[:, 1:]
    weighted = (attention * gradient).clamp(min=0)[0, 0].double()
    first = torch.eye(3, dtype=torch.float64) + weighted
    expected = (first + weighted @ first)[0, 1:]
    np.testing.assert_allclose(two_layers.numpy().ravel(), expected.numpy(), atol=1e-6)


def test_the_class_row_carried_down_equals_the_full_product_of_the_layers():
    from pneumolens.explain.rollout import attention_rollout, cls_row_of_product

    torch.manual_seed(0)
    layers = [torch.rand(5, 5, dtype=torch.float64) for _ in range(4)]  # distinct: the order matters
    product = layers[3] @ layers[2] @ layers[1] @ layers[0]
    np.testing.assert_allclose(cls_row_of_product(layers, 1).numpy(), product[0, 1:].numpy(), rtol=1e-12)
    # Rollout as written in Abnar & Zuidema: result <- (A_l + I)/2 normalised, @ result, layer by layer.
    attentions = [torch.softmax(torch.randn(1, 2, 5, 5), dim=-1) for _ in range(3)]
    expected = torch.eye(5, dtype=torch.float64)
    for attention in attentions:
        fused = (attention[0].double().mean(dim=0) + torch.eye(5, dtype=torch.float64)) / 2
        expected = (fused / fused.sum(dim=-1, keepdim=True)) @ expected
    np.testing.assert_allclose(attention_rollout(attentions, 1, (2, 2)).numpy().ravel(), expected[0, 1:].numpy(),
                               rtol=1e-6)


def test_transformer_attribution_is_class_specific(explainers, real_images):
    explainer = explainers["dinov2"]
    options = ExplanationOptions(methods=("attribution",))
    zero = explainer.explain(real_images["PNEUMONIA"][0], explained_index=0, options=options)
    one = explainer.explain(real_images["PNEUMONIA"][0], explained_index=1, options=options)
    assert not np.allclose(zero.input_maps["attribution"], one.input_maps["attribution"], atol=1e-3)


def test_grad_cam_layer_and_grid_follow_config_and_input_size(explainers):
    model = explainers["dinov2"].model
    layout = layout_of(model, (48, 32))
    assert layout.grid == (48 // model.config.patch_size, 32 // model.config.patch_size)
    tokens = torch.randn(2, layout.special_tokens + 6 * 4, model.config.hidden_size)
    assert layout.reshape_transform(tokens).shape == (2, model.config.hidden_size, 6, 4)
    with pytest.raises(PneumoLensError, match="not a multiple of the patch size"):
        layout_of(model, (30, 32))


def test_grad_cam_layer_specs_name_the_block_part_and_its_grid(explainers):
    vit, dinov2, convnext = (explainers[kind].model for kind in ("vit", "dinov2", "convnext"))
    vit_blocks, dinov2_blocks = backbone_blocks(vit), backbone_blocks(dinov2)
    layout = layout_of(vit, (32, 32))
    assert layout.cam_layer("0.norm1").module is vit_blocks[0].layernorm_before
    assert layout.cam_layer("-1.norm2").module is vit_blocks[-1].layernorm_after
    assert layout.cam_layer().module is vit_blocks[-1].layernorm_before  # the default without a choice
    assert layout_of(dinov2, (32, 32)).cam_layer("1.norm2").module is dinov2_blocks[1].norm2
    assert layout_of(dinov2, (32, 32)).cam_layer("0.output").module is dinov2_blocks[0]
    assert layout.cam_layer("1.output").grid == layout.grid and layout.layer_title("1.norm2") == "block 2 of 2, norm2"
    stages = layout_of(convnext, (32, 32))
    assert stages.cam_layer("0.output").grid == (8, 8) and stages.cam_layer("1.output").grid == (4, 4)
    assert stages.cam_layer().module is backbone_blocks(convnext)[-1] and stages.layer_title() == "stage 2 of 2"
    for spec, message in (("2.norm1", "BLOCK in -2..1"), ("norm1", "not BLOCK.PART"), ("1.attention", "part 'attention'")):
        with pytest.raises(PneumoLensError, match=message):
            layout.cam_layer(spec)
    with pytest.raises(PneumoLensError, match="part 'norm1' does not exist on convnext"):
        stages.cam_layer("0.norm1")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_each_map_says_its_granularity_and_settings(model_type, explainers, real_images):
    explainer = explainers[model_type]
    options = ExplanationOptions(gradcam_layer="0.output", cam="hirescam", head_fusion="max", discard_ratio=0.5)
    explanation = explainer.explain(real_images["NORMAL"][1], options=options)
    layout = layout_of(explainer.model, (32, 32))
    assert explanation.granularity["saliency"] is None  # a map per pixel
    assert explanation.granularity["gradcam"] == layout.cam_layer("0.output").grid
    assert explanation.settings["gradcam"] == f"HiResCAM at {layout.layer_title('0.output')}"
    if layout.kind == TRANSFORMER:
        assert explanation.granularity["rollout"] == explanation.granularity["attribution"] == layout.grid
        assert explanation.settings["rollout"] == "max over heads, weakest 50% discarded"
    # A different layer makes a different map (the setting is used, not just recorded).
    other = explainer.explain(real_images["NORMAL"][1], options=ExplanationOptions(gradcam_layer="-1.output"))
    assert not np.allclose(other.input_maps["gradcam"], explanation.input_maps["gradcam"], atol=1e-3)


def test_non_eager_model_is_switched_to_eager(tiny_trained_dirs):
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(tiny_trained_dirs["vit"], attn_implementation="sdpa")
    explainer = Explainer(model, load_image_processor(ModelSource(str(tiny_trained_dirs["vit"]))))
    assert explainer.model.config._attn_implementation == "eager"
    assert "rollout" in explainer.explain(Image.new("L", (40, 40), 90)).maps


def _png16(size):
    ramp = np.linspace(0, 65535, size[0] * size[1]).reshape(size[1], size[0]).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("image, size", [
    (Image.new("L", (1, 1), 128), (1, 1)),
    (Image.new("L", (10, 3000), 128), (10, 3000)),
    (Image.new("RGBA", (64, 48), (40, 80, 120, 200)), (64, 48)),
    (_png16((70, 50)), (70, 50)),
])
def test_odd_inputs_give_maps_of_their_own_size(image, size, explainers):
    explanation = explainers["dinov2"].explain(image)
    for heatmap in explanation.maps.values():
        assert heatmap.shape == (size[1], size[0])
        assert np.isfinite(heatmap).all() and 0.0 <= heatmap.min() and heatmap.max() <= 1.0


def test_centre_crop_geometry_leaves_unseen_borders_empty():
    processor = BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}, do_center_crop=True)
    left, top, right, bottom = input_box(processor, (200, 100))
    # short edge 100 -> 36: scale 0.36; the 32x32 crop covers 88.9 x 88.9 original pixels, centred.
    assert (right - left, bottom - top) == pytest.approx((32 / 0.36, 32 / 0.36))
    assert (left + right) / 2 == pytest.approx(100) and (top + bottom) / 2 == pytest.approx(50)
    square = BitImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False)
    assert input_box(square, (200, 100)) == (0.0, 0.0, 200.0, 100.0)


@pytest.mark.parametrize("crop", [False, True])
def test_maps_at_display_size_match_the_full_resolution_maps_scaled_down(crop, explainers, real_images):
    explainer = explainers["dinov2"]
    if crop:  # the unseen border must stay empty at display size too
        explainer = Explainer(explainer.model, BitImageProcessor(
            size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}, do_center_crop=True))
    image = Image.open(real_images["NORMAL"][0]).convert("L").resize((600, 400))
    explanation = explainer.explain(image)
    displayed = explanation.maps_at((150, 100))
    assert "maps" not in vars(explanation)  # the full-resolution maps are made only when asked for
    for method, heatmap in displayed.items():
        full = np.asarray(Image.fromarray(explanation.maps[method]).resize((150, 100), Image.BILINEAR))
        assert heatmap.shape == (100, 150)
        # The crop's edges round to whole pixels at either size, so they may differ by a display pixel.
        assert np.abs(heatmap - full).mean() < 0.02 and np.corrcoef(heatmap.ravel(), full.ravel())[0, 1] > 0.97
        if crop:
            assert heatmap[:, :10].max() == 0 and full[:, :10].max() < 0.05


@pytest.mark.slow
def test_hooks_are_released_and_memory_stays_flat(explainers):
    explainer = explainers["vit"]
    image = Image.new("L", (40, 40), 100)
    layer = layout_of(explainer.model, (32, 32)).cam_layer().module
    explainer.explain(image)

    def live_tensors():
        gc.collect()
        return sum(1 for obj in gc.get_objects() if torch.is_tensor(obj))

    before = live_tensors()
    for _ in range(300):  # a tensor kept by one call in fifty shows
        explainer.explain(image)
    assert not layer._forward_hooks and not layer._backward_hooks
    assert live_tensors() <= before + 5


def test_randomisation_check_passes_trained_maps_and_fails_weight_independent_maps(
        tiny_trained_dirs, real_images, monkeypatch):
    source = ModelSource(str(tiny_trained_dirs["dinov2"]))
    model, processor = load_model_and_processor(source)
    images = real_images["NORMAL"][:3] + real_images["PNEUMONIA"][:3]
    report = randomization_check(model, processor, images)
    assert set(report) == set(METHODS)
    assert report["saliency"]["passed"] and report["saliency"]["spearman_mean"] < 0.5
    assert len(report["saliency"]["spearman_per_image"]) == 6

    # A "randomised" model that is really the same model: every map is unchanged, every method fails.
    monkeypatch.setattr(sanity, "randomized_copy", lambda model, seed=0: model)
    same = randomization_check(model, processor, images[:2])
    assert all(not result["passed"] and result["spearman_mean"] > 0.99 for result in same.values())


def test_overlay_blends_and_checks_its_inputs():
    image = Image.new("RGB", (4, 3), (100, 100, 100))
    assert np.array_equal(np.asarray(overlay(image, np.ones((3, 4)), opacity=0.0)), np.asarray(image))
    assert not np.array_equal(np.asarray(overlay(image, np.ones((3, 4)), opacity=0.5)), np.asarray(image))
    with pytest.raises(ValueError, match="does not match"):
        overlay(image, np.ones((4, 3)))


def scale_colours(drawn: Image.Image, height: int) -> np.ndarray:
    """The saturated pixels of the colour-scale bar drawn below an overlay of `height` rows, left to right."""
    strip = np.asarray(drawn.convert("RGB"))[height:].astype(int)
    saturated = strip.max(axis=2) - strip.min(axis=2) > 40
    row = saturated.sum(axis=1).argmax()
    return strip[row][saturated[row]]


def test_the_even_overlay_keeps_the_uniform_blend_and_its_full_scale(tiny_trained_dirs, real_images, tmp_path):
    image = real_images["NORMAL"][0]
    explain_cli.main([str(image), "--model_name_or_path", str(tiny_trained_dirs["dinov2"]), "--methods", "gradcam",
                      "--overlay", "even", "--out", str(tmp_path)])
    coloured = scale_colours(Image.open(tmp_path / f"{image.stem}_gradcam.png"), Image.open(image).height)
    assert len(coloured) > Image.open(image).width // 4
    assert coloured[0][2] > coloured[0][1] and coloured[-1][1] > coloured[-1][2]  # viridis: purple to yellow


def test_command_line_writes_overlays_maps_figure_and_reports(tiny_trained_dirs, real_images, tmp_path):
    model = str(tiny_trained_dirs["dinov2"])
    image = real_images["PNEUMONIA"][0]
    explain_cli.main([str(image), "--model_name_or_path", model, "--out", str(tmp_path / "maps")])
    stem = image.stem
    width, height = Image.open(image).size
    for method in METHODS:
        overlay_image = Image.open(tmp_path / "maps" / f"{stem}_{method}.png").convert("RGB")
        # The overlay at the image's size, its colour scale below it: the colour fades in from the film's
        # grey at the low end to viridis's yellow at the top, as it does over the film.
        assert overlay_image.width == width and overlay_image.height > height
        coloured = scale_colours(overlay_image, height)
        assert len(coloured) > width // 8 and coloured[-1][1] > coloured[-1][2]
        assert not (coloured[0][2] > coloured[0][1] + 20)  # no purple: the low end is clear
        assert np.load(tmp_path / "maps" / f"{stem}_{method}.npy").shape == (height, width)
    assert Image.open(tmp_path / "maps" / f"{stem}_explanation.png").width > 800
    summary = json.loads((tmp_path / "maps" / f"{stem}_explanation.json").read_text())
    assert summary["decision"] in ("NORMAL", "PNEUMONIA")

    card_model = tmp_path / "model"
    shutil.copytree(model, card_model)
    explain_cli.main(["sanity", str(image), "--model_name_or_path", str(card_model), "--out", str(tmp_path / "sanity.json"), "--card"])
    assert set(json.loads((tmp_path / "sanity.json").read_text())) == set(METHODS)
    card = (card_model / "README.md").read_text()
    assert card.index("## Explanations: sanity check") < card.index("## How to use")
    assert "python explain.py sanity" in card and "| saliency |" in card
    explain_cli.main(["sanity", str(image), "--model_name_or_path", str(card_model), "--card"])  # rewrites, never duplicates
    assert (card_model / "README.md").read_text().count("## Explanations: sanity check") == 1


def test_report_command_writes_one_report_per_image_and_a_summary(tiny_trained_dirs, real_images, tmp_path):
    import csv

    folder = tmp_path / "batch"
    folder.mkdir()
    for path in real_images["NORMAL"][:2] + real_images["PNEUMONIA"][:1]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"not an image")  # reported in the summary, the others go on
    explain_cli.main(["report", str(folder), "--model_name_or_path", str(tiny_trained_dirs["dinov2"]), "--out", str(tmp_path / "out")])
    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert len(rows) == 4
    broken = next(row for row in rows if row["image"].endswith("broken.png"))
    assert "not an image" in broken["error"] and not broken["report"]
    for row in rows:
        if row is broken:
            continue
        report = (tmp_path / "out" / row["report"]).read_text(encoding="utf-8")
        assert f"Decision: {row['decision']}" in report and Path(row["image"]).name in report
        assert float(row["p_NORMAL"]) + float(row["p_PNEUMONIA"]) == pytest.approx(1.0, abs=1e-5)
        assert report.count("data:image/jpeg;base64,") == 1 + len(METHODS) and "Not a medical device" in report
    with pytest.raises(PneumoLensError, match="No such file or folder"):
        explain_cli.main(["report", str(tmp_path / "missing"), "--model_name_or_path", str(tiny_trained_dirs["dinov2"])])
