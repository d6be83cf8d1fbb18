"""Explanation maps drawn over the image they explain."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from PIL import Image

# Perceptually uniform (equal steps of the map look like equal steps of colour) and readable with the
# common colour-vision deficiencies and in grey, unlike jet (kept as an option: --colormap jet).
DEFAULT_COLORMAP = "viridis"


def overlay(image: Image.Image, heatmap: np.ndarray, opacity: float = 0.45,
            colormap: str = DEFAULT_COLORMAP) -> Image.Image:
    """Blend a colormapped (height, width) map in [0, 1] (or 8-bit levels, uint8) over `image` (same
    size) with `opacity`.

    The map is coloured through a 256-entry palette and blended by PIL in 8 bits: a colormap shows no
    more levels than that, and float RGBA at display size cost a page ~40 ms per map (measured).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], not {opacity}")
    if heatmap.shape != (image.height, image.width):
        raise ValueError(f"map shape {heatmap.shape} does not match the image ({image.height}, {image.width})")
    levels = heatmap if heatmap.dtype == np.uint8 else np.round(np.clip(heatmap, 0.0, 1.0) * 255).astype(np.uint8)
    colours = Image.fromarray(levels)
    colours.putpalette(palette(colormap))  # a palette image: PIL colours it in C
    return Image.blend(image.convert("RGB"), colours.convert("RGB"), opacity)


@lru_cache(maxsize=8)
def palette(colormap: str) -> bytes:
    """`colormap` at the 256 levels of an 8-bit map, as PIL's RGB palette bytes."""
    return np.round(colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8).tobytes()
