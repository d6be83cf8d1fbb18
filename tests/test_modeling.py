"""Model loading rules: safetensors only, no remote code, clear errors, labels and threshold from the config."""

import json

import pytest
import torch
from PIL import Image
from transformers import DeiTConfig, DeiTForImageClassification, ViTImageProcessor

from pneumolens.errors import PneumoLensError
from pneumolens.explain import Explainer, layout_of
from pneumolens.decision import decide, operating_threshold
from pneumolens.modeling import ModelSource, attention_kernel, load_config, load_model, positive_index


def test_pickle_weights_are_refused(tmp_path, tiny_backbone_dirs):
    model = load_model(ModelSource(str(tiny_backbone_dirs["vit"])), num_labels=2)
    model.config.save_pretrained(tmp_path / "pickled")
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(PneumoLensError, match="Could not load"):
        load_model(ModelSource(str(tmp_path / "pickled")))


def test_remote_code_models_are_refused(tmp_path, tiny_backbone_dirs):
    config = json.loads((tiny_backbone_dirs["vit"] / "config.json").read_text())
    config.update(model_type="custom-xray", auto_map={"AutoConfig": "modeling.CustomConfig"})
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "modeling.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(PneumoLensError):
        load_config(ModelSource(str(tmp_path)))


def test_missing_directory_and_unknown_hub_id_offline(tmp_path):
    with pytest.raises(PneumoLensError, match="Model directory not found"):
        load_model(ModelSource(str(tmp_path / "nope")))
    with pytest.raises(PneumoLensError, match="'nobody/nothing-here'.*HF_HUB_OFFLINE"):
        load_model(ModelSource("nobody/nothing-here"))


def test_labels_threshold_and_decision_come_from_the_config(tiny_backbone_dirs):
    model = load_model(ModelSource(str(tiny_backbone_dirs["vit"])), num_labels=2,
                       id2label={0: "PNEUMONIA", 1: "NORMAL"}, label2id={"PNEUMONIA": 0, "NORMAL": 1},
                       positive_label="PNEUMONIA", operating_threshold=0.8)
    assert positive_index(model.config) == 0 and operating_threshold(model.config) == 0.8
    assert decide(model.config, 0.79) == "NORMAL" and decide(model.config, 0.8) == "PNEUMONIA"


def test_deit_distillation_token_is_skipped_and_fused_equals_reference(tmp_path):
    torch.manual_seed(0)
    config = DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, id2label={0: "NORMAL", 1: "PNEUMONIA"},
                        label2id={"NORMAL": 0, "PNEUMONIA": 1})
    DeiTForImageClassification(config).save_pretrained(tmp_path)
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    model = load_model(ModelSource(str(tmp_path)))
    layout = layout_of(model, (32, 32))
    assert layout.special_tokens == 2 and layout.grid == (4, 4)
    explainer = Explainer(model, processor)
    image = Image.new("L", (50, 40), 120)
    fused, reference = explainer.explain(image), explainer.explain_separately(image)
    for method in ("rollout", "saliency", "gradcam"):
        assert fused.maps[method].shape == (40, 50)
        assert abs(fused.maps[method] - reference.maps[method]).max() < 1e-4


def test_safetensors_auto_conversion_is_switched_off():
    import os

    import pneumolens.modeling  # noqa: F401

    assert os.environ["DISABLE_SAFETENSORS_CONVERSION"] == "1"


def test_the_card_is_fetched_at_the_weights_revision(monkeypatch, tiny_trained_dirs):
    import huggingface_hub

    from pneumolens.service import PneumoLensService

    service = PneumoLensService(ModelSource(str(tiny_trained_dirs["vit"])))
    requests = []

    def fake_download(repo_id, filename, **kwargs):
        requests.append((repo_id, filename, kwargs.get("revision")))
        raise OSError("offline")

    # model_file imports the function when it is called, so the module attribute is what it finds
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    service.source = ModelSource("someone/pneumolens", revision="0123abc")
    assert service.card() is None
    assert requests == [("someone/pneumolens", "README.md", "0123abc")]


def test_predictions_run_sdpa_and_give_the_model_back_to_the_explainer_in_eager(tiny_trained_dirs, real_images):
    from pneumolens.service import PneumoLensService

    service = PneumoLensService(ModelSource(str(tiny_trained_dirs["dinov2"])))
    seen = []
    hook = service.model.register_forward_pre_hook(lambda module, args: seen.append(module.config._attn_implementation))
    try:
        predicted = service.predict(str(real_images["NORMAL"][0]))["probabilities"]
        explained = service.analyse(str(real_images["NORMAL"][0]))
    finally:
        hook.remove()
    assert seen == ["sdpa", "eager"]
    assert predicted == pytest.approx(explained.explanation.probabilities, abs=1e-5)
    assert "rollout" in explained.explanation.input_maps  # the attention maps are there again
    with pytest.raises(RuntimeError), attention_kernel(service.model, "sdpa"):
        raise RuntimeError("a failing pass")
    assert service.model.config._attn_implementation == "eager"
