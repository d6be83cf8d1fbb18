"""Grad-CAM through the `grad-cam` package, on Hugging Face classifiers: the layer it reads and the CAM
that weighs that layer's activations by its gradients are settings (`ExplanationOptions.gradcam_layer`,
`.cam`), chosen per model by measured faithfulness (`explain.py select`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from ..errors import PneumoLensError
from ..modeling import CONVOLUTIONAL, TRANSFORMER
from .layout import ModelLayout
from .method import ExplanationMethod, Needs, register
from .options import ExplanationOptions

# The package's CAMs that need nothing but one forward and backward pass (so they fit the fused pass);
# Score-CAM and Ablation-CAM run hundreds of passes of their own and are left out.
CAMS = {"gradcam": GradCAM, "hirescam": HiResCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM,
        "layercam": LayerCAM}
CAM_TITLES = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM",
              "layercam": "LayerCAM"}


def cam_class(name: str):
    try:
        return CAMS[name]
    except KeyError:
        raise PneumoLensError(f"Unknown CAM '{name}'; choose from {', '.join(CAMS)}.") from None


class LogitsOf(torch.nn.Module):
    """A Hugging Face classifier as the grad-cam package expects it: pixels in, logits out.

    With `keep_attentions` the attention probabilities of the last call are kept in `.attentions`,
    gradients retained, so one forward pass also serves attention rollout.
    """

    def __init__(self, model: torch.nn.Module, keep_attentions: bool = False):
        super().__init__()
        self.model = model
        self.keep_attentions = keep_attentions
        self.attentions: tuple[torch.Tensor, ...] = ()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # Asked only when kept: any classifier of pixels into logits can be wrapped (faithfulness's ROAD).
        outputs = self.model(pixel_values=pixel_values, **({"output_attentions": True} if self.keep_attentions else {}))
        self.attentions = tuple(outputs.attentions or ()) if self.keep_attentions else ()
        for attention in self.attentions:
            if attention.requires_grad:
                attention.retain_grad()
        return outputs.logits


@contextmanager
def grad_cam(model: torch.nn.Module, layout: ModelLayout, options: ExplanationOptions = ExplanationOptions(),
             keep_attentions: bool = False) -> Iterator[GradCAM]:
    """The options' CAM on the options' layer, its hooks removed and its captures dropped on exit.

    The gradient hook that grad-cam puts on the layer's output refers back to the wrapper, which holds
    the attention tensors whose graph holds that hook: a cycle through autograd that Python's garbage
    collector cannot see. Dropping the attentions breaks it, so memory stays flat call after call.
    """
    wrapper = LogitsOf(model, keep_attentions)
    layer = layout.cam_layer(options.gradcam_layer)
    cam = cam_class(options.cam)(model=wrapper, target_layers=[layer.module],
                                 reshape_transform=layout.reshape_transform)
    try:
        yield cam
    finally:
        cam.activations_and_grads.release()
        wrapper.attentions = ()


def grad_cam_reference(model: torch.nn.Module, layout: ModelLayout, pixel_values: torch.Tensor,
                       explained_index: int, options: ExplanationOptions = ExplanationOptions()) -> np.ndarray:
    """Grad-CAM the plain way: the package's own forward, backward and CAM, (H, W) in [0, 1]."""
    with grad_cam(model, layout, options) as cam:
        return cam(input_tensor=pixel_values, targets=[ClassifierOutputTarget(explained_index)])[0]


def cam_from_captured(cam: GradCAM, pixel_values: torch.Tensor, explained_index: int) -> np.ndarray:
    """The package's CAM (weights, weighted sum, ReLU, scaling) from activations and gradients its
    hooks captured during a forward and backward pass that someone else ran; (H, W) in [0, 1]."""
    per_layer = cam.compute_cam_per_layer(pixel_values, [ClassifierOutputTarget(explained_index)], eigen_smooth=False)
    return cam.aggregate_multi_layers(per_layer)[0]


@register
class GradCAMMethod(ExplanationMethod):
    name = "gradcam"
    title = "Grad-CAM"
    how_to_read = "Regions of a late feature map that raise the explained class: coarse, read it as 'roughly here'."
    scale_high = "more evidence for {label}"
    architectures = (TRANSFORMER, CONVOLUTIONAL)

    def needs(self, options) -> Needs:
        return Needs(layer=True)

    def granularity(self, layout, options):
        return layout.cam_layer(options.gradcam_layer).grid

    def settings_text(self, layout, options) -> str:
        return f"{CAM_TITLES[options.cam]} at {layout.layer_title(options.gradcam_layer)}"

    def from_pass(self, shared, layout, options):
        return cam_from_captured(shared.cam, shared.pixels, shared.explained_index)

    def reference(self, model, pixels, explained_index, layout, options):
        return grad_cam_reference(model, layout, pixels, explained_index, options)
