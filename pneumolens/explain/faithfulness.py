"""Deletion and insertion curves (Petsiuk et al. 2018, RISE): does the map point at what the model uses?

Deletion removes the pixels a map ranks highest first and watches the target probability fall (a
lower area under the curve is better); insertion reveals them first over a blurred image and watches
it rise (higher is better). A random map is the baseline every method must beat.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur

from .explainer import Explainer, ExplanationOptions

RANDOM = "random"


@torch.no_grad()
def _curve(model, start: torch.Tensor, finish: torch.Tensor, order: torch.Tensor, target: int, steps: int) -> np.ndarray:
    """Target probability as pixels in `order` switch from `start` to `finish`, in `steps` equal parts."""
    height, width = start.shape[-2:]
    batch = []
    for step in range(steps + 1):
        mask = torch.zeros(height * width, dtype=torch.bool)
        mask[order[: round(step / steps * height * width)]] = True
        mask = mask.reshape(1, height, width)
        batch.append(torch.where(mask, finish[0], start[0]))
    probabilities = torch.softmax(model(pixel_values=torch.stack(batch)).logits.float(), dim=-1)
    return probabilities[:, target].cpu().numpy()


def _area(curve: np.ndarray) -> float:
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def deletion_insertion(model, processor, images, methods=None, steps: int = 10, seed: int = 0) -> dict[str, dict]:
    """Mean deletion and insertion AUC per method and for a random map, over `images`."""
    explainer = Explainer(model, processor)
    generator = np.random.default_rng(seed)
    scores: dict[str, dict[str, list[float]]] = {}
    for image in images:
        explanation = explainer.explain(image, options=ExplanationOptions(methods=tuple(methods) if methods else None))
        _, pixels, _ = explainer.prepare(explanation.image)
        blurred = gaussian_blur(pixels, kernel_size=[31, 31], sigma=[10.0, 10.0])
        removed = torch.zeros_like(pixels)  # the processor's mean colour: 0 after normalisation
        maps = dict(explanation.input_maps)
        maps[RANDOM] = generator.random(pixels.shape[-2:]).astype(np.float32)
        for method, heatmap in maps.items():
            order = torch.as_tensor(np.argsort(-heatmap.ravel(), kind="stable").copy())
            deletion = _curve(model, pixels, removed, order, explanation.target, steps)
            insertion = _curve(model, blurred, pixels, order, explanation.target, steps)
            entry = scores.setdefault(method, {"deletion_auc": [], "insertion_auc": []})
            entry["deletion_auc"].append(_area(deletion))
            entry["insertion_auc"].append(_area(insertion))
    return {
        method: {"deletion_auc": float(np.mean(values["deletion_auc"])),
                 "insertion_auc": float(np.mean(values["insertion_auc"])),
                 "images": len(values["deletion_auc"])}
        for method, values in scores.items()
    }


def faithfulness_table(results: dict[str, dict]) -> str:
    """Markdown table of `deletion_insertion` results, random baseline last."""
    rows = ["| method | deletion AUC (lower is better) | insertion AUC (higher is better) | images |",
            "|---|---:|---:|---:|"]
    for method in sorted(results, key=lambda m: m == RANDOM):
        values = results[method]
        rows.append(f"| {method} | {values['deletion_auc']:.4f} | {values['insertion_auc']:.4f} | {values['images']} |")
    return "\n".join(rows)
