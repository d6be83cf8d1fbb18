"""Class-specific transformer attribution (Chefer, Gur & Wolf 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV).

Relevance starts as the identity (each token is itself) and flows through the layers: each layer's
attention is weighted by its gradient for the explained class, negative contributions dropped, heads
averaged, and added to the relevance carried over (R <- R + A R, the residual path). The class token's
row over the patch tokens is the map. Unlike rollout it is class-specific, and unlike saliency it
follows the path the attention actually routed.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..modeling import TRANSFORMER
from .geometry import to_input_size
from .method import ExplanationMethod, Needs, attention_pass, register
from .rollout import cls_row_of_product


def transformer_attribution(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor],
                            special_tokens: int, grid: tuple[int, int]) -> torch.Tensor:
    """(rows, cols) relevance of the patch tokens for the class token, first item of the batch.

    attentions, gradients: per layer (B, heads, T, T) attention probabilities and d (the explained class's logit) / d attention.
    """
    with torch.no_grad():
        identity = torch.eye(attentions[0].shape[-1], dtype=torch.float64, device=attentions[0].device)
        # R <- R + A R over the layers is R = (I + A_L) ... (I + A_1); only the class token's row is read.
        layers = [identity + (gradient[0].double() * attention[0].double()).clamp(min=0).mean(dim=0)
                  for attention, gradient in zip(attentions, gradients, strict=True)]
        return cls_row_of_product(layers, special_tokens).reshape(grid).float()


@register
class TransformerAttribution(ExplanationMethod):
    name = "attribution"
    title = "Transformer attribution"
    how_to_read = ("Patches whose attention raised the explained class, weighted by its gradient through all "
                   "layers (Chefer et al. 2021).")
    scale_high = "more relevance for {label}"
    architectures = (TRANSFORMER,)

    def needs(self, options) -> Needs:
        return Needs(attentions=True, attention_gradients=True)

    def granularity(self, layout, options):
        return layout.grid

    def from_pass(self, shared, layout, options):
        return self._map(shared.attentions, shared.attention_gradients, layout, shared.pixels)

    def reference(self, model, pixels, explained_index, layout, options):
        outputs, gradients = attention_pass(model, pixels, explained_index)
        return self._map(outputs.attentions, gradients, layout, pixels)

    @staticmethod
    def _map(attentions, gradients, layout, pixels) -> torch.Tensor:
        grid_map = transformer_attribution(attentions, gradients, layout.special_tokens, layout.grid)
        return to_input_size(grid_map, tuple(pixels.shape[-2:]))
