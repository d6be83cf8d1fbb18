"""Does this decision hold? One image under every acquisition change of the stress suite.

The stress suite (`stress.py`) answers for a data set; this answers for the image in front of a person:
the shown probability and the decision under each change (framing, film shape, burned-in text, devices,
exposure, processing, detector), seeded as the suite seeds them, so one image always gets the same
answer. A decision that holds under every change is not thereby correct; a change that flips it names a
shortcut the model may be using on this image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable

from PIL import Image

from .presentation import percent
from .stress import STRESS_SUITE, StressChange

# A batch of changed images per forward pass: memory stays small at any resolution, the passes few.
BATCH_SIZE = 9


@dataclass(frozen=True)
class ChangeOutcome:
    name: str
    group: str
    description: str
    probability: float  # the shown probability of the positive class
    decision: str
    flipped: bool


@dataclass
class RobustnessCheck:
    decision: str  # of the unchanged image
    probability: float
    threshold: float
    positive_label: str
    outcomes: list[ChangeOutcome] = field(default_factory=list)
    withheld: str | None = None  # why no decision was checked (not a chest radiograph)
    seed: int = 0

    @property
    def flipped(self) -> list[ChangeOutcome]:
        return [outcome for outcome in self.outcomes if outcome.flipped]

    @property
    def held(self) -> int:
        """How many changes keep the decision."""
        return len(self.outcomes) - len(self.flipped)

    def sentence(self) -> str:
        """The answer in one sentence."""
        if self.withheld:
            return f"No decision to check: {self.withheld}"
        answer = f"The decision {self.decision} holds under {self.held} of {len(self.outcomes)} changes"
        if not self.flipped:
            return answer + "."
        flips = "; ".join(f"{outcome.description} ({outcome.name}) to {outcome.decision}" for outcome in self.flipped)
        return f"{answer}; {'this one flips' if len(self.flipped) == 1 else 'these flip'} it: {flips}."

    def record(self) -> dict:
        return {"decision": self.decision, "probability": self.probability, "threshold": self.threshold,
                "positive_label": self.positive_label, "seed": self.seed, "withheld": self.withheld,
                "held": self.held, "changes": len(self.outcomes),
                "flipped": [outcome.name for outcome in self.flipped], "sentence": self.sentence(),
                "outcomes": [outcome.__dict__ for outcome in self.outcomes]}

    def figure_png(self) -> bytes:
        """The shown probability under each change, the threshold as a line, flips marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        outcomes = self.outcomes
        figure, axis = plt.subplots(figsize=(7.2, 0.22 * len(outcomes) + 1.6), dpi=100)
        rows = range(len(outcomes))
        colours = ["#d62728" if outcome.flipped else "#3b6fb6" for outcome in outcomes]
        axis.scatter([outcome.probability for outcome in outcomes], rows, c=colours, s=28, zorder=3,
                     marker="o")
        axis.axvline(self.threshold, color="#d62728", linestyle="--", linewidth=1.2,
                     label=f"operating threshold {percent(self.threshold)}")
        axis.axvline(self.probability, color="#777", linewidth=1, label=f"unchanged image {percent(self.probability)}")
        axis.set_yticks(list(rows), [f"{outcome.name}{'  (flips)' if outcome.flipped else ''}" for outcome in outcomes],
                        fontsize=7)
        for label, outcome in zip(axis.get_yticklabels(), outcomes):
            label.set_color("#d62728" if outcome.flipped else "#222")
        axis.set(xlim=(0, 1), xlabel=f"shown probability of {self.positive_label}")
        axis.invert_yaxis()
        axis.grid(axis="x", alpha=0.3)
        axis.set_title(f"Does the decision {self.decision} hold? {self.held} of {len(outcomes)} changes keep it",
                       fontsize=9)
        axis.legend(loc="lower left", fontsize=7, framealpha=0.9)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        return buffer.getvalue()

    def figure(self) -> Image.Image:
        return Image.open(io.BytesIO(self.figure_png()))


def check_image(image: Image.Image, probability: float, predict: Callable[[list[Image.Image]], list[float]],
                decide: Callable[[float], str], threshold: float, positive_label: str,
                changes: tuple[StressChange, ...] = STRESS_SUITE, seed: int = 0,
                batch_size: int = BATCH_SIZE) -> RobustnessCheck:
    """Each change of `image` (whose shown probability of the positive class is `probability`) through
    `predict` (images -> those probabilities, one batch a call); every change seeded by (`seed`, its name,
    image index 0) as the suite does."""
    decision = decide(probability)
    changed = [change(image, seed, 0) for change in changes]
    probabilities = [p for start in range(0, len(changed), batch_size) for p in predict(changed[start:start + batch_size])]
    outcomes = [ChangeOutcome(change.name, change.group, change.description, float(p), decide(p), decide(p) != decision)
                for change, p in zip(changes, probabilities, strict=True)]
    return RobustnessCheck(decision, float(probability), threshold, positive_label, outcomes, seed=seed)


def withheld_check(warning: str, probability: float, threshold: float, positive_label: str) -> RobustnessCheck:
    """The answer for an image that is not a chest radiograph: it has no decision to check."""
    return RobustnessCheck("not a chest radiograph", probability, threshold, positive_label, withheld=warning)
