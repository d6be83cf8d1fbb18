"""How the maps are made: the settings every method reads, and the file that stores the measured choice
of them with a model.

`explain.py select` chooses the settings per model by faithfulness on one part of the carved validation
split and writes them to `eval/explanation_settings.json` beside `eval/faithfulness.json` (same Hub
revision as the weights); the app, the command line and the reports read them from there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields, replace

from ..modeling import ModelSource, model_file

logger = logging.getLogger(__name__)

SETTINGS_FILE = "eval/explanation_settings.json"
# The settings a selection may choose (the rest say what to compute, not how).
TUNABLE = ("gradcam_layer", "cam", "head_fusion", "discard_ratio")


@dataclass(frozen=True)
class ExplanationOptions:
    methods: tuple[str, ...] | None = None  # None: every registered method
    head_fusion: str = "mean"  # attention rollout: how heads are fused (mean, max, min)
    discard_ratio: float = 0.0  # attention rollout: share of the weakest attention weights dropped
    gradient_rollout: bool = False  # class-specific rollout: attention weighted by its gradient
    smoothgrad_samples: int = 0  # saliency: 0 = vanilla gradient, N = SmoothGrad over N noisy copies
    noise_level: float = 0.15  # SmoothGrad noise, as a share of the input's value range
    seed: int = 0
    # Grad-CAM: the layer it reads, "BLOCK.PART" (block index into the backbone's blocks or stages,
    # negative from the end; part norm1, norm2 or output, see `layout.LAYER_PARTS`; None: the family's
    # default), and which CAM of the grad-cam package turns its activations and gradients into a map.
    gradcam_layer: str | None = None
    cam: str = "gradcam"

    def tuned(self) -> dict:
        """The settings a selection chooses, as stored in `SETTINGS_FILE`."""
        return {name: getattr(self, name) for name in TUNABLE}

    def with_settings(self, settings: dict) -> "ExplanationOptions":
        """These options with stored settings applied (unknown keys are refused, by name)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"Unknown explanation settings {unknown}; known: {sorted(known)}")
        return replace(self, **settings)


def load_settings(source: ModelSource) -> dict | None:
    """The stored file (settings and how they were chosen) of a model, or None if it has none."""
    path = model_file(source, SETTINGS_FILE)
    if path is None:
        return None
    try:
        stored = json.loads(path.read_text())
        ExplanationOptions().with_settings(stored["settings"])
        return stored
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("Ignoring %s of %s: %s", SETTINGS_FILE, source.name_or_path, error)
        return None


def options_for(source: ModelSource, **overrides) -> ExplanationOptions:
    """The options a model's stored settings give (defaults where it has none), then `overrides`."""
    stored = load_settings(source)
    options = ExplanationOptions().with_settings(stored["settings"]) if stored else ExplanationOptions()
    return replace(options, **overrides)
