"""How the app presents each method, from the faithfulness measured for this very model.

`explain.py faithfulness --out MODEL/eval/faithfulness.json` stores the measurement with the model, so
it travels with the weights (same Hub revision). Every method is always shown: the measurement decides
the order (passing methods by rank, then unmeasured ones, then failing ones) and the verdict each
caption gives, never whether the map is returned. Without a measurement, every method is shown in
registry order and the caption says it was not measured.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from ..modeling import ModelSource, model_file
from .faithfulness import RANDOM, baseline_title, interval_text, metric_title
from .method import REGISTRY

logger = logging.getLogger(__name__)

FAITHFULNESS_FILE = "eval/faithfulness.json"
NOT_MEASURED = "Faithfulness not measured for this model."
QUOTED_METRICS = ("insertion_blur", "deletion_blur")  # the two the captions quote; the card has them all


@dataclass(frozen=True)
class MethodStanding:
    name: str
    passes: bool | None  # None: not measured for this model
    note: str  # the method's measured faithfulness, in a sentence or two for its caption

    @property
    def verdict(self) -> str:
        return {True: "passed", False: "failed", None: "not measured"}[self.passes]


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
        return [MethodStanding(name, None, NOT_MEASURED) for name in methods]
    ranked = [name for name in summary["ranking"] if name in methods]
    passing = [name for name in ranked if summary["verdicts"][name]["passes"]]
    failing = [name for name in ranked if name not in passing]
    return ([MethodStanding(name, True, _pass_note(summary, name, rank, len(ranked)))
             for rank, name in enumerate(passing, start=1)]
            + [MethodStanding(name, None, NOT_MEASURED) for name in methods if name not in ranked]
            + [MethodStanding(name, False, _fail_note(summary, name, rank, len(ranked)))
               for rank, name in enumerate(failing, start=len(passing) + 1)])


def _against(summary: dict, name: str) -> str:
    return baseline_title(summary.get("baselines", {}).get(name, RANDOM))


def _intervals(summary: dict, name: str) -> dict:
    return summary.get("vs_baseline", summary["vs_random"])[name]


def _pass_note(summary: dict, name: str, rank: int, of: int) -> str:
    quoted = ", ".join(f"{metric_title(metric)} {interval_text(_intervals(summary, name)[metric], digits=2)}"
                       for metric in QUOTED_METRICS if metric in _intervals(summary, name))
    return (f"Faithfulness: passed, {rank} of {of} on this model. Better than {_against(summary, name)} by "
            f"{quoted} (log-odds area, 95 % interval, {summary['images']} validation images).")


def _fail_note(summary: dict, name: str, rank: int, of: int) -> str:
    failed = summary["verdicts"][name].get("failed") or [m for m in QUOTED_METRICS if m in _intervals(summary, name)]
    quoted = ", ".join(f"{metric_title(metric)} {interval_text(_intervals(summary, name)[metric], digits=2)}"
                       for metric in failed)
    return (f"Faithfulness: failed, {rank} of {of} on this model. On {summary['images']} validation images it "
            f"did not beat {_against(summary, name)} on {quoted} (log-odds area, 95 % interval). Its bright "
            "regions are not reliably the ones the model uses: read it as a view of the model, not as evidence "
            "for this decision.")
