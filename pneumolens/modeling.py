"""Model loading from a Hub id or a local directory, and what the model's config says about labels.

Weights are read as safetensors only and remote code is never trusted. Attention runs "eager" for the
ViT family, because attention rollout needs the attention probabilities that SDPA does not return.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, PretrainedConfig

from .errors import PneumoLensError

logger = logging.getLogger(__name__)

# A Hub repository with only pickled (.bin) weights would make transformers ask a conversion service
# for safetensors, sending the user's token along; we load safetensors or nothing.
os.environ.setdefault("DISABLE_SAFETENSORS_CONVERSION", "1")

# Keys PneumoLens adds to a model's config.json; they travel with the model to the Hub.
POSITIVE_LABEL_KEY = "positive_label"

# The model bundled in the repository, served when MODEL_ID is not set.
BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "models" / "pneumolens-dinov2-small"

TRANSFORMER, CONVOLUTIONAL = "transformer", "convolutional"


@dataclass(frozen=True)
class Family:
    """What PneumoLens needs to know of an architecture, in one table (`FAMILIES`)."""

    kind: str  # TRANSFORMER (patch tokens, attention maps) or CONVOLUTIONAL (feature maps)
    distillation_token: bool = False  # DeiT: a second special token after CLS
    register_tokens: bool = False  # DINOv2 with registers: `num_register_tokens` more


FAMILIES = {
    "vit": Family(TRANSFORMER),
    "deit": Family(TRANSFORMER, distillation_token=True),
    "dinov2": Family(TRANSFORMER),
    "dinov2_with_registers": Family(TRANSFORMER, register_tokens=True),
    "convnext": Family(CONVOLUTIONAL),
    "convnextv2": Family(CONVOLUTIONAL),
}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)


def family(config: PretrainedConfig) -> Family:
    try:
        return FAMILIES[config.model_type]
    except KeyError:
        raise PneumoLensError(f"Model type '{config.model_type}' is not supported; use one of "
                              f"{', '.join(SUPPORTED_MODEL_TYPES)}.") from None


def is_transformer(config: PretrainedConfig) -> bool:
    """Whether the model has attention maps (and so an attention kernel to choose)."""
    return family(config).kind == TRANSFORMER


@dataclass
class ModelSource:
    """Where a model comes from: a Hub id or a local directory, an optional revision, a token."""

    name_or_path: str
    revision: str | None = None
    token: str | None = None

    def __post_init__(self):
        if self.token is None:
            self.token = os.environ.get("HF_TOKEN") or None

    def kwargs(self) -> dict:
        return {"revision": self.revision, "token": self.token}


def model_file(source: ModelSource, name: str) -> Path | None:
    """A file saved with the model (its card, OOD detector, faithfulness results): from the local
    directory, or from the Hub at the same revision as the weights; None where it has none (or offline)."""
    local = Path(source.name_or_path) / name
    if local.is_file():
        return local
    if Path(source.name_or_path).exists():
        return None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source.name_or_path, name, **source.kwargs()))
    except Exception:  # not in the repository, offline, ...: the caller goes on without it
        logger.info("No %s for %s", name, source.name_or_path)
        return None


def default_model_source() -> ModelSource:
    """The command line's default model: MODEL_ID (a Hub id or a directory), MODEL_REVISION and HF_TOKEN
    from the environment, as the server reads them (`serving.settings`), else the bundled model."""
    return model_source_of(os.environ.get("MODEL_ID"), os.environ.get("MODEL_REVISION"))


def model_source_of(name_or_path: str | None, revision: str | None = None) -> ModelSource:
    """The model `name_or_path` names (a Hub id or a directory) at `revision`; the bundled model where None."""
    return ModelSource(name_or_path or str(BUNDLED_MODEL), revision or None)


def load_config(source: ModelSource, **overrides) -> PretrainedConfig:
    """The model's config with `overrides` set; unknown keys (ours) are kept and saved with it."""
    config = _from_pretrained(AutoConfig, source)
    for key, value in overrides.items():
        setattr(config, key, value)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise PneumoLensError(
            f"Model type '{config.model_type}' of {source.name_or_path} is not supported; "
            f"use one of {', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    return config


def load_model(source: ModelSource, attention: str = "eager", **config_overrides) -> torch.nn.Module:
    """An image classifier in eval mode; `config_overrides` (e.g. a new head's labels) go to the config.

    `attention` is the ViT family's attention kernel: "eager" (the default) returns the attention
    probabilities that rollout reads; "sdpa" is faster where nothing reads them (training, scoring).
    """
    config = load_config(source, **config_overrides)
    # float32 whatever the storage dtype: a float16 checkpoint computes in float32 on a CPU.
    kwargs = {"config": config, "use_safetensors": True, "dtype": torch.float32,
              "ignore_mismatched_sizes": "num_labels" in config_overrides}
    if is_transformer(config):
        kwargs["attn_implementation"] = attention
    model = _from_pretrained(AutoModelForImageClassification, source, **kwargs)
    return model.eval()


def save_model(model: torch.nn.Module, directory: str | Path, storage_dtype: torch.dtype = torch.float32) -> None:
    """Save `model` with its weights in `storage_dtype` (float16 halves the download) and a config that
    loads them in float32: `from_pretrained` and `pipeline` take the config's dtype by default, so a
    plain Transformers user computes as the app does, in the float32 that the decision fold was set in.
    `model` is left in `storage_dtype`."""
    model.to(storage_dtype).save_pretrained(directory)
    model.config.dtype = torch.float32
    model.config.save_pretrained(directory)


def load_image_processor(source: ModelSource):
    return _from_pretrained(AutoImageProcessor, source)


def load_model_and_processor(source: ModelSource, attention: str = "eager", **config_overrides):
    """(model, image processor) of one source: what every command and the app start from."""
    return load_model(source, attention, **config_overrides), load_image_processor(source)


def stored_dtype(model_dir: str | Path) -> torch.dtype:
    """The dtype a saved model's weights are stored in (its classifier's, which every family has)."""
    from safetensors import safe_open

    with safe_open(str(Path(model_dir) / "model.safetensors"), "pt") as handle:
        return handle.get_tensor("classifier.bias").dtype


def _from_pretrained(auto_class, source: ModelSource, **kwargs):
    name = source.name_or_path
    if name.startswith((".", "/", "~")) and not Path(name).expanduser().is_dir():
        raise PneumoLensError(f"Model directory not found: {name}")
    try:
        return auto_class.from_pretrained(
            source.name_or_path, trust_remote_code=False, **source.kwargs(), **kwargs
        )
    except (OSError, ValueError) as err:
        offline = " (HF_HUB_OFFLINE is set: only local directories and cached models load)" \
            if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") else ""
        raise PneumoLensError(
            f"Could not load {auto_class.__name__[4:]} from '{source.name_or_path}'{offline}: "
            f"{str(err).splitlines()[0]}"
        ) from err


def positive_index(config: PretrainedConfig) -> int:
    """Index of the class whose probability is the score (the disease), from the config."""
    positive_label = getattr(config, POSITIVE_LABEL_KEY, None)
    for index, label in config.id2label.items():
        if label == positive_label:
            return int(index)
    if config.num_labels == 2:
        # Without the key, the class-folder order puts the finding second (NORMAL < PNEUMONIA).
        return 1
    raise PneumoLensError(f"The model's config has no '{POSITIVE_LABEL_KEY}' among {config.id2label}.")


def negative_label(config: PretrainedConfig) -> str:
    """What a decision below the threshold is called: the other class of a binary model."""
    index = positive_index(config)
    return config.id2label[1 - index] if config.num_labels == 2 else f"not {config.id2label[index]}"


def freeze_early_layers(model: torch.nn.Module, num_layers: int) -> int:
    """Freeze the embeddings and the first `num_layers` blocks (ViT family) or stages (ConvNeXt).

    Returns the number of trainable parameters left. Early layers hold generic edge and texture
    features; freezing them halves the cost of a training step on a CPU.
    """
    if num_layers <= 0:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    blocks = backbone_blocks(model)
    if num_layers > len(blocks):
        raise PneumoLensError(f"Cannot freeze {num_layers} layers: the model has {len(blocks)}.")
    for module in (model.base_model.embeddings, *blocks[:num_layers]):
        module.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def backbone_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks (ViT family) or stages (ConvNeXt) of a classifier, input side first.

    Transformers 5 keeps them under different names: ViT and DeiT `layers`, DINOv2 `encoder.layer`,
    ConvNeXt `encoder.stages`.
    """
    backbone = model.base_model
    for path in ("layers", "encoder.layer", "encoder.layers", "encoder.stages"):
        module = backbone
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise PneumoLensError(f"Cannot find the blocks of {type(backbone).__name__}.")


@contextmanager
def attention_kernel(model, implementation: str):
    """Run a transformer with another attention kernel for a while: passes that read no attention maps
    (predictions, faithfulness curves) are faster with SDPA than with the eager kernel the explainer
    needs (95 vs 123 ms per image, DINOv2-S on 2 CPU cores, measured). Not thread-safe: hold the lock
    that keeps other passes off the model."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if config is None or not is_transformer(config) or before == implementation:
        yield
        return
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(before)
