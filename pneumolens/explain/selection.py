"""Method settings chosen by measurement, per model: which layer and CAM Grad-CAM uses, how rollout fuses
heads and what it discards.

Every candidate's maps are scored on the same images with the same curves as `faithfulness` (each map
against the random map of its own granularity), and per method the candidate whose worst 95 % interval
lower bound over the deletion and insertion curves is highest wins: the verdict asks every one of those
intervals to clear zero, so that is the margin a choice has. Choose on one part of the carved validation
split and confirm with `explain.py faithfulness` on the other part (`data.validation_parts`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path

import numpy as np

from ..data import balanced_sample, image_name, image_sources, model_label_ids, validation_parts
from ..modeling import TRANSFORMER, ModelSource, load_model_and_processor
from ..preprocessing import input_size
from .layout import LAYER_PARTS, layout_of
from .explainer import Explainer
from .faithfulness import (CURVES, FaithfulnessSettings, ImageRecord, baseline_name, image_scores,
                           measure_faithfulness, summarise, with_random_map)
from .options import SETTINGS_FILE, ExplanationOptions
from .standing import FAITHFULNESS_FILE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    method: str
    settings: tuple[tuple[str, object], ...]  # (name, value) pairs of `options.TUNABLE` settings

    @property
    def key(self) -> str:
        return f"{self.method}[{', '.join(f'{name}={value}' for name, value in self.settings)}]"

    def options(self, base: ExplanationOptions = ExplanationOptions()) -> ExplanationOptions:
        return replace(base, methods=(self.method,), **dict(self.settings))


def candidates(kind: str, blocks: int, gradcam_layers=None, cams=("gradcam",), head_fusions=("mean", "max"),
               discard_ratios=(0.0, 0.5)) -> list[Candidate]:
    """Grad-CAM on every (layer, CAM) pair and, for transformers, rollout on every (fusion, discard) pair.

    Default layers: every part of the last three blocks (transformers), the last three stages (ConvNeXt).
    """
    if gradcam_layers is None:
        last = range(max(0, blocks - 3), blocks)
        gradcam_layers = [f"{block}.{part}" for block in last for part in LAYER_PARTS[kind]]
    found = [Candidate("gradcam", (("gradcam_layer", layer), ("cam", cam))) for layer, cam in product(gradcam_layers, cams)]
    if kind == TRANSFORMER:
        found += [Candidate("rollout", (("head_fusion", fusion), ("discard_ratio", float(ratio))))
                  for fusion, ratio in product(head_fusions, discard_ratios)]
    return found


def margin(intervals: dict[str, dict]) -> tuple[float, float]:
    """(the lowest 95 % lower bound over the deletion and insertion curves, their mean improvement)."""
    curves = [metric for metric in intervals if metric.split("_")[0] in CURVES]
    return (min(intervals[m]["low"] for m in curves), float(np.mean([intervals[m]["mean"] for m in curves])))


def choose(summary: dict, found: list[Candidate]) -> dict[str, Candidate]:
    """Per method, the candidate whose worst lower bound against its random map is highest."""
    return {method: max((c for c in found if c.method == method), key=lambda c: margin(summary["vs_baseline"][c.key]))
            for method in dict.fromkeys(candidate.method for candidate in found)}


def select_settings(explainer, images, labels, found: list[Candidate],
                    settings: FaithfulnessSettings = FaithfulnessSettings(steps=8, road_percentiles=()),
                    progress=None, resamples: int = 2000, data: str = "") -> dict:
    """Score every candidate on `images`; return what `options.SETTINGS_FILE` stores: the chosen settings,
    and under "selection" every candidate's scores and `data`, where the images came from."""
    rng = np.random.default_rng(settings.seed)
    records, baselines = [], {}
    for index in (progress or iter)(range(len(images))):
        rgb, pixels, layout = explainer.prepare(images[index])
        maps, granularity, explained_index = {}, {}, None
        for candidate in found:
            explanation = explainer.explain_prepared(rgb, pixels, layout, None, candidate.options())
            maps[candidate.key] = explanation.input_maps[candidate.method]
            granularity[candidate.key] = explanation.granularity[candidate.method]
            explained_index = explanation.explained_index
        baselines.update({key: baseline_name(grid) for key, grid in granularity.items()})
        scores = image_scores(explainer.model, pixels, with_random_map(maps, rng, granularity), explained_index, settings, rng)
        label = None if labels is None or labels[index] is None else int(labels[index])
        records.append(ImageRecord(f"image-{index}", label, explained_index, scores))
    keys = [candidate.key for candidate in found]
    summary = summarise(records, keys, settings.metrics(), settings.seed, resamples, baselines)
    chosen = choose(summary, found)
    scored = [{"method": c.method, "settings": dict(c.settings), "key": c.key, "baseline": baselines[c.key],
               "margin": margin(summary["vs_baseline"][c.key])[0], "means": summary["means"][c.key],
               "vs_baseline": summary["vs_baseline"][c.key], "vs_random": summary["vs_random"][c.key]} for c in found]
    selection = {"chosen": {method: candidate.key for method, candidate in chosen.items()}, "candidates": scored,
                 "images": len(records), "data": data,
                 "faithfulness_settings": {"steps": settings.steps, "fills": list(settings.fills), "seed": settings.seed}}
    return {"settings": {name: value for candidate in chosen.values() for name, value in candidate.settings},
            "selection": selection}


