"""Model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

A map that explains the model must change when the model's weights are replaced by random ones. The
trained model's maps are compared with those of the same architecture with random weights by
Spearman rank correlation; a method whose maps barely change (high correlation) fails.
"""

from __future__ import annotations

import logging

from dataclasses import replace

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers import AutoModelForImageClassification

from ..modeling import is_transformer
from .explainer import Explainer
from .options import ExplanationOptions

logger = logging.getLogger(__name__)

# Above this mean rank correlation a method's maps are "barely changed" by destroying the model.
MAX_SPEARMAN = 0.5


def randomized_copy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture and config with freshly initialised (random) weights."""
    torch.manual_seed(seed)
    kwargs = {"attn_implementation": "eager"} if is_transformer(model.config) else {}
    return AutoModelForImageClassification.from_config(model.config, **kwargs).eval()


def randomization_check(model, processor, images, methods=None, seed: int = 0,
                        max_spearman: float = MAX_SPEARMAN,
                        options: ExplanationOptions = ExplanationOptions()) -> dict[str, dict]:
    """Per method: mean and per-image Spearman correlation of trained vs random-weight maps, and
    whether the method passes (mean correlation below `max_spearman`)."""
    trained, random = Explainer(model, processor), Explainer(randomized_copy(model, seed), processor)
    options = replace(options, methods=tuple(methods)) if methods else options
    correlations: dict[str, list[float]] = {}
    unavailable = {}
    for image in images:
        reference = trained.explain(image, options=options)
        unavailable.update(reference.unavailable)
        randomised = random.explain(image, reference.explained_index, options)
        for method, trained_map in reference.input_maps.items():
            rho = spearmanr(trained_map.ravel(), randomised.input_maps[method].ravel()).statistic
            correlations.setdefault(method, []).append(float(np.nan_to_num(rho)))
    report = {
        method: {"spearman_mean": float(np.mean(values)), "spearman_per_image": values,
                 "passed": bool(np.mean(values) < max_spearman), "max_spearman": max_spearman}
        for method, values in correlations.items()
    }
    report.update({method: {"unavailable": reason} for method, reason in unavailable.items()})
    return report


def sanity_table(report: dict[str, dict]) -> str:
    """Markdown table of a `randomization_check` report."""
    rows = ["| method | Spearman ρ, trained vs random weights (mean) | images | verdict |", "|---|---:|---:|---|"]
    for method, result in report.items():
        if "unavailable" in result:
            rows.append(f"| {method} | n/a | 0 | not available: {result['unavailable']} |")
        else:
            verdict = "pass" if result["passed"] else "FAIL (maps barely depend on the weights)"
            rows.append(f"| {method} | {result['spearman_mean']:.3f} | {len(result['spearman_per_image'])} | {verdict} |")
    return "\n".join(rows)


def sanity_section(report: dict[str, dict], num_images: int, command_line: str) -> str:
    """The card's section: the test, the table and the command."""
    return ("Model-parameter randomisation test (Adebayo et al. 2018): each method's maps from this model are "
            "compared with the maps of the same architecture with random weights, by Spearman rank correlation; "
            f"a method passes when the mean correlation is below {MAX_SPEARMAN}. {num_images} images.\n\n"
            f"{sanity_table(report)}\n\nCommand: `{command_line}`")
