"""Shapes no chest film has. A strip cut from a radiograph, squeezed to the model's square input, looks
like lung texture to the model and to the out-of-distribution detector alike; its shape alone says it
is no radiograph, so no class is decided for it.

The bounds, with margin, from the films at hand: the 16 official validation films at full resolution
are 1.12 to 1.73 times as long as wide (592 px on the shortest side), the training copies 224 x 224.
"""

from __future__ import annotations

MAX_ASPECT = 2.5  # long side over short side
MIN_SIDE = 64  # pixels


def shape_problem(size: tuple[int, int]) -> str | None:
    """Why an image of `size` (width, height) cannot be a chest radiograph, or None if it can."""
    width, height = size
    if min(size) < MIN_SIDE:
        return f"it is {width} x {height} pixels, and a chest radiograph has at least {MIN_SIDE} on each side"
    aspect = max(size) / min(size)
    if aspect > MAX_ASPECT:
        return (f"it is {width} x {height} pixels, {aspect:.1f} times as long as wide, and a chest radiograph is "
                f"at most {MAX_ASPECT:g} times")
    return None
