"""Does this decision hold? One image under every acquisition change of the stress suite.

The stress suite (`stress.py`) answers for a data set; this answers for the image in front of a person:
the shown probability and the decision under each change (framing, film shape, burned-in text, devices,
exposure, processing, detector), seeded as the suite seeds them, so one image always gets the same
answer. A decision that holds under every change is not thereby correct; a change that flips it names a
shortcut the model may be using on this image.

With a referral band, the answer is one of three: a class, or "refer" (a person should read the film). A
change that moves a decided film into the band refers it; only a change after which the film is decided
as the other class flips it. A film the model's stability rule refers (its answer does not hold under a few
of these changes) is checked as the decided film it leans to, and the answer says why it is referred.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from PIL import Image

from .decision import INSIDE_BAND, NOT_A_RADIOGRAPH, ReferralBand
from .stress import STRESS_SUITE, StressChange

# A batch of changed images per forward pass: memory stays small at any resolution, the passes few.
BATCH_SIZE = 9


@dataclass(frozen=True)
class ChangeOutcome:
    name: str
    group: str
    description: str
    probability: float  # the shown probability of the positive class
    decision: str  # the class at the threshold
    flipped: bool  # decided as the other class (outside the referral band)
    referred: bool = False  # inside the referral band


@dataclass
class RobustnessCheck:
    decision: str  # of the unchanged image
    probability: float
    threshold: float
    positive_label: str
    outcomes: list[ChangeOutcome] = field(default_factory=list)
    withheld_reason: str | None = None  # why no decision was checked (not a chest radiograph)
    seed: int = 0
    in_band: bool = False  # the unchanged film lies inside the referral band
    band: ReferralBand | None = None
    refer_reason: str | None = None  # why the unchanged film is referred (None: decided)

    @property
    def refer(self) -> bool:
        """Whether the unchanged film is referred to a person: inside the band, or by the stability rule."""
        return self.refer_reason is not None

    @property
    def withheld(self) -> bool:
        """Whether no decision was checked, because the image does not look like a chest radiograph."""
        return self.withheld_reason is not None

    @property
    def flipped(self) -> list[ChangeOutcome]:
        return [outcome for outcome in self.outcomes if outcome.flipped]

    @property
    def referred(self) -> list[ChangeOutcome]:
        """The changes that move a decided film into the referral band."""
        return [] if self.in_band else [outcome for outcome in self.outcomes if outcome.referred]

    @property
    def decided(self) -> list[ChangeOutcome]:
        """The changes that move a referred film out of the band, to a decided class."""
        return [outcome for outcome in self.outcomes if not outcome.referred] if self.in_band else []

    @property
    def held(self) -> int:
        """How many changes keep the answer: the same decided class, or, for a referred film, the referral."""
        return sum(outcome.referred == self.in_band and not outcome.flipped for outcome in self.outcomes)

    def sentence(self) -> str:
        """The answer in one sentence."""
        if self.withheld:
            return f"No decision to check: {self.withheld_reason}"
        changes = len(self.outcomes)
        if self.in_band:
            answer = (f"This film is referred to a person (it leans to {self.decision}); it stays referred under "
                      f"{self.held} of {changes} changes")
            if self.decided:
                answer += f"; {_named(self.decided, 'decides', 'decide')} it: " + "; ".join(
                    f"{outcome.description} ({outcome.name}) to {outcome.decision}" for outcome in self.decided)
            return answer + "."
        answer = f"The decision {self.decision} holds under {self.held} of {changes} changes"
        if self.refer:
            answer = (f"This film is referred to a person: its answer {self.refer_reason}, so it is not decided "
                      f"(it leans to {self.decision}). {answer}")
        if self.flipped:
            answer += f"; {_named(self.flipped, 'flips', 'flip')} it: " + "; ".join(
                f"{outcome.description} ({outcome.name}) to {outcome.decision}" for outcome in self.flipped)
        if self.referred:
            answer += (f"; {_named(self.referred, 'moves', 'move')} it into the referral band, where a person "
                       "should read it: " + "; ".join(f"{outcome.description} ({outcome.name})"
                                                      for outcome in self.referred))
        return answer + "."

    def record(self) -> dict:
        return {"decision": self.decision, "refer": self.refer, "refer_reason": self.refer_reason,
                "referral_band": self.band.record() if self.band else None, "probability": self.probability,
                "threshold": self.threshold, "positive_label": self.positive_label, "seed": self.seed,
                "withheld": self.withheld, "withheld_reason": self.withheld_reason, "held": self.held, "changes": len(self.outcomes),
                "flipped": [outcome.name for outcome in self.flipped],
                "referred": [outcome.name for outcome in self.referred],
                "decided": [outcome.name for outcome in self.decided], "sentence": self.sentence(),
                "outcomes": [outcome.__dict__ for outcome in self.outcomes]}


def _named(outcomes: list, one: str, several: str) -> str:
    return f"this one {one}" if len(outcomes) == 1 else f"these {several}"


def check_image(image: Image.Image, probability: float, predict: Callable[[list[Image.Image]], list[float]],
                decide: Callable[[float], str], threshold: float, positive_label: str,
                changes: tuple[StressChange, ...] = STRESS_SUITE, seed: int = 0,
                batch_size: int = BATCH_SIZE, band: ReferralBand | None = None,
                refer_reason: str | None = None) -> RobustnessCheck:
    """Each change of `image` (whose shown probability of the positive class is `probability`) through
    `predict` (images -> those probabilities, one batch a call); every change seeded by (`seed`, its name,
    image index 0) as the suite does. With a referral `band`, a change is a flip only where the changed film
    is decided (outside the band) as the other class. `refer_reason` is why the unchanged film is referred
    where it is (`decision.referral`); by default, inside the band."""
    decision = decide(probability)
    refers = (lambda p: bool(band.refers(p))) if band is not None else (lambda p: False)
    changed = [change(image, seed, 0) for change in changes]
    probabilities = [p for start in range(0, len(changed), batch_size) for p in predict(changed[start:start + batch_size])]
    outcomes = [ChangeOutcome(change.name, change.group, change.description, float(p), decide(p),
                              decide(p) != decision and not refers(p), refers(p))
                for change, p in zip(changes, probabilities, strict=True)]
    in_band = refers(probability)
    return RobustnessCheck(decision, float(probability), threshold, positive_label, outcomes, seed=seed,
                           in_band=in_band, band=band, refer_reason=INSIDE_BAND if in_band else refer_reason)


def withheld_check(warning: str, probability: float, threshold: float, positive_label: str) -> RobustnessCheck:
    """The answer for an image that is not a chest radiograph: it has no decision to check."""
    return RobustnessCheck(NOT_A_RADIOGRAPH, probability, threshold, positive_label, withheld_reason=warning)
