"""Where the explanation methods read a model, derived from its config (the family table in
`modeling.FAMILIES`) and the input size.

Nothing here is hard-coded to 14x14 patches or 224 px: the patch grid comes from the input tensor's
size and the config's `patch_size`, the special tokens from the family and the config (CLS,
distillation, registers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import PneumoLensError
from ..modeling import TRANSFORMER, backbone_blocks, family


@dataclass(frozen=True)
class Anatomy:
    """How to read explanations out of one model for one input size."""

    model_type: str
    kind: str  # modeling.TRANSFORMER or modeling.CONVOLUTIONAL
    special_tokens: int  # CLS, distillation and register tokens, ahead of the patch tokens
    grid: tuple[int, int]  # patch or feature grid (rows, columns) of the Grad-CAM layer
    target_layer: torch.nn.Module

    def reshape_transform(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, special + rows*cols, C) tokens -> (B, C, rows, cols) patch features; conv maps pass through."""
        if self.kind != TRANSFORMER:
            return tokens
        rows, cols = self.grid
        patches = tokens[:, self.special_tokens:, :]
        return patches.reshape(patches.shape[0], rows, cols, patches.shape[2]).permute(0, 3, 1, 2)


def anatomy_of(model: torch.nn.Module, input_size: tuple[int, int]) -> Anatomy:
    """Read the anatomy of a ViT / DeiT / DINOv2 / ConvNeXt classifier for inputs of `input_size`."""
    config = model.config
    facts = family(config)
    last_block = backbone_blocks(model)[-1]
    if facts.kind == TRANSFORMER:
        patch = config.patch_size
        if input_size[0] % patch or input_size[1] % patch:
            raise PneumoLensError(f"Input {input_size} is not a multiple of the patch size {patch}.")
        # The pre-attention norm of the last block: the patch tokens' last spatial representation
        # before attention mixes them for the classifier.
        norm = getattr(last_block, "layernorm_before", None) or getattr(last_block, "norm1")
        distillation = facts.distillation_token and hasattr(model.base_model.embeddings, "distillation_token")
        registers = int(getattr(config, "num_register_tokens", 0) or 0) if facts.register_tokens else 0
        return Anatomy(config.model_type, facts.kind, 1 + int(distillation) + registers,
                       (input_size[0] // patch, input_size[1] // patch), norm)
    # Convolutional: stem (stride 4) and one downsampling (stride 2) per stage after the first.
    stride = 4 * 2 ** (len(config.depths) - 1)
    return Anatomy(config.model_type, facts.kind, 0, (input_size[0] // stride, input_size[1] // stride), last_block)
