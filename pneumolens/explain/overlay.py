"""Explanation maps drawn over the image they explain."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from PIL import Image

# Perceptually uniform (equal steps of the map look like equal steps of colour) and readable with the
# common colour-vision deficiencies and in grey, unlike jet (kept as an option: --colormap jet).
COLORMAP = "viridis"
# How a map covers the film. "value": each pixel's opacity follows the map's value, from clear where the map
# is zero to `opacity` at its strongest point, so the film shows through wherever the map says little (a
# uniform blend laid the low end's dark purple over the whole radiograph). "even": that uniform blend, kept
# as an option (PNEUMOLENS_OVERLAY=even, explain.py --overlay even).
BLENDS = ("value", "even")
DEFAULT_BLEND = "value"
# The opacity at a map's strongest point: with the colour fading below it, the peak can be this strong and
# the film still reads everywhere else.
DEFAULT_OPACITY = 0.6


def overlay(image: Image.Image, heatmap: np.ndarray, opacity: float = DEFAULT_OPACITY,
            colormap: str = COLORMAP, blend: str = DEFAULT_BLEND) -> Image.Image:
    """Draw a colormapped (height, width) map in [0, 1] (or 8-bit levels, uint8) over `image` (same size),
    its opacity following its value up to `opacity` (or, with blend="even", `opacity` everywhere).

    The map is coloured through a 256-entry palette and blended by PIL in 8 bits: a colormap shows no
    more levels than that, and float RGBA at display size cost a page ~40 ms per map (measured).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], not {opacity}")
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, not {blend!r}")
    if heatmap.shape != (image.height, image.width):
        raise ValueError(f"map shape {heatmap.shape} does not match the image ({image.height}, {image.width})")
    levels = heatmap if heatmap.dtype == np.uint8 else np.round(np.clip(heatmap, 0.0, 1.0) * 255).astype(np.uint8)
    colours = Image.fromarray(levels)
    colours.putpalette(palette(colormap))  # a palette image: PIL colours it in C
    if blend == "even":
        return Image.blend(image.convert("RGB"), colours.convert("RGB"), opacity)
    coverage = Image.fromarray(levels).point(_coverage(opacity))
    return Image.composite(colours.convert("RGB"), image.convert("RGB"), coverage)


@lru_cache(maxsize=64)
def _coverage(opacity: float) -> list[int]:
    """The opacity (0-255) of each of the 256 map levels: zero at level 0, `opacity` at the top."""
    return [round(255 * opacity * level / 255) for level in range(256)]


@lru_cache(maxsize=8)
def palette(colormap: str) -> bytes:
    """`colormap` at the 256 levels of an 8-bit map, as PIL's RGB palette bytes."""
    return np.round(colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8).tobytes()
