"""The shortcut stress suite: acquisition changes that must not change a diagnosis, and what they do to a model.

For every image of a data set and every change of `STRESS_SUITE`, the model scores the changed image;
per change we report accuracy, ROC-AUC, sensitivity and specificity at the model's threshold, and the
share of decisions that flip against the unchanged image (overall and per true class). Every change is
seeded by (seed, change, image index), so a run is reproducible to the pixel.

A subset, `SELECTION_CHANGES`, makes stressed copies of the carved validation split during training:
checkpoints and the operating threshold are chosen on clean and stressed images together, so selection
rewards a model whose scores do not move with framing or text.

    python evaluate_hf.py --model models/pneumolens-dinov2-small --data_dir DIR --stress
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw
from datasets import Dataset

from . import acquisition as acq
from .data import image_sources
from .decision import ReferralBand, class_probabilities, operating_threshold
from .images import load_image
from .metrics import binary_metrics
from .modeling import negative_label, positive_index
from .preprocessing import pixel_values
from .progress import Progress

logger = logging.getLogger(__name__)

CLEAN = "none"


@dataclass(frozen=True)
class StressChange:
    name: str
    group: str  # framing, aspect, text, devices, exposure, processing or detector
    description: str
    change: Callable[[Image.Image, random.Random], Image.Image]

    def __call__(self, image: Image.Image, seed: int, index: int) -> Image.Image:
        # A string seed is hashed deterministically by `random` (unlike `hash()`), so runs repeat.
        return self.change(image, random.Random(f"{seed}/{self.name}/{index}"))


def _corner(rng: random.Random) -> tuple[float, float]:
    return rng.choice((0.03, 0.9)), rng.choice((0.03, 0.88))


def _mixed_text(image, rng):
    for _ in range(3):
        text, boxed = acq.random_marking(rng)
        image = acq.burn_text(image, text, (rng.random(), rng.random()), rng.uniform(0.04, 0.16),
                              rng.choice((255, 200, 140, 40)), boxed)
    return image


STRESS_SUITE: tuple[StressChange, ...] = (
    StressChange("zoom_centre_80", "framing", "central 80 % of width and height, resized to the frame",
                 lambda im, rng: acq.zoom(im, 0.80 ** 2)),
    StressChange("zoom_centre_65", "framing", "central 65 % of width and height",
                 lambda im, rng: acq.zoom(im, 0.65 ** 2)),
    StressChange("zoom_centre_55", "framing", "central 55 % of width and height (the strongest zoom)",
                 lambda im, rng: acq.zoom(im, 0.55 ** 2)),
    StressChange("zoom_offcentre_65", "framing", "65 % window, centre moved up to 12 % of the frame",
                 lambda im, rng: acq.zoom(im, 0.65 ** 2, (0.5 + rng.uniform(-0.12, 0.12), 0.5 + rng.uniform(-0.12, 0.12)))),
    StressChange("letterbox_75", "framing", "shrunk to 75 %, centred on a black border",
                 lambda im, rng: acq.letterbox(im, 0.75, 0.75)),
    StressChange("shift_12", "framing", "moved 12 % right and 8 % down, black fill",
                 lambda im, rng: acq.shift(im, 0.12, 0.08)),
    StressChange("rotate_8", "framing", "rotated 8° (direction random), black corners",
                 lambda im, rng: acq.rotate(im, rng.choice((-8, 8)))),
    StressChange("stretch_narrow_80", "aspect", "anatomy 80 % as wide (a wider film squashed to the square)",
                 lambda im, rng: acq.stretch(im, 0.8)),
    StressChange("stretch_wide_125", "aspect", "anatomy 125 % as wide (a narrower film)",
                 lambda im, rng: acq.stretch(im, 1.25)),
    StressChange("text_laterality", "text", "a boxed R or L marker, 12 % of the height, in a corner",
                 lambda im, rng: acq.burn_text(im, rng.choice("RL"), _corner(rng), 0.12, 235, boxed=True)),
    StressChange("text_timestamp", "text", "an acquisition time HH:MM:SS, 6 % high, at the top or bottom edge",
                 lambda im, rng: acq.burn_text(im, acq.timestamp(rng), (rng.uniform(0.0, 0.6), rng.choice((0.02, 0.92))),
                                               0.06, 210)),
    StressChange("text_device", "text", "a device code and position note, 7 % high, white",
                 lambda im, rng: acq.burn_text(im, f"DR-{rng.randrange(100, 9999)} {rng.choice(acq.POSITION_NOTES)}",
                                               (rng.uniform(0.0, 0.4), rng.choice((0.02, 0.9))), 0.07, 255)),
    StressChange("text_mixed", "text", "three markings anywhere, 4-16 % high, grey levels 40-255",
                 _mixed_text),
    StressChange("leads_3", "devices", "three ECG electrodes with wires to the edge of the frame",
                 lambda im, rng: acq.leads(im, 3, rng)),
    StressChange("tube", "devices", "a tube entering from the top of the frame",
                 lambda im, rng: acq.tube(im, rng)),
    StressChange("gamma_0.6", "exposure", "gamma 0.6 (brighter mid-tones)", lambda im, rng: acq.gamma(im, 0.6)),
    StressChange("gamma_1.7", "exposure", "gamma 1.7 (darker mid-tones)", lambda im, rng: acq.gamma(im, 1.7)),
    StressChange("contrast_0.6", "exposure", "contrast reduced to 60 %", lambda im, rng: acq.contrast(im, 0.6)),
    StressChange("heel_gradient", "exposure", "brightness falling off 25 % towards one side (direction random)",
                 lambda im, rng: acq.exposure_gradient(im, 0.25, rng.uniform(0, 360))),
    StressChange("equalize", "processing", "histogram equalisation", lambda im, rng: acq.equalize(im)),
    StressChange("local_contrast", "processing", "large-scale contrast enhancement (unsharp mask, radius 20 px, 120 %)",
                 lambda im, rng: acq.local_contrast(im, 20, 120)),
    StressChange("blur_1.5", "detector", "Gaussian blur, radius 1.5 px", lambda im, rng: acq.blur(im, 1.5)),
    StressChange("sharpen", "detector", "unsharp mask, 200 %", lambda im, rng: acq.sharpen(im, 200)),
    StressChange("noise_10", "detector", "Gaussian noise, sigma 10 grey levels", lambda im, rng: acq.noise(im, 10, rng)),
    StressChange("jpeg_20", "detector", "JPEG re-compression at quality 20", lambda im, rng: acq.jpeg(im, 20)),
    StressChange("down_up_0.35", "detector", "down-sampled to 35 % and back", lambda im, rng: acq.down_up(im, 0.35)),
)

# One or two per group, the strongest of each, so selection sees every kind of shortcut.
SELECTION_CHANGES = ("zoom_centre_55", "zoom_offcentre_65", "letterbox_75", "stretch_narrow_80", "text_mixed",
                     "leads_3", "gamma_1.7", "local_contrast")


_BY_NAME = {change.name: change for change in STRESS_SUITE}


def stress_change(name: str) -> StressChange:
    if name not in _BY_NAME:
        raise KeyError(f"No stress change '{name}'; known: {list(_BY_NAME)}")
    return _BY_NAME[name]


# --- The suite on a whole data set ------------------------------------------------------------------

def predict_stressed(model, processor, images: list, changes=STRESS_SUITE, seed: int = 0,
                     batch_size: int = 32, positions: list[int] | None = None) -> dict[str, np.ndarray]:
    """Class probabilities {change name: (N, num_labels)}, "none" for the unchanged images.

    Images (anything `load_image` takes) are decoded once per batch and every change is applied to
    the decoded batch, so memory stays at one batch whatever the data set's resolution. A change's random
    placement is seeded by `seed` and the image's position in the data set (`positions`, by default its
    index in `images`), so a share of the data set gets the placements the whole of it would.
    """
    positions = list(range(len(images))) if positions is None else positions

    names = [CLEAN, *(change.name for change in changes)]
    chunks: dict[str, list] = {name: [] for name in names}
    model.eval()
    with Progress(len(images) * len(names), "Stress suite", "images", logger) as counter:
        for start in range(0, len(images), batch_size):
            decoded = [load_image(image) for image in images[start:start + batch_size]]
            for name in names:
                batch = decoded if name == CLEAN else [
                    stress_change(name)(image, seed, positions[start + offset]) for offset, image in enumerate(decoded)]
                chunks[name].append(class_probabilities(model, pixel_values(processor, batch)))
                counter.advance(len(batch))
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def predict_checked(model, processor, images: list, sets: dict[str, np.ndarray], checks: tuple[str, ...],
                    checked: Callable[[np.ndarray], np.ndarray], seed: int = 0,
                    batch_size: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """Class probabilities {set: {check: (N, num_labels)}} of validation sets under further changes: `sets`
    holds each set's probabilities as `predict_stressed` gives them (the unchanged images, `CLEAN`, and each
    stressed copy, seeded by `seed` and the image's position); each change named in `checks` is made on top
    of the set's copy as a served film gets it (seed 0, index 0), for the films `checked` (a set's
    probabilities -> which films) picks, where the check can matter. The other films' rows are NaN, and
    `CLEAN` holds the set's own probabilities. What the referral's stability rule is chosen on
    (`referral.py`): a film from elsewhere arrives already changed, and is then checked."""
    out = {}
    for set_name, probabilities in sets.items():
        rows = np.flatnonzero(checked(probabilities))
        by_check = {check: np.full_like(probabilities, np.nan) for check in checks}
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            copies = [load_image(images[row]) for row in part]
            if set_name != CLEAN:
                copies = [stress_change(set_name)(image, seed, int(row)) for image, row in zip(copies, part)]
            for check in checks:
                batch = [stress_change(check)(image, 0, 0) for image in copies]
                by_check[check][part] = class_probabilities(model, pixel_values(processor, batch))
        logger.info("Checked %d films of %s under %d changes", len(rows), set_name, len(checks))
        out[set_name] = {CLEAN: probabilities, **by_check}
    return out


def stress_report(truth, probabilities: dict[str, np.ndarray], positive_index: int, threshold: float,
                  band: ReferralBand | None = None) -> dict:
    """Per change: the metrics at `threshold`, the share of flipped decisions against the unchanged
    image (all, true negatives, true positives) and the median positive-class score of true negatives.

    With a referral `band`, also the selective figures (`binary_metrics`) and `moved_into_band`, the share
    of the films decided unchanged that the change moves into the band: referred, not flipped."""
    truth = np.asarray(truth).astype(int)
    clean_decisions = probabilities[CLEAN][:, positive_index] >= threshold
    clean_referred = _referred(probabilities[CLEAN][:, positive_index], band)
    report = {}
    for name, probs in probabilities.items():
        scores = probs[:, positive_index]
        flips = (scores >= threshold) != clean_decisions
        metrics = binary_metrics(truth, scores, threshold, referral_band=band and band.bounds)
        if band is not None:
            metrics["moved_into_band"] = float(np.mean(_referred(scores, band)[~clean_referred])) \
                if (~clean_referred).any() else float("nan")
        metrics.update(
            flip_rate=float(flips.mean()),
            flip_rate_negative=float(flips[truth == 0].mean()) if (truth == 0).any() else float("nan"),
            flip_rate_positive=float(flips[truth == 1].mean()) if (truth == 1).any() else float("nan"),
            median_score_negative=float(np.median(scores[truth == 0])) if (truth == 0).any() else float("nan"),
        )
        if name != CLEAN:
            change = stress_change(name)
            metrics.update(group=change.group, description=change.description)
        else:
            metrics.update(group="clean", description="the images as they are")
        report[name] = metrics
    return report


def run_stress_suite(model, processor, dataset: Dataset, out_dir: str | Path, threshold: float | None = None,
                     changes=STRESS_SUITE, seed: int = 0, batch_size: int = 32,
                     probabilities: dict[str, np.ndarray] | None = None, example=None) -> dict:
    """Score `dataset` (undecoded images, ClassLabel `label`) under every change and write stress.json,
    stress.png (metrics per change) and stress_examples.png (`example`, default the data set's first
    negative image, under each change).

    Labels are matched to the model's by name; the threshold defaults to the model's saved one.
    """
    positive = positive_index(model.config)
    threshold = operating_threshold(model.config) if threshold is None else threshold
    class_names = dataset.features["label"].names
    positive_name = model.config.id2label[positive]
    truth = np.array([class_names[label] == positive_name for label in dataset.with_format(None)["label"]], dtype=int)
    images = image_sources(dataset)
    if probabilities is None:
        probabilities = predict_stressed(model, processor, images, changes, seed, batch_size)
    band = ReferralBand.of(model.config)
    report = stress_report(truth, probabilities, positive, threshold, band)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"threshold": threshold, "referral_band": band.record() if band else None, "seed": seed,
               "num_images": len(truth), "positive_label": positive_name,
               "negative_label": negative_label(model.config), "changes": report}
    (out / "stress.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_stress(report, out / "stress.png", positive_name)
    if example is None and len(images):
        example = images[int(np.argmin(truth))]
    if example is not None:
        plot_examples(load_image(example), changes, seed, out / "stress_examples.png")
    logger.info("Stress suite on %d images: worst specificity %.3f (%s), worst sensitivity %.3f (%s) -> %s",
                len(truth), *_worst(report, "specificity"), *_worst(report, "sensitivity"), out)
    return summary


def _referred(scores: np.ndarray, band: ReferralBand | None) -> np.ndarray:
    return np.zeros(len(scores), bool) if band is None else band.refers(scores)


def _worst(report: dict, metric: str) -> tuple[float, str]:
    name = min(report, key=lambda n: report[n][metric])
    return report[name][metric], name


def stress_table(report: dict, negative_name: str = "negative", positive_name: str = "positive") -> str:
    """Markdown: one row per change; with a referral band, what it referred and the figures among the
    films decided."""
    selective = all("referred_share" in m for m in report.values())
    rows = [f"| change | group | accuracy | ROC-AUC | sensitivity | specificity | flipped | flipped {negative_name} "
            f"| flipped {positive_name} |" + (" referred | moved into the band | errors referred | accuracy "
                                              "decided | specificity decided |" if selective else ""),
            "|---|---|" + "---:|" * (12 if selective else 7)]
    for name, m in report.items():
        row = (f"| {name} | {m['group']} | {m['accuracy']:.3f} | {m['roc_auc']:.3f} | {m['sensitivity']:.3f} "
               f"| {m['specificity']:.3f} | {m['flip_rate']:.3f} | {m['flip_rate_negative']:.3f} "
               f"| {m['flip_rate_positive']:.3f} |")
        if selective:
            row += (f" {m['referred_share']:.3f} | {m['moved_into_band']:.3f} | {m['errors_referred']:.3f} "
                    f"| {m['decided_accuracy']:.3f} | {m['decided_specificity']:.3f} |")
        rows.append(row)
    return "\n".join(rows)


def plot_stress(report: dict, path: Path, positive_name: str) -> None:
    from .figures import pyplot, save_figure

    names = list(report)
    y = np.arange(len(names))
    figure, axis = pyplot().subplots(figsize=(7, 0.32 * len(names) + 1.8), dpi=120)
    for offset, (metric, label) in enumerate((("specificity", "specificity"), ("sensitivity", "sensitivity"),
                                              ("flip_rate_negative", "flipped, true negatives"))):
        axis.barh(y + (offset - 1) * 0.27, [report[n][metric] for n in names], height=0.27, label=label)
    axis.set(yticks=y, yticklabels=names, xlim=(0, 1), xlabel="rate at the operating threshold",
             title=f"Stress suite ({positive_name} is positive)")
    axis.invert_yaxis()
    # Below the axes: inside them it hides the bars of the last changes.
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)


def plot_examples(image: Image.Image, changes, seed: int, path: Path) -> None:
    """A contact sheet: the unchanged image and the same image under each change."""
    tiles = [(CLEAN, image), *((change.name, change(image, seed, 0)) for change in changes)]
    size = 160
    columns = 5
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * size, rows * (size + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for position, (name, tile) in enumerate(tiles):
        x, y = (position % columns) * size, (position // columns) * (size + 14)
        sheet.paste(tile.convert("RGB").resize((size, size)), (x, y + 14))
        draw.text((x + 2, y + 1), name, fill="black")
    sheet.save(path)
