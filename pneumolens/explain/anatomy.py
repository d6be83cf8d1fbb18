"""Where each explanation method reads a model, derived from its config and the input size.

Nothing here is hard-coded to 14x14 patches or 224 px: the patch grid comes from the input tensor's
size and the config's `patch_size`, the special tokens from the config (CLS, registers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import PneumoLensError
from ..modeling import VIT_FAMILY, backbone_blocks

METHODS = ("rollout", "saliency", "gradcam")


class MethodUnavailable(PneumoLensError):
    """The model's architecture cannot give this explanation (e.g. attention rollout on ConvNeXt)."""


@dataclass(frozen=True)
class Anatomy:
    """How to read explanations out of one model for one input size."""

    model_type: str
    is_vit: bool
    special_tokens: int  # CLS plus register tokens, ahead of the patch tokens
    grid: tuple[int, int]  # patch or feature grid (rows, columns) of the Grad-CAM layer
    target_layer: torch.nn.Module

    def reshape_transform(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, special + rows*cols, C) tokens -> (B, C, rows, cols) patch features; conv maps pass through."""
        if not self.is_vit:
            return tokens
        rows, cols = self.grid
        patches = tokens[:, self.special_tokens:, :]
        return patches.reshape(patches.shape[0], rows, cols, patches.shape[2]).permute(0, 3, 1, 2)

    def check(self, method: str) -> None:
        if method not in METHODS:
            raise PneumoLensError(f"Unknown explanation method '{method}'; choose from {', '.join(METHODS)}.")
        if method == "rollout" and not self.is_vit:
            raise MethodUnavailable(
                f"Attention rollout needs a vision transformer; {self.model_type} is convolutional and "
                "has no attention to roll out."
            )


def anatomy_of(model: torch.nn.Module, input_size: tuple[int, int]) -> Anatomy:
    """Read the anatomy of a ViT / DeiT / DINOv2 / ConvNeXt classifier for inputs of `input_size`."""
    config = model.config
    backbone = model.base_model
    if config.model_type in VIT_FAMILY:
        patch = config.patch_size
        if input_size[0] % patch or input_size[1] % patch:
            raise PneumoLensError(f"Input {input_size} is not a multiple of the patch size {patch}.")
        last_block = backbone_blocks(model)[-1]
        # The pre-attention norm of the last block: the patch tokens' last spatial representation
        # before attention mixes them for the classifier.
        norm = getattr(last_block, "layernorm_before", None) or getattr(last_block, "norm1")
        distillation = 1 if config.model_type == "deit" and hasattr(backbone.embeddings, "distillation_token") else 0
        special = 1 + distillation + int(getattr(config, "num_register_tokens", 0) or 0)
        return Anatomy(config.model_type, True, special, (input_size[0] // patch, input_size[1] // patch), norm)
    if config.model_type in ("convnext", "convnextv2"):
        # Stem (stride 4) and one downsampling (stride 2) per stage after the first.
        stride = 4 * 2 ** (len(config.depths) - 1)
        grid = (input_size[0] // stride, input_size[1] // stride)
        return Anatomy(config.model_type, False, 0, grid, backbone_blocks(model)[-1])
    raise PneumoLensError(f"No explanation support for model type '{config.model_type}'.")
