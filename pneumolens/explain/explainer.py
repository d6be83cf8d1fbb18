"""Probabilities and every registered method's map from one forward and one backward pass, and the same
things computed the plain way (one pass per method) as the reference the fused result is tested against.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field
from functools import cached_property, reduce

import numpy as np
import torch
from PIL import Image

from ..errors import PneumoLensError
from ..images import ImageSource, load_image
from ..decision import class_probabilities, decision_index, shown_probabilities
from ..modeling import is_transformer
from ..preprocessing import pixel_values
from .layout import ModelLayout, layout_of
from .geometry import input_box, normalise, scaled_box, to_original
from .gradcam import grad_cam
from .method import REGISTRY, ExplanationMethod, MethodUnavailable, Needs, SharedPass, as_array, method
from .options import ExplanationOptions
from .saliency import smoothgrad_copies

logger = logging.getLogger(__name__)


@dataclass
class Explanation:
    image: Image.Image  # the input as decoded (upright RGB, original size)
    probabilities: dict[str, float]
    explained_index: int  # the class the maps explain
    explained_class: str  # its label
    input_maps: dict[str, np.ndarray] = field(default_factory=dict)  # (H, W) at model input size, [0, 1]
    unavailable: dict[str, str] = field(default_factory=dict)  # method -> why it cannot be given
    box: tuple[float, float, float, float] | None = None  # the part of `image` the model input shows
    # Per map: the grid it was made on (None: per pixel), and the settings that made it, in words.
    granularity: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)

    @cached_property
    def maps(self) -> dict[str, np.ndarray]:
        """The maps at the resolution of `image`, [0, 1]: made when first asked for (downloads and the
        command line), since a page shows them smaller (`maps_at`)."""
        return self.maps_at(self.image.size)

    def maps_at(self, size: tuple[int, int]) -> dict[str, np.ndarray]:
        """The maps over `image` scaled to `size` (width, height), straight from the input-size maps."""
        box = scaled_box(self.full_box, self.image.size, size)
        return {name: to_original(heatmap, box, size) for name, heatmap in self.input_maps.items()}

    @property
    def full_box(self) -> tuple[float, float, float, float]:
        return self.box or (0.0, 0.0, float(self.image.width), float(self.image.height))


class Explainer:
    """Explanations for one model and its image processor."""

    def __init__(self, model: torch.nn.Module, processor):
        if is_transformer(model.config) and model.config._attn_implementation != "eager":
            logger.warning("Switching %s to eager attention: rollout needs the attention probabilities.",
                           model.config._attn_implementation)
            model.set_attn_implementation("eager")
        self.model = model.eval()
        self.processor = processor
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    def prepare(self, image: ImageSource) -> tuple[Image.Image, torch.Tensor, ModelLayout]:
        rgb = load_image(image)
        pixels = pixel_values(self.processor, [rgb]).to(self.model.device, self.model.dtype)
        return rgb, pixels, layout_of(self.model, tuple(pixels.shape[-2:]))

    def predict(self, image: ImageSource) -> dict[str, float]:
        """Class probabilities only: one forward pass without gradients."""
        return self.predict_many([image])[0]

    def predict_many(self, images: list[ImageSource]) -> list[dict[str, float]]:
        """Class probabilities of several images from one batched forward pass without gradients."""
        return self.predict_pixels(pixel_values(self.processor, images))

    def predict_pixels(self, pixels: torch.Tensor) -> list[dict[str, float]]:
        """Class probabilities of a batch of already preprocessed `pixel_values` (N, 3, H, W)."""
        return [self._by_label(row) for row in class_probabilities(self.model, pixels)]

    def explain(self, image: ImageSource, explained_index: int | None = None,
                options: ExplanationOptions = ExplanationOptions()) -> Explanation:
        """Probabilities and the requested maps of class `explained_index` (None: the decision) from one
        forward and one backward pass."""
        return self.explain_prepared(*self.prepare(image), explained_index, options)

    def explain_prepared(self, rgb: Image.Image, pixels: torch.Tensor, layout: ModelLayout,
                         explained_index: int | None = None,
                         options: ExplanationOptions = ExplanationOptions()) -> Explanation:
        """`explain` of an image already `prepare`d, for callers that need its model input as well."""
        return self._result(rgb, layout, options, *self.fused_maps(pixels, layout, explained_index, options))

    def explain_separately(self, image: ImageSource, explained_index: int | None = None,
                           options: ExplanationOptions = ExplanationOptions()) -> Explanation:
        """The same result the plain way: a prediction pass, a `GradCAM` call, a saliency pass and a
        rollout pass. Slower; kept as the reference the fused `explain` must equal."""
        rgb, pixels, layout = self.prepare(image)
        return self._result(rgb, layout, options, *self.separate_maps(pixels, layout, explained_index, options))

    def fused_maps(self, pixels: torch.Tensor, layout: ModelLayout, explained_index: int | None, options: ExplanationOptions):
        """(probabilities, explained_index, raw maps at input size, unavailable) from one forward and one backward.

        The pass gives what the requested methods declare they need: hooks capture the Grad-CAM layer's
        activations, the model returns the attention probabilities, and one `autograd.grad` call yields
        the input gradient, the layer gradient (through grad-cam's hook) and the attention gradients.
        No weight gradients are computed: an explanation needs none.
        """
        methods, unavailable = self._available(options, layout)
        needs = reduce(operator.or_, (m.needs(options) for m in methods), Needs())
        smoothgrad = needs.input_gradient and options.smoothgrad_samples > 0
        batch = torch.cat([pixels, smoothgrad_copies(pixels, options)]) if smoothgrad else pixels
        batch = batch.detach().requires_grad_(True)
        with grad_cam(self.model, layout, options, keep_attentions=needs.attentions) as cam:
            logits = cam.activations_and_grads(batch)
            probabilities = shown_probabilities(self.model.config, logits[0].detach())
            explained_index = self._resolved_index(explained_index, probabilities)
            shared = SharedPass(pixels, explained_index, cam=cam)
            shared.attentions = cam.model.attentions if needs.attentions else ()
            if needs.input_gradient or needs.layer or needs.attention_gradients:
                # The input is always a gradient input: the layer's gradient hook fires on the way to it.
                grad_inputs = [batch] + (list(shared.attentions) if needs.attention_gradients else [])
                gradients = torch.autograd.grad(logits[:, explained_index].sum(), grad_inputs)
                shared.input_gradient = gradients[0][1:] if smoothgrad else gradients[0]
                shared.attention_gradients = tuple(gradients[1:])
            raw = {m.name: m.from_pass(shared, layout, options) for m in methods}
        return probabilities, explained_index, raw, unavailable

    def separate_maps(self, pixels: torch.Tensor, layout: ModelLayout, explained_index: int | None, options: ExplanationOptions):
        """Like `fused_maps`, one pass per method, the way a typical demo computes them."""
        methods, unavailable = self._available(options, layout)
        with torch.no_grad():
            probabilities = shown_probabilities(self.model.config, self.model(pixel_values=pixels).logits[0])
        explained_index = self._resolved_index(explained_index, probabilities)
        raw = {m.name: m.reference(self.model, pixels, explained_index, layout, options) for m in methods}
        return probabilities, explained_index, raw, unavailable

    @staticmethod
    def _available(options: ExplanationOptions, layout: ModelLayout) -> tuple[list[ExplanationMethod], dict[str, str]]:
        methods, unavailable = [], {}
        for name in (REGISTRY if options.methods is None else options.methods):
            candidate = method(name)
            try:
                candidate.check(layout)
                methods.append(candidate)
            except MethodUnavailable as reason:
                unavailable[name] = str(reason)
        return methods, unavailable

    def _resolved_index(self, explained_index: int | None, probabilities: torch.Tensor) -> int:
        if explained_index is None:  # the model's decision, which is what "the predicted class" means everywhere
            return decision_index(self.model.config, probabilities.tolist())
        if not 0 <= int(explained_index) < len(self.labels):
            raise PneumoLensError(
                f"The explained class {explained_index} is out of range: the model has {len(self.labels)} classes "
                f"({', '.join(f'{i}={name}' for i, name in enumerate(self.labels))})."
            )
        return int(explained_index)

    def _by_label(self, probabilities: torch.Tensor) -> dict[str, float]:
        return {label: float(p) for label, p in zip(self.labels, probabilities.tolist())}

    def _result(self, rgb, layout, options, probabilities, explained_index, raw, unavailable) -> Explanation:
        return Explanation(
            image=rgb,
            probabilities=self._by_label(probabilities),
            explained_index=explained_index,
            explained_class=self.labels[explained_index],
            input_maps={name: normalise(as_array(m)) for name, m in raw.items()},
            unavailable=unavailable,
            box=input_box(self.processor, rgb.size),
            granularity={name: REGISTRY[name].granularity(layout, options) for name in raw},
            settings={name: REGISTRY[name].settings_text(layout, options) for name in raw},
        )
