"""The decision rule at run time, and nothing else: what the page, the API, the report, the command line
and evaluation all apply to a model's logits.

- The **shown probabilities**: the calibration saved with the model (Platt scaling of the logit
  difference, `probability_calibration` in its config), else the softmax.
- The **decision** at the model's operating threshold (`operating_threshold`) on the shown probability of
  the positive class; since the threshold is folded into the classifier, that is also the top logit.
- **No class** ("not a chest radiograph") where the out-of-distribution check flags the image.
- **Refer** where the shown probability lies inside the model's referral band (`referral_band`): the
  decision stays the class at the threshold, which the film leans to, but a person should read the film.
  Also where the model has a stability rule (`referral_stability`) and the answer does not hold: a film
  decided near the band whose probability enough of a few acquisition changes move into the band or
  across the threshold. Choosing both lives in `referral.py`; making the changed copies, in the service.

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
STABILITY_KEY = "referral_stability"
INSIDE_BAND = "inside the band"
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

    def record(self) -> dict:
        """What a record carries: the two bounds on the shown probability of the positive class."""
        return {"lower": self.lower, "upper": self.upper}


@dataclass(frozen=True)
class StabilityRule:
    """The second reason to refer: a film decided outside the band is referred when at least `min_moved` of
    `changes` (stress-suite changes, made as for a served film) move its shown probability into the band or
    across the threshold. Only films within `zone_width` log-odds of the threshold are checked: on the
    validation films no film further out was moved by any of the changes, so elsewhere the check costs
    nothing."""

    changes: tuple[str, ...]
    min_moved: int
    zone_width: float

    @classmethod
    def of(cls, config) -> "StabilityRule | None":
        saved = getattr(config, STABILITY_KEY, None)
        if not saved or not ReferralBand.of(config):
            return None
        return cls(tuple(saved["changes"]), int(saved["min_moved"]), float(saved["zone_width"]))

    def saved(self) -> dict:
        """What `config.json` holds under `referral_stability`."""
        return {"changes": list(self.changes), "min_moved": self.min_moved, "zone_width": self.zone_width}

    def checks(self, positive_probability: float, band: ReferralBand, threshold: float) -> bool:
        """Whether a film is checked: decided outside the band, but within the zone around it."""
        margin = abs(_log_odds(positive_probability) - _log_odds(threshold))
        return not band.refers(positive_probability) and margin <= self.zone_width

    def moved(self, positive_probability: float, changed: dict[str, float], band: ReferralBand,
              threshold: float) -> tuple[str, ...]:
        """The changes (of `changed`, {name: shown probability of the changed film}) after which the film is
        no longer decided as it was: inside the band, or on the other side of the threshold."""
        side = positive_probability >= threshold
        return tuple(name for name, p in changed.items() if bool(band.refers(p)) or (p >= threshold) != side)

    def reason(self, moved: tuple[str, ...]) -> str:
        return f"moves into the band under {len(moved)} of the {len(self.changes)} changes: {', '.join(moved)}"


@dataclass(frozen=True)
class Referral:
    """Whether a person should read a film, and why: `reason` is `INSIDE_BAND` or the stability rule's words
    (None when decided); `checked` the changes run for the stability rule (empty: not checked), `moved`
    those that moved the film."""

    refer: bool = False
    reason: str | None = None
    checked: tuple[str, ...] = ()
    moved: tuple[str, ...] = ()
    probabilities: tuple[float, ...] = ()  # the shown probability of the positive class after each change checked

    @property
    def unstable(self) -> bool:
        """Referred by the stability rule, not by the band."""
        return self.refer and self.reason != INSIDE_BAND

    def record(self) -> dict:
        return {"refer": self.refer, "refer_reason": self.reason,
                "stability_check": {"changes": list(self.checked), "probabilities": list(self.probabilities),
                                    "moved": list(self.moved)} if self.checked else None}

    def changed_probability(self, name: str) -> float:
        return self.probabilities[self.checked.index(name)]


def referral(config, probabilities: dict[str, float], ood: dict, changed: dict[str, float] | None = None) -> Referral:
    """The one referral rule: never for an image the out-of-distribution check flags (it has no decision to
    refer), nor for a model without a band; inside the band; or, with the model's stability rule, where
    `changed` (the shown probability of the positive class under each of the rule's changes, for a film the
    rule `checks`) moves it often enough."""
    band = ReferralBand.of(config)
    if band is None or ood.get("flagged"):
        return Referral()
    p = probabilities[config.id2label[positive_index(config)]]
    if band.refers(p):
        return Referral(True, INSIDE_BAND)
    rule = StabilityRule.of(config)
    if rule is None or not changed:
        return Referral()
    moved = rule.moved(p, changed, band, operating_threshold(config))
    unstable = len(moved) >= rule.min_moved
    return Referral(unstable, rule.reason(moved) if unstable else None, tuple(changed), moved,
                    tuple(float(p) for p in changed.values()))


def stability_checks(config, probabilities: dict[str, float], ood: dict) -> tuple[str, ...]:
    """The changes to make of this film for its referral (`referral`): none unless the model has a
    stability rule and the film lies in its zone, decided."""
    band, rule = ReferralBand.of(config), StabilityRule.of(config)
    if rule is None or ood.get("flagged"):
        return ()
    p = probabilities[config.id2label[positive_index(config)]]
    return rule.changes if rule.checks(p, band, operating_threshold(config)) else ()


def _log_odds(p: float) -> float:
    p = float(np.clip(p, 1e-12, 1 - 1e-12))
    return float(np.log(p / (1 - p)))


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


def referral_fields(config, referral_answer: Referral) -> dict:
    """`refer`, `refer_reason`, `stability_check` and `referral_band` (its bounds, None without one), as every
    record carries them."""
    band = ReferralBand.of(config)
    return {**referral_answer.record(), "referral_band": band.record() if band else None}
