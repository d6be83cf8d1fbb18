"""Gradient saliency: how much each input pixel moves the explained class's logit (Simonyan et al. 2014); with
noisy copies, SmoothGrad (Smilkov et al. 2017)."""

from __future__ import annotations

import torch

from .method import ExplanationMethod, Needs, register


def gradient_saliency(input_gradient: torch.Tensor) -> torch.Tensor:
    """(H, W) map from a (N, C, H, W) input gradient: absolute value, max over channels, mean over N.

    With N noisy copies of one image this is SmoothGrad (Smilkov et al. 2017).
    """
    return input_gradient.detach().abs().amax(dim=1).mean(dim=0)


def noisy_copies(pixel_values: torch.Tensor, count: int, noise_level: float = 0.15,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` copies of a (1, C, H, W) input with Gaussian noise of `noise_level` x its value range."""
    spread = (pixel_values.max() - pixel_values.min()).item() * noise_level
    noise = torch.randn((count, *pixel_values.shape[1:]), generator=generator, dtype=pixel_values.dtype)
    return pixel_values + noise.to(pixel_values.device) * spread


def smoothgrad_copies(pixel_values: torch.Tensor, options) -> torch.Tensor:
    """The options' SmoothGrad copies, seeded, so the fused and the reference pass see the same noise."""
    generator = torch.Generator().manual_seed(options.seed)
    return noisy_copies(pixel_values, options.smoothgrad_samples, options.noise_level, generator)


@register
class GradientSaliency(ExplanationMethod):
    name = "saliency"
    title = "Gradient saliency"
    how_to_read = "Pixels whose small change would move the score most: fine and noisy, so look for clusters."
    scale_high = "a larger effect on the score of {label}"

    def needs(self, options) -> Needs:
        return Needs(input_gradient=True)

    def from_pass(self, shared, layout, options):
        return gradient_saliency(shared.input_gradient)

    def reference(self, model, pixels, explained_index, layout, options):
        batch = smoothgrad_copies(pixels, options) if options.smoothgrad_samples > 0 else pixels
        batch = batch.detach().requires_grad_(True)
        logits = model(pixel_values=batch).logits
        return gradient_saliency(torch.autograd.grad(logits[:, explained_index].sum(), batch)[0])