def selection_table(selection: dict) -> str:
    """Markdown: every candidate's improvement over its random map per curve, the chosen ones in bold."""
    metrics = [m for m in selection["candidates"][0]["vs_baseline"]]
    rows = ["| candidate | " + " | ".join(metrics) + " | worst lower bound |", "|---|" + "---:|" * (len(metrics) + 1)]
    chosen = set(selection["chosen"].values())
    for entry in sorted(selection["candidates"], key=lambda e: (e["method"], -e["margin"])):
        name = f"**{entry['key']}**" if entry["key"] in chosen else entry["key"]
        cells = [f"{entry['vs_baseline'][m]['mean']:+.2f} [{entry['vs_baseline'][m]['low']:+.2f}, "
                 f"{entry['vs_baseline'][m]['high']:+.2f}]" for m in metrics]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {entry['margin']:+.2f} |")
    return "\n".join(rows)


def selection_markdown(stored: dict, part: str, command_line: str) -> str:
    """The card's section: what was chosen on which images, the table and the command."""
    selection = stored["selection"]
    chosen = ", ".join(f"`{key}`" for key in selection["chosen"].values())
    return (f"Chosen per model by faithfulness on {selection['images']} images of {selection['data']}, part "
            f"'{part}' (the 'confirmation' part, disjoint by patient, is where `explain.py faithfulness` "
            f"then measures them): {chosen}. Each candidate's improvement over the random map of its own "
            f"granularity in log-odds area ({selection['faithfulness_settings']['steps']} steps, paired bootstrap "
            "95 % interval; positive: better); per method the candidate with the highest worst lower bound wins "
            f"(bold).\n\n{selection_table(selection)}\n\nCommand: `{command_line}`")


def choose_settings(explainer, dataset, found: list[Candidate], seed: int, steps: int = 8, progress=None,
                    data: str = "") -> dict:
    """`select_settings` on a data set's images and labels: the record `options.SETTINGS_FILE` stores, with
    the images' names. A misspelt Grad-CAM layer fails before any curve is drawn."""
    layout = layout_of(explainer.model, input_size(explainer.processor))
    for candidate in found:
        layout.cam_layer(dict(candidate.settings).get("gradcam_layer"))
    settings = FaithfulnessSettings(steps=steps, road_percentiles=(), seed=seed)
    stored = select_settings(explainer, image_sources(dataset), model_label_ids(dataset, explainer.model.config),
                             found, settings, progress, data=data)
    stored["selection"]["image_names"] = [image_name(image) for image in dataset.with_format(None)["image"]]
    return stored


def choose_and_confirm(model_dir, validation, seed: int, selection_images: int, confirmation_images: int,
                       steps: int = 8, progress=None) -> tuple[dict, dict]:
    """`explain.py select` then `explain.py faithfulness`, for `train_hf.py` at the end of training: settings
    chosen on the selection half of `validation` (the carved split), measured on the confirmation half,
    both stored in `model_dir` (`options.SETTINGS_FILE`, `standing.FAITHFULNESS_FILE`)."""
    explainer = Explainer(*load_model_and_processor(ModelSource(str(model_dir))))
    layout = layout_of(explainer.model, input_size(explainer.processor))
    parts = validation_parts(validation, seed)
    stored = choose_settings(explainer, balanced_sample(parts["selection"], selection_images, seed),
                             candidates(layout.kind, len(layout.blocks)), seed, steps, progress,
                             data="the carved validation split's 'selection' half (train_hf.py)")
    measured = measure_faithfulness(explainer, balanced_sample(parts["confirmation"], confirmation_images, seed),
                                    FaithfulnessSettings(steps=steps, road_percentiles=(), seed=seed),
                                    ExplanationOptions().with_settings(stored["settings"]), progress)
    for name, result in ((SETTINGS_FILE, stored), (FAITHFULNESS_FILE, measured)):
        write_json(Path(model_dir) / name, result)
    logger.info("Explanation settings %s; faithfulness verdicts %s", stored["settings"],
                {m: v["passes"] for m, v in measured["summary"]["all"]["verdicts"].items()})
    return stored, measured


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
