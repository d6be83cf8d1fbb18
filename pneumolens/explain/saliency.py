"""Gradient saliency: how much each input pixel moves the target logit (Simonyan et al. 2014)."""

from __future__ import annotations

import torch


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
