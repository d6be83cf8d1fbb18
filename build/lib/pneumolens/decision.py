"""The decision rule at run time, and nothing else: what the page, the API, the report, the command line
and evaluation all apply to a model's logits.

- The **shown probabilities**: the calibration saved with the model (Platt scaling of the logit
  difference, `probability_calibration` in its config), else the softmax.
- The **decision** at the model's operating threshold (`operating_threshold`) on the shown probability of
  the positive class; since the threshold is folded into the classifier, that is also the top logit.
- **No class** ("not a chest radiograph") where the out-of-distribution check flags the image.
- **Refer** where the shown probability lies inside the model's referral band (`referral_band`): the
  decision stays the class at the threshold, which the film leans to, but a person should read the film.
  Choosing the band lives in `referral.py`.

Fitting the calibration, folding the threshold and reporting them live in `calibration.py`; this module
only applies two saved floats, so serving needs no scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import PretrainedConfig

from .modeling import negative_label, positive_index

THRESHOLD_KEY = "operating_threshold"
CALIBRATION_KEY = "probability_calibration"
REFERRAL_KEY = "referral_band"
# What is decided for an image the out-of-distribution check flags, in place of a class.
NOT_A_RADIOGRAPH = "not a chest radiograph"


@dataclass(frozen=True)
class Calibration:
    """P(positive) = sigmoid(scale * (z_positive - z_negative) + bias)."""

    scale: float
    bias: float
    method: str = "platt"

    @classmethod
    def of(cls, config) -> "Calibration | None":
        saved = getattr(config, CALIBRATION_KEY, None)
        return cls(float(saved["scale"]), float(saved["bias"]), saved.get("method", "platt")) if saved else None

    def log_odds(self, logit_difference):
        return self.scale * logit_difference + self.bias


@dataclass(frozen=True)
class ReferralBand:
    """The shown probabilities of the positive class strictly between `lower` and `upper` (the operating
    threshold inside) are referred to a person: there, on validation films, the model's decisions were too
    often wrong to stand alone. `width` is the band's half-width in log-odds around the threshold."""

    lower: float
    upper: float
    width: float = 0.0
    target_error: float | None = None  # the error rate among decided films the band was chosen to keep
    confidence: float | None = None  # with this confidence, on the validation films

    @classmethod
    def of(cls, config) -> "ReferralBand | None":
        saved = getattr(config, REFERRAL_KEY, None)
        if not saved:
            return None
        return cls(float(saved["lower"]), float(saved["upper"]), float(saved.get("width", 0.0)),
                   saved.get("target_error"), saved.get("confidence"))

    @classmethod
    def around(cls, threshold: float, width: float, **chosen) -> "ReferralBand":
        """The band `width` log-odds either side of `threshold`."""
        centre = float(np.log(threshold / (1 - threshold)))
        return cls(float(_sigmoid(centre - width)), float(_sigmoid(centre + width)), float(width), **chosen)

    def refers(self, positive_probability):
        """Whether each probability (a float, or an array of them) lies strictly inside the band."""
        return (self.lower < positive_probability) & (positive_probability < self.upper)

    @property
    def bounds(self) -> tuple[float, float]:
        return self.lower, self.upper

    def saved(self) -> dict:
        """What `config.json` holds under `referral_band`."""
        return {"lower": self.lower, "upper": self.upper, "width": self.width, "target_error": self.target_error,
                "confidence": self.confidence}

    def shown(self) -> dict:
        """What a record carries: the two bounds on the shown probability of the positive class."""
        return {"lower": self.lower, "upper": self.upper}


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def logit_difference(config, logits: torch.Tensor) -> torch.Tensor:
    """z_positive - z_negative of (..., 2) logits."""
    positive = positive_index(config)
    return logits[..., positive] - logits[..., 1 - positive]


@torch.no_grad()
def class_probabilities(model, pixel_values: torch.Tensor) -> np.ndarray:
    """The shown probabilities (N, num_labels) of one preprocessed batch: the one forward pass that
    scoring, serving and the stress suite share."""
    inputs = pixel_values.to(model.device, model.dtype)
    return shown_probabilities(model.config, model(pixel_values=inputs).logits).cpu().numpy()


def shown_probabilities(config, logits: torch.Tensor) -> torch.Tensor:
    """The class probabilities PneumoLens shows, (..., num_labels): the calibrated ones where the model
    has a calibration, else the softmax. Float64, so that "P >= threshold" and "top logit" agree to the
    last digit."""
    logits = logits.double()
    calibration = Calibration.of(config)
    if calibration is None:
        return torch.softmax(logits, dim=-1)
    positive = torch.sigmoid(calibration.log_odds(logit_difference(config, logits)))
    columns = [1 - positive, positive] if positive_index(config) == 1 else [positive, 1 - positive]
    return torch.stack(columns, dim=-1)


def operating_threshold(config: PretrainedConfig) -> float:
    """The probability above which the positive class is decided; 0.5 if the model has none saved."""
    return float(getattr(config, THRESHOLD_KEY, None) or 0.5)


def decision_boundary(config) -> float:
    """The logit difference at which the model's decision changes (0 once folded)."""
    threshold = np.clip(operating_threshold(config), 1e-12, 1 - 1e-12)
    log_odds = float(np.log(threshold / (1 - threshold)))
    calibration = Calibration.of(config)
    return log_odds if calibration is None else (log_odds - calibration.bias) / calibration.scale


def decide(config: PretrainedConfig, positive_probability: float, threshold: float | None = None) -> str:
    """The label at `threshold`, by default the model's operating threshold: the one decision rule."""
    if positive_probability >= (operating_threshold(config) if threshold is None else threshold):
        return config.id2label[positive_index(config)]
    return negative_label(config)


def decide_by_label(config: PretrainedConfig, probabilities: dict[str, float]) -> str:
    """The label at the model's operating threshold, from probabilities keyed by label."""
    return decide(config, probabilities[config.id2label[positive_index(config)]])


def decision_index(config: PretrainedConfig, probabilities) -> int:
    """The class index of the decision for one image's probabilities (by class index): the operating
    threshold for a binary model, the most probable class otherwise."""
    if config.num_labels != 2:
        return int(max(range(len(probabilities)), key=lambda index: float(probabilities[index])))
    label = decide(config, float(probabilities[positive_index(config)]))
    return int(config.label2id[label])


def gated_decision(config, probabilities: dict[str, float], ood: dict) -> str:
    """The decision at the model's operating threshold, or `NOT_A_RADIOGRAPH` where the out-of-distribution
    check flags the image: the one rule behind the page, the API, the report and the command line."""
    return NOT_A_RADIOGRAPH if ood.get("flagged") else decide_by_label(config, probabilities)


def refers(config, probabilities: dict[str, float], ood: dict) -> bool:
    """Whether a person should read this film: its shown probability of the positive class lies inside the
    model's referral band. Never for an image the out-of-distribution check flags (it has no decision to
    refer), nor for a model without a band."""
    band = ReferralBand.of(config)
    if band is None or ood.get("flagged"):
        return False
    return bool(band.refers(probabilities[config.id2label[positive_index(config)]]))


def referral_fields(config, probabilities: dict[str, float], ood: dict) -> dict:
    """`refer` and `referral_band` (its bounds, None without one), as every record carries them."""
    band = ReferralBand.of(config)
    return {"refer": refers(config, probabilities, ood), "referral_band": band.shown() if band else None}
