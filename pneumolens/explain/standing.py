"""How the app presents each method, from the faithfulness measured for this very model.

`explain.py faithfulness --out MODEL/eval/faithfulness.json` stores the measurement with the model, so
it travels with the weights (same Hub revision). Methods that beat a random map are shown, most faithful
first; a method that does not is not presented as an explanation, and its caption says why. Without a
measurement, every method is shown in registry order and the caption says it was not measured.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from ..modeling import ModelSource, model_file
from .faithfulness import interval_text, metric_title
from .method import REGISTRY

logger = logging.getLogger(__name__)

FAITHFULNESS_FILE = "eval/faithfulness.json"
NOT_MEASURED = "Faithfulness not measured for this model."
QUOTED_METRICS = ("insertion_blur", "deletion_blur")  # the two the captions quote; the card has them all


@dataclass(frozen=True)
class MethodStanding:
    name: str
    shown: bool
    note: str  # the method's measured faithfulness, in a sentence for its caption


def load_faithfulness(source: ModelSource) -> dict | None:
    """The summary over all measured images from the model's faithfulness file, or None."""
    path = model_file(source, FAITHFULNESS_FILE)
    if path is None:
        return None
    try:
        return json.loads(path.read_text())["summary"]["all"]
    except (ValueError, KeyError) as error:
        logger.warning("Ignoring %s of %s: %s", FAITHFULNESS_FILE, source.name_or_path, error)
        return None


def method_standings(summary: dict | None, methods=None) -> list[MethodStanding]:
    """Every method, in the order to present them: passing ones by rank, unmeasured ones, failing ones."""
    methods = list(methods or REGISTRY)
    if not summary or not summary.get("ranking"):
        return [MethodStanding(name, True, NOT_MEASURED) for name in methods]
    ranked = [name for name in summary["ranking"] if name in methods]
    passing = [name for name in ranked if summary["verdicts"][name]["passes"]]
    standings = [MethodStanding(name, True, _rank_note(summary, name, rank, len(passing)))
                 for rank, name in enumerate(passing, start=1)]
    standings += [MethodStanding(name, True, NOT_MEASURED) for name in methods if name not in ranked]
    standings += [MethodStanding(name, False, f"Measured on {summary['images']} validation images, it "
                                 f"{summary['verdicts'][name]['reason']}, so its map would not show what the model used.")
                  for name in ranked if name not in passing]
    return standings


def _rank_note(summary: dict, name: str, rank: int, of: int) -> str:
    quoted = ", ".join(f"{metric_title(metric)} {interval_text(summary['vs_random'][name][metric], digits=2)}"
                       for metric in QUOTED_METRICS if metric in summary["vs_random"][name])
    return (f"Faithfulness: {rank} of {of} on this model. Better than a random map by {quoted} "
            f"(log-odds area, 95 % interval, {summary['images']} validation images).")
