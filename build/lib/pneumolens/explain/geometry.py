"""Mapping between the original image and the model input, so maps land on the image as uploaded."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def input_box(processor, original_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the original image (width, height) that the model input shows.

    Square resizes show everything. Resize-shortest-edge-then-centre-crop processors (DINOv2's and
    ViT's originals, ConvNeXt's `crop_pct`) show a centred window, computed here the same way.
    """
    width, height = original_size
    size = dict(getattr(processor, "size", None) or {})
    crop = dict(getattr(processor, "crop_size", None) or {})
    if "shortest_edge" in size and size["shortest_edge"] is not None:
        short = size["shortest_edge"]
        crop_pct = getattr(processor, "crop_pct", None)
        if crop_pct is not None and short < 384:  # ConvNeXt: resize to short / crop_pct, crop short
            resized_short, crop_h, crop_w = short / crop_pct, short, short
        elif getattr(processor, "do_center_crop", False) and crop:
            resized_short, crop_h, crop_w = short, crop["height"], crop["width"]
        else:
            return 0.0, 0.0, float(width), float(height)
        scale = resized_short / min(width, height)
        visible_w, visible_h = min(crop_w / scale, width), min(crop_h / scale, height)
        left, top = (width - visible_w) / 2, (height - visible_h) / 2
        return left, top, left + visible_w, top + visible_h
    return 0.0, 0.0, float(width), float(height)


def scaled_box(box, from_size: tuple[int, int], to_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """An `input_box` of an image of `from_size` (width, height), for the same image resized to `to_size`."""
    scale_x, scale_y = to_size[0] / from_size[0], to_size[1] / from_size[1]
    return box[0] * scale_x, box[1] * scale_y, box[2] * scale_x, box[3] * scale_y


def to_input_size(grid_map: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of a (rows, cols) map to the model input's (H, W)."""
    return F.interpolate(grid_map[None, None].float(), size=input_size, mode="bilinear", align_corners=False)[0, 0]


def to_original(input_map: np.ndarray | torch.Tensor, box, original_size: tuple[int, int]) -> np.ndarray:
    """A map over the model input -> (height, width) of the original image, normalised to [0, 1].

    Parts of the image the model never saw (outside a centre crop) are 0.
    """
    width, height = original_size
    left, top, right, bottom = box
    tensor = torch.as_tensor(np.asarray(input_map, dtype=np.float32))
    x0, y0 = int(round(left)), int(round(top))
    box_w, box_h = max(1, int(round(right)) - x0), max(1, int(round(bottom)) - y0)
    inside = F.interpolate(tensor[None, None], size=(box_h, box_w), mode="bilinear", align_corners=False)[0, 0]
    canvas = torch.zeros((height, width), dtype=torch.float32)
    canvas[y0:y0 + box_h, x0:x0 + box_w] = inside[: height - y0, : width - x0]
    return normalise(canvas.numpy())


def normalise(values: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant map becomes all zeros."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)
