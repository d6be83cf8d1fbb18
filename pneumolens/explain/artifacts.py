"""High-norm artifact tokens (Darcet et al. 2024, "Vision Transformers Need Registers") and how much of
each attention-based map they hold.

DINOv2 without registers repurposes a few background patch tokens as global scratch space: their output
norm is several times that of the others and the class token attends to them strongly, so attention
rollout can light up patches that carry no evidence. Per image this measures which patch tokens are
high-norm (last layer output norm above `NORM_RATIO` times the image's median patch norm), the share of
tokens they are, and the share of each map's mass they hold. A map dominated by artifacts gives them far
more mass than their share of tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from .layout import layout_of
from .attribution import transformer_attribution
from .method import attention_pass
from .rollout import attention_rollout

NORM_RATIO = 2.0


def high_norm_tokens(norms: np.ndarray, ratio: float = NORM_RATIO) -> np.ndarray:
    """Boolean mask of the patch tokens whose norm exceeds `ratio` times the median patch norm."""
    return norms > ratio * np.median(norms)


def mass_share(grid_map: np.ndarray, mask: np.ndarray) -> float:
    """Share of a non-negative map's total mass that lies on `mask`."""
    values = np.clip(np.asarray(grid_map, dtype=np.float64), 0, None)
    total = values.sum()
    return float(values[mask].sum() / total) if total > 0 else 0.0


def token_maps(model, pixels: torch.Tensor, explained_index: int | None = None) -> dict[str, np.ndarray]:
    """Per patch token (grid shape): last-layer output norm, attention rollout and transformer attribution."""
    layout = layout_of(model, tuple(pixels.shape[-2:]))
    outputs, gradients = attention_pass(model, pixels, explained_index, output_hidden_states=True)
    tokens = outputs.hidden_states[-1][0, layout.special_tokens:].detach()
    return {
        "norm": tokens.norm(dim=-1).reshape(layout.grid).numpy(),
        "rollout": attention_rollout(outputs.attentions, layout.special_tokens, layout.grid).numpy(),
        "attribution": transformer_attribution(outputs.attentions, gradients, layout.special_tokens, layout.grid).numpy(),
    }


def artifact_report(explainer, images, ratio: float = NORM_RATIO) -> dict:
    """Over `images`: how many tokens are high-norm, and the share of rollout's and attribution's mass on them."""
    rows = []
    for image in images:
        _, pixels, _ = explainer.prepare(image)
        maps = token_maps(explainer.model, pixels)
        mask = high_norm_tokens(maps["norm"], ratio)
        rows.append({"token_share": float(mask.mean()),
                     "max_norm_ratio": float(maps["norm"].max() / np.median(maps["norm"])),
                     "rollout_share": mass_share(maps["rollout"], mask),
                     "attribution_share": mass_share(maps["attribution"], mask)})
    summary = {key: {"mean": float(np.mean([r[key] for r in rows])), "max": float(np.max([r[key] for r in rows]))}
               for key in rows[0]}
    with_artifacts = [r for r in rows if r["token_share"] > 0]
    summary["images"] = len(rows)
    summary["images_with_high_norm_tokens"] = len(with_artifacts)
    summary["norm_ratio"] = ratio
    return {"summary": summary, "images": rows}


def artifact_markdown(report: dict) -> str:
    s = report["summary"]
    return (f"High-norm tokens (last-layer output norm > {s['norm_ratio']:g} x the image's median patch norm) were "
            f"found in {s['images_with_high_norm_tokens']} of {s['images']} images; they are on average "
            f"{s['token_share']['mean']:.1%} of the patch tokens (at most {s['token_share']['max']:.1%}; the largest "
            f"norm is {s['max_norm_ratio']['mean']:.2f}x the median on average, at most {s['max_norm_ratio']['max']:.2f}x). They hold {s['rollout_share']['mean']:.1%} "
            f"of attention rollout's mass (at most {s['rollout_share']['max']:.1%} in one image) and "
            f"{s['attribution_share']['mean']:.1%} of the transformer attribution's (at most "
            f"{s['attribution_share']['max']:.1%}).")


def artifact_section(report: dict, where: str, command_line: str) -> str:
    return (f"{artifact_markdown(report)} Measured on {report['summary']['images']} images of {where}.\n\n"
            f"Command: `{command_line}`")
