"""What every explanation method declares, and the registry the explainer, the app, the command line,
the reports and the tests iterate over.

A method is one small class in its own file: its title and how-to-read text, the architecture kinds
it supports, what it needs from the shared pass (attentions, their gradients, the input gradient, the
Grad-CAM layer's activations and gradients), how it makes its map from that pass, and how it makes
the same map the plain way (the reference the fused result is tested against). Adding a method is a
new file with a `@register`ed class and its import in `explain/__init__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from ..errors import PneumoLensError
from ..decision import decision_index, shown_probabilities
from ..modeling import CONVOLUTIONAL, TRANSFORMER
from .options import ExplanationOptions

if TYPE_CHECKING:
    from .layout import ModelLayout


def attention_pass(model, pixels: torch.Tensor, explained_index: int | None = None, gradients: bool = True,
                   **outputs):
    """A plain forward pass that returns the attention probabilities and, with `gradients`, d logit[explained_index]
    / d attention per layer (explained_index None: the model's decision, as everywhere): what the attention-based
    methods' reference paths and the artifact measurement read. `outputs`: more of the model's output switches."""
    result = model(pixel_values=pixels.detach().requires_grad_(gradients), output_attentions=True, **outputs)
    if not gradients:
        return result, None
    if explained_index is None:
        shown = shown_probabilities(model.config, result.logits[:1].detach())[0]
        explained_index = decision_index(model.config, shown.tolist())
    return result, torch.autograd.grad(result.logits[0, explained_index], list(result.attentions))


class MethodUnavailable(PneumoLensError):
    """The model's architecture cannot give this explanation (e.g. attention rollout on ConvNeXt)."""


@dataclass(frozen=True)
class Needs:
    """What a method reads from the shared forward and backward pass."""

    attentions: bool = False
    attention_gradients: bool = False
    input_gradient: bool = False
    layer: bool = False  # the Grad-CAM layer's activations and gradients

    def __or__(self, other: "Needs") -> "Needs":
        return Needs(*(a or b for a, b in zip(vars(self).values(), vars(other).values())))


@dataclass
class SharedPass:
    """One forward and one backward pass of the explained class's logit, as the methods need it.

    `input_gradient` is d logit / d input for the image, or for its SmoothGrad noisy copies when the
    options ask for them; `cam` is grad-cam's `GradCAM` holding the layer's captured activations and
    gradients.
    """

    pixels: torch.Tensor  # (1, C, H, W) the preprocessed image
    explained_index: int
    attentions: tuple[torch.Tensor, ...] = ()
    attention_gradients: tuple[torch.Tensor, ...] = ()
    input_gradient: torch.Tensor | None = None
    cam: object | None = None


class ExplanationMethod:
    """Base class: declarations as class attributes, two ways to make the map."""

    name: ClassVar[str]
    title: ClassVar[str]
    how_to_read: ClassVar[str]  # one sentence
    scale_high: ClassVar[str]  # what the high end of its colour scale means; {label}: the explained class
    architectures: ClassVar[tuple[str, ...]] = (TRANSFORMER, CONVOLUTIONAL)

    def needs(self, options: ExplanationOptions) -> Needs:
        raise NotImplementedError

    def granularity(self, layout: "ModelLayout", options: ExplanationOptions) -> tuple[int, int] | None:
        """The grid (rows, columns) the map is made on before it is scaled to the input, or None for a map
        made per pixel: the faithfulness test compares a map with a random map of the same grid."""
        return None

    def settings_text(self, layout: "ModelLayout", options: ExplanationOptions) -> str:
        """The settings that made the map, in words for its caption ("" where there are none)."""
        return ""

    def from_pass(self, shared: SharedPass, layout: "ModelLayout", options: ExplanationOptions):
        """The (H, W) map at model input size from the shared pass."""
        raise NotImplementedError

    def reference(self, model: torch.nn.Module, pixels: torch.Tensor, explained_index: int, layout: "ModelLayout",
                  options: ExplanationOptions):
        """The same map the plain way, with passes of its own."""
        raise NotImplementedError

    def check(self, layout: "ModelLayout") -> None:
        """Raise `MethodUnavailable`, saying why, where the architecture cannot give this map."""
        if layout.kind not in self.architectures:
            raise MethodUnavailable(f"{self.title} needs a {' or '.join(self.architectures)} model; "
                                    f"{layout.model_type} is {layout.kind}.")


REGISTRY: dict[str, ExplanationMethod] = {}


def register(cls: type[ExplanationMethod]) -> type[ExplanationMethod]:
    """Class decorator: one instance per method, in import order (the order the app shows them)."""
    REGISTRY[cls.name] = cls()
    return cls


def method(name: str) -> ExplanationMethod:
    try:
        return REGISTRY[name]
    except KeyError:
        raise PneumoLensError(f"Unknown explanation method '{name}'; choose from {', '.join(REGISTRY)}.") from None


def as_array(heatmap) -> np.ndarray:
    return np.asarray(heatmap.detach().cpu() if torch.is_tensor(heatmap) else heatmap, dtype=np.float32)
