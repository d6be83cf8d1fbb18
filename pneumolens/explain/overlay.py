"""Explanation maps drawn over the image they explain."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image


def overlay(image: Image.Image, heatmap: np.ndarray, opacity: float = 0.45, colormap: str = "jet") -> Image.Image:
    """Blend a colormapped (height, width) map in [0, 1] over `image` (same size) with `opacity`."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], not {opacity}")
    if heatmap.shape != (image.height, image.width):
        raise ValueError(f"map shape {heatmap.shape} does not match the image ({image.height}, {image.width})")
    colours = colormaps[colormap](np.clip(heatmap, 0.0, 1.0))[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    blended = (1.0 - opacity) * base + opacity * colours
    return Image.fromarray(np.round(blended * 255).astype(np.uint8))
