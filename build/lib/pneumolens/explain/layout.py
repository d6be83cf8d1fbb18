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
from ..modeling import CONVOLUTIONAL, TRANSFORMER, backbone_blocks, family


# Where in a block Grad-CAM may read, with the attribute names the families use for it: the
# pre-attention norm, the pre-MLP norm, or the block's output (its residual stream).
LAYER_PARTS = {
    TRANSFORMER: {"norm1": ("norm1", "layernorm_before"), "norm2": ("norm2", "layernorm_after"), "output": ()},
    CONVOLUTIONAL: {"output": ()},
}
# Without a measured choice (`explain.py select`): the last block's pre-attention norm (the patch tokens'
# last spatial representation before attention mixes them for the classifier), the last stage.
DEFAULT_LAYER = {TRANSFORMER: "-1.norm1", CONVOLUTIONAL: "-1.output"}


@dataclass(frozen=True)
class CamLayer:
    module: torch.nn.Module
    grid: tuple[int, int]  # (rows, columns) of its feature map


def parse_layer(spec: str, count: int) -> tuple[int, str]:
    block, _, part = str(spec).partition(".")
    try:
        index = int(block)
    except ValueError:
        index = None
    if index is None or not part or not -count <= index < count:
        raise PneumoLensError(f"Grad-CAM layer '{spec}' is not BLOCK.PART with BLOCK in {-count}..{count - 1} "
                              "(e.g. '-2.norm2').")
    return index % count, part


@dataclass(frozen=True)
class ModelLayout:
    """How to read explanations out of one model for one input size."""

    model_type: str
    kind: str  # modeling.TRANSFORMER or modeling.CONVOLUTIONAL
    special_tokens: int  # CLS, distillation and register tokens, ahead of the patch tokens
    grid: tuple[int, int]  # patch grid (rows, columns); for ConvNeXt the last stage's feature grid
    blocks: torch.nn.ModuleList  # transformer blocks or ConvNeXt stages, input side first
    input_size: tuple[int, int]

    def cam_layer(self, spec: str | None = None) -> CamLayer:
        """The module Grad-CAM reads for a "BLOCK.PART" spec (e.g. "-2.norm2", "3.output"; None: the
        family's default) and its grid."""
        block, part = parse_layer(spec or DEFAULT_LAYER[self.kind], len(self.blocks))
        parts = LAYER_PARTS[self.kind]
        if part not in parts:
            raise PneumoLensError(f"Grad-CAM layer part '{part}' does not exist on {self.model_type}; "
                                  f"choose from {', '.join(parts)}.")
        module = self.blocks[block]
        if part != "output":
            module = next(getattr(module, name) for name in parts[part] if hasattr(module, name))
        if self.kind == TRANSFORMER:
            return CamLayer(module, self.grid)
        stride = 4 * 2 ** block  # the stem has stride 4, every stage after the first halves the grid
        return CamLayer(module, (self.input_size[0] // stride, self.input_size[1] // stride))

    def layer_title(self, spec: str | None = None) -> str:
        """"block 11 of 12, norm2" for a transformer layer spec, "stage 4 of 4" for a ConvNeXt stage."""
        block, part = parse_layer(spec or DEFAULT_LAYER[self.kind], len(self.blocks))
        if self.kind == TRANSFORMER:
            return f"block {block + 1} of {len(self.blocks)}, {part}"
        return f"stage {block + 1} of {len(self.blocks)}"

    def reshape_transform(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, special + rows*cols, C) tokens -> (B, C, rows, cols) patch features; conv maps pass through."""
        if self.kind != TRANSFORMER:
            return tokens
        rows, cols = self.grid
        patches = tokens[:, self.special_tokens:, :]
        return patches.reshape(patches.shape[0], rows, cols, patches.shape[2]).permute(0, 3, 1, 2)


def layout_of(model: torch.nn.Module, input_size: tuple[int, int]) -> ModelLayout:
    """Read the layout of a ViT / DeiT / DINOv2 / ConvNeXt classifier for inputs of `input_size`."""
    config = model.config
    facts = family(config)
    blocks = backbone_blocks(model)
    if facts.kind == TRANSFORMER:
        patch = config.patch_size
        if input_size[0] % patch or input_size[1] % patch:
            raise PneumoLensError(f"Input {input_size} is not a multiple of the patch size {patch}.")
        distillation = facts.distillation_token and hasattr(model.base_model.embeddings, "distillation_token")
        registers = int(getattr(config, "num_register_tokens", 0) or 0) if facts.register_tokens else 0
        return ModelLayout(config.model_type, facts.kind, 1 + int(distillation) + registers,
                       (input_size[0] // patch, input_size[1] // patch), blocks, tuple(input_size))
    # Convolutional: stem (stride 4) and one downsampling (stride 2) per stage after the first.
    stride = 4 * 2 ** (len(blocks) - 1)
    return ModelLayout(config.model_type, facts.kind, 0, (input_size[0] // stride, input_size[1] // stride), blocks,
                   tuple(input_size))
