"""Faithfulness: does a map point at what the model uses? Measured so that methods can be told apart.

Per image and per map, with random maps as the baselines a method must beat:
- deletion (Petsiuk et al. 2018): the pixels the map ranks highest are replaced by a fill first; the
  explained class's log-odds fall. Lower area under the curve is better.
- insertion: the same pixels are revealed first onto the fill; higher area is better.
- ROAD (Rong et al. 2022, pytorch-grad-cam's implementation): pixels removed by noisy linear
  imputation, which leaves no tell-tale mask shape; half the log-odds after removing the least relevant
  pixels minus after removing the most relevant, averaged over a few percentiles. Higher is better.

Log-odds, not probabilities: this model saturates its probabilities, so a probability curve stays flat
whichever pixels go first. Two fills, a strong blur of the image and the image's mean grey: black, the
usual fill, looks like aerated lung on a radiograph.

A fair baseline has the map's own granularity. A map made on the 16x16 patch grid and upsampled moves
whole patches at once; one random value per pixel scatters the revealed pixels over the whole image,
and on insertion that restores the image's texture everywhere at once, which the model responds to
whatever a map ranks (measured on the bundled model: a random patch-grid map scores 1.0-1.3 log-odds lower
on insertion than a random pixel map). So each map is compared with a random map drawn on its own grid
and upsampled the same way (`random@ROWSxCOLS`; per-pixel maps such as saliency with the per-pixel one,
`random`), and that comparison decides its verdict; the per-pixel comparison is kept beside it.

Every score is kept per image, so methods are compared on the same images: a paired bootstrap gives
the 95 % interval of the mean difference, method against random and method against method.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from itertools import permutations

import numpy as np
import torch
from scipy import stats
from torchvision.transforms.functional import gaussian_blur

from ..data import image_name, image_sources, model_label_ids
from ..modeling import attention_kernel
from .geometry import to_input_size
from .gradcam import LogitsOf
from .options import ExplanationOptions

logger = logging.getLogger(__name__)

RANDOM = "random"
FILLS = ("blur", "mean")
CURVES = ("deletion", "insertion")
ROAD = "road"


@dataclass(frozen=True)
class FaithfulnessSettings:
    steps: int = 10  # a curve has steps + 1 points, from nothing changed to everything changed
    fills: tuple[str, ...] = FILLS
    road_percentiles: tuple[int, ...] = (30, 50, 70)  # () leaves ROAD out (its imputation is the slow part)
    seed: int = 0
    batch_size: int = 32

    def metrics(self) -> list[str]:
        curves = [f"{curve}_{fill}" for fill in self.fills for curve in CURVES]
        return curves + ([ROAD] if self.road_percentiles else [])


def lower_is_better(metric: str) -> bool:
    return metric.startswith("deletion")


def metric_title(metric: str) -> str:
    if metric == ROAD:
        return "ROAD"
    curve, fill = metric.split("_")
    return f"{curve} ({fill} fill)"


def class_log_odds(logits: torch.Tensor, explained_index: int) -> torch.Tensor:
    """log p(explained_index) / (1 - p(explained_index)) per row, computed stably from the logits."""
    others = torch.cat([logits[:, :explained_index], logits[:, explained_index + 1:]], dim=1)
    return logits[:, explained_index] - torch.logsumexp(others, dim=1)


def fill_image(pixels: torch.Tensor, fill: str) -> torch.Tensor:
    """What removed pixels become: a strong blur of the image, or its mean value per channel."""
    if fill == "blur":
        return gaussian_blur(pixels, kernel_size=[31, 31], sigma=[10.0, 10.0])
    if fill == "mean":
        return pixels.mean(dim=(-2, -1), keepdim=True).expand_as(pixels).clone()
    raise ValueError(f"fill must be one of {FILLS}, not {fill!r}")


def pixel_order(heatmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices, highest map value first; ties in random order (not top rows first)."""
    flat = np.asarray(heatmap, dtype=np.float64).ravel()
    return np.lexsort((rng.random(flat.size), -flat))


def _switched(start: torch.Tensor, finish: torch.Tensor, order: np.ndarray, steps: int) -> torch.Tensor:
    """(steps + 1, C, H, W): pixels in `order` switched from `start` to `finish`, in equal parts."""
    height, width = start.shape[-2:]
    position = np.empty(order.size, dtype=np.int64)
    position[order] = np.arange(order.size)  # how early each pixel switches
    switched_by = torch.as_tensor(position.reshape(1, height, width), device=start.device)
    counts = [round(step / steps * order.size) for step in range(steps + 1)]
    return torch.stack([torch.where(switched_by < count, finish[0], start[0]) for count in counts])


@torch.no_grad()
def log_odds_of(model, batch: torch.Tensor, explained_index: int, batch_size: int) -> np.ndarray:
    chunks = [class_log_odds(model(pixel_values=part).logits.float(), explained_index) for part in batch.split(batch_size)]
    return torch.cat(chunks).cpu().numpy()


def curves(model, pixels: torch.Tensor, heatmaps: dict[str, np.ndarray], explained_index: int,
           settings: FaithfulnessSettings, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """{map name: {"deletion_blur": log-odds curve, ...}} for every map, from batched forward passes.

    A curve's two ends are the same for every map (the image, and the fill), so they are computed once.
    """
    orders = {name: pixel_order(heatmap, rng) for name, heatmap in heatmaps.items()}
    fills = {fill: fill_image(pixels, fill) for fill in settings.fills}
    keys, batches = [], [pixels, *fills.values()]
    for name, order in orders.items():
        for fill, filled in fills.items():
            keys += [(name, fill, "deletion"), (name, fill, "insertion")]
            batches += [_switched(pixels, filled, order, settings.steps)[1:-1],
                        _switched(filled, pixels, order, settings.steps)[1:-1]]
    with attention_kernel(model, "sdpa"):
        values = log_odds_of(model, torch.cat(batches), explained_index, settings.batch_size)
    original, ends = values[0], dict(zip(fills, values[1:1 + len(fills)]))
    interiors = values[1 + len(fills):].reshape(len(keys), settings.steps - 1)
    result: dict[str, dict[str, np.ndarray]] = {}
    for (name, fill, kind), interior in zip(keys, interiors):
        first, last = (original, ends[fill]) if kind == "deletion" else (ends[fill], original)
        result.setdefault(name, {})[f"{kind}_{fill}"] = np.concatenate([[first], interior, [last]])
    return result


def area(curve: np.ndarray) -> float:
    """Area under a curve sampled at equal steps over [0, 1]."""
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


class _LogOdds:
    """A pytorch-grad-cam target: the explained class's log-odds of one output row."""

    def __init__(self, explained_index: int):
        self.explained_index = explained_index

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return class_log_odds(logits.float().reshape(1, -1), self.explained_index)[0]


def road_score(model, pixels: torch.Tensor, heatmap: np.ndarray, explained_index: int, percentiles, seed: int) -> float:
    """ROAD: (log-odds removing the least relevant - removing the most relevant) / 2, mean over percentiles."""
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst

    # A strict ranking in [0, 1): ROAD thresholds at percentiles, which ties (Grad-CAM's zeros) would break.
    order = pixel_order(heatmap, np.random.default_rng(seed))
    ranked = np.empty(order.size, dtype=np.float32)
    ranked[order] = np.arange(order.size, 0, -1, dtype=np.float32) / order.size
    cams = ranked.reshape(1, *heatmap.shape)
    wrapped, targets = LogitsOf(model), [_LogOdds(explained_index)]
    torch.manual_seed(seed)  # the imputer's noise
    scores = []
    with torch.no_grad(), attention_kernel(model, "sdpa"):
        for percentile in percentiles:
            # Both remove (100 - percentile) % of the pixels: the least relevant ones, or the most.
            least_removed = ROADLeastRelevantFirst(percentile)(pixels, cams, targets, wrapped, return_diff=False)
            most_removed = ROADMostRelevantFirst(percentile)(pixels, cams, targets, wrapped, return_diff=False)
            scores.append((float(least_removed[0]) - float(most_removed[0])) / 2)
    return float(np.mean(scores))


def image_scores(model, pixels: torch.Tensor, maps: dict[str, np.ndarray], explained_index: int,
                 settings: FaithfulnessSettings, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """{map name: {metric: score}} for one image."""
    scores = {name: {metric: area(curve) for metric, curve in by_metric.items()}
              for name, by_metric in curves(model, pixels, maps, explained_index, settings, rng).items()}
    if settings.road_percentiles:
        for name, heatmap in maps.items():
            scores[name][ROAD] = road_score(model, pixels, heatmap, explained_index, settings.road_percentiles, settings.seed)
    return scores


def baseline_name(grid: tuple[int, int] | None) -> str:
    """The random map a map of this granularity is judged against: `random` per pixel, `random@RxC` on a grid."""
    return RANDOM if grid is None else f"{RANDOM}@{grid[0]}x{grid[1]}"


def is_random(name: str) -> bool:
    return name == RANDOM or name.startswith(RANDOM + "@")


def random_map(shape: tuple[int, int], grid: tuple[int, int] | None, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise per pixel, or on `grid` upsampled bilinearly to `shape` as the patch-level maps are."""
    if grid is None:
        return rng.random(shape).astype(np.float32)
    coarse = torch.as_tensor(rng.random(grid), dtype=torch.float32)
    return to_input_size(coarse, shape).numpy()


def with_random_map(maps: dict[str, np.ndarray], rng: np.random.Generator,
                    granularity: dict[str, tuple[int, int] | None] | None = None) -> dict[str, np.ndarray]:
    """The maps and their baselines: always the per-pixel random map, and one random map per grid that a
    map in `granularity` is made on."""
    shape = next(iter(maps.values())).shape
    grids = sorted({tuple(grid) for grid in (granularity or {}).values() if grid is not None})
    return {**maps, RANDOM: random_map(shape, None, rng),
            **{baseline_name(grid): random_map(shape, grid, rng) for grid in grids}}


def explained_with_random_map(explainer, image, explained_index: int | None, options, rng: np.random.Generator):
    """(explanation, model input, its maps and their random maps) of one image: what the curves start from."""
    rgb, pixels, layout = explainer.prepare(image)
    explanation = explainer.explain_prepared(rgb, pixels, layout, explained_index, options)
    return explanation, pixels, with_random_map(explanation.input_maps, rng, explanation.granularity)


@dataclass
class ImageRecord:
    image: str
    label: int | None  # the true class, where known
    explained_index: int  # the explained (predicted) class
    scores: dict[str, dict[str, float]]

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.explained_index


@dataclass
class FaithfulnessReport:
    settings: FaithfulnessSettings
    records: list[ImageRecord] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)  # method -> the random map of its granularity
    map_settings: dict[str, str] = field(default_factory=dict)  # method -> the settings that made its maps

    def methods(self) -> list[str]:
        return [name for name in self.records[0].scores if not is_random(name)] if self.records else []

    def subsets(self) -> dict[str, list[ImageRecord]]:
        subsets = {"all": self.records}
        if all(record.label is not None for record in self.records):
            subsets["correct"] = [record for record in self.records if record.correct]
        return subsets

    def summary(self, resamples: int = 2000, interval=None) -> dict:
        """Per subset (all images, the correctly classified ones): `summarise` with `interval` (default BCa)."""
        return {name: summarise(records, self.methods(), self.settings.metrics(), self.settings.seed, resamples,
                                self.baselines, interval or paired_interval)
                for name, records in self.subsets().items()}

    @classmethod
    def from_json(cls, result: dict) -> "FaithfulnessReport":
        """A stored measurement (`to_json`, or an earlier version's file, which names `target` and `variants`),
        with its per-image scores: to summarise again without running the model."""
        stored = result["settings"]
        settings = FaithfulnessSettings(**{**stored, "fills": tuple(stored["fills"]),
                                           "road_percentiles": tuple(stored["road_percentiles"])})
        records = [ImageRecord(image["image"], image["label"], image.get("explained_index", image.get("target")),
                               image["scores"]) for image in result["images"]]
        return cls(settings, records, dict(result.get("unavailable") or {}), dict(result.get("baselines") or {}),
                   dict(result.get("map_settings") or result.get("variants") or {}))

    def to_json(self, resamples: int = 2000) -> dict:
        return {"settings": asdict(self.settings), "unavailable": self.unavailable,
                "baselines": self.baselines, "map_settings": self.map_settings,
                "summary": self.summary(resamples),
                "images": [{**asdict(record), "correct": record.correct} for record in self.records]}


def evaluate_faithfulness(explainer, images, labels=None, methods=None,
                          settings: FaithfulnessSettings = FaithfulnessSettings(), progress=None,
                          options: ExplanationOptions = ExplanationOptions()) -> FaithfulnessReport:
    """Scores of every method and its random maps on every image (explaining the predicted class).

    images: paths or PIL images; labels: their true class indices (optional; splits off the correctly
    classified ones); progress: an optional wrapper for the image iterator (e.g. tqdm); options: how the
    maps are made (the model's stored settings, or a candidate's in a selection).
    """
    rng = np.random.default_rng(settings.seed)
    report = FaithfulnessReport(settings)
    options = replace(options, methods=tuple(methods)) if methods else options
    labels = [None] * len(images) if labels is None else list(labels)
    for index in (progress or iter)(range(len(images))):
        explanation, pixels, maps = explained_with_random_map(explainer, images[index], None, options, rng)
        scores = image_scores(explainer.model, pixels, maps, explanation.explained_index, settings, rng)
        name = images[index] if isinstance(images[index], str) else f"image-{index}"
        label = None if labels[index] is None else int(labels[index])
        report.records.append(ImageRecord(str(name), label, explanation.explained_index, scores))
        report.unavailable.update(explanation.unavailable)
        report.baselines.update({m: baseline_name(grid) for m, grid in explanation.granularity.items()})
        report.map_settings.update({m: text for m, text in explanation.settings.items() if text})
    return report


def measure_faithfulness(explainer, dataset, settings: FaithfulnessSettings, options: ExplanationOptions,
                         progress=None) -> dict:
    """`evaluate_faithfulness` on a data set's images and labels, as JSON, each image under its file name."""
    report = evaluate_faithfulness(explainer, image_sources(dataset), model_label_ids(dataset, explainer.model.config),
                                   settings=settings, progress=progress, options=options)
    result = report.to_json()
    for record, name in zip(result["images"], (image_name(image) for image in dataset.with_format(None)["image"])):
        record["image"] = name or record["image"]
    return result


def paired_interval(differences: np.ndarray, rng: np.random.Generator, resamples: int) -> dict:
    """Mean of paired differences and its bias-corrected and accelerated (BCa) bootstrap 95 % interval: the
    verdicts hang on its low end, and BCa corrects the percentile interval's bias and skew."""
    differences = np.asarray(differences, dtype=np.float64)
    mean = float(differences.mean())
    if differences.size < 2 or np.ptp(differences) == 0:  # nothing to resample: the interval is the mean
        return {"mean": mean, "low": mean, "high": mean}
    interval = stats.bootstrap((differences,), np.mean, n_resamples=resamples, confidence_level=0.95, method="BCa",
                               rng=rng).confidence_interval
    return {"mean": mean, "low": float(interval.low), "high": float(interval.high)}


def percentile_interval(differences: np.ndarray, rng: np.random.Generator, resamples: int) -> dict:
    """The percentile bootstrap interval the verdicts used before 0.7.1 (kept to compare:
    benchmarks/faithfulness_bca.py)."""
    differences = np.asarray(differences, dtype=np.float64)
    means = differences[rng.integers(0, differences.size, (resamples, differences.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(differences.mean()), "low": float(low), "high": float(high)}


def improvement(records, metric: str, method: str, baseline: str) -> np.ndarray:
    """Per image, how much better `method` scores than `baseline` (positive: better, whatever the metric)."""
    a = np.array([record.scores[method][metric] for record in records])
    b = np.array([record.scores[baseline][metric] for record in records])
    return b - a if lower_is_better(metric) else a - b


def summarise(records: list[ImageRecord], methods: list[str], metrics: list[str], seed: int, resamples: int,
              baselines: dict[str, str] | None = None, interval=paired_interval) -> dict:
    """Means, intervals against the random maps and between methods, verdicts and a ranking for `records`.

    `vs_random` compares every method with the per-pixel random map; `vs_baseline` with the random map of
    its own granularity (`baselines`; per pixel where none is given), which decides verdict and ranking.
    """
    if not records:
        return {"images": 0}
    baselines = {name: (baselines or {}).get(name, RANDOM) for name in methods}
    rng = np.random.default_rng(seed)
    randoms = [name for name in records[0].scores if is_random(name)]
    means = {name: {metric: float(np.mean([r.scores[name][metric] for r in records])) for metric in metrics}
             for name in [*methods, *randoms]}

    def against(baseline_of):
        return {name: {metric: interval(improvement(records, metric, name, baseline_of(name)), rng, resamples)
                       for metric in metrics} for name in methods}

    vs_random = against(lambda name: RANDOM)
    vs_baseline = against(lambda name: baselines[name])
    pairs = {f"{a} vs {b}": {metric: interval(improvement(records, metric, a, b), rng, resamples)
                             for metric in metrics} for a, b in permutations(methods, 2)}
    verdicts = {name: verdict(vs_baseline[name], baselines[name]) for name in methods}
    return {"images": len(records), "means": means, "baselines": baselines, "vs_baseline": vs_baseline,
            "vs_random": vs_random, "pairs": pairs, "verdicts": verdicts, "ranking": ranking(vs_baseline)}


def random_title(name: str) -> str:
    return "random map, per pixel" if name == RANDOM else f"random map, {name.split('@')[1]} grid"


def baseline_title(baseline: str) -> str:
    return "a random per-pixel map" if baseline == RANDOM else f"a random map on its {baseline.split('@')[1]} grid"


def verdict(intervals: dict[str, dict], baseline: str = RANDOM) -> dict:
    """A method passes when it beats the random map of its granularity on every deletion and insertion
    curve, the 95 % interval of the difference above zero."""
    failed = [metric for metric in intervals if metric != ROAD and intervals[metric]["low"] <= 0]
    against = baseline_title(baseline)
    if not failed:
        return {"passes": True, "reason": f"beats {against} on every deletion and insertion curve (95 % interval above zero)"}
    details = "; ".join(f"{metric_title(m)} {interval_text(intervals[m])}" for m in failed)
    return {"passes": False, "failed": failed,
            "reason": f"does not beat {against} on {details} (log-odds area, better than random)"}


def ranking(vs_random: dict[str, dict[str, dict]]) -> list[str]:
    """Methods, most faithful first: mean rank over the metrics of the improvement over random."""
    methods = list(vs_random)
    metrics = list(next(iter(vs_random.values()))) if methods else []
    ranks = {name: 0.0 for name in methods}
    for metric in metrics:
        ordered = sorted(methods, key=lambda name: -vs_random[name][metric]["mean"])
        for rank, name in enumerate(ordered):
            ranks[name] += rank / len(metrics)
    return sorted(methods, key=lambda name: ranks[name])


def interval_text(entry: dict, digits: int = 3) -> str:
    """A paired interval as "+mean [+low, +high]"."""
    return f"{entry['mean']:+.{digits}f} [{entry['low']:+.{digits}f}, {entry['high']:+.{digits}f}]"


def faithfulness_table(summary: dict, titles: dict[str, str] | None = None) -> str:
    """Markdown: per method and metric, the mean score, the paired 95 % interval against the random map of
    its granularity (which decides the verdict) and, in brackets, against the per-pixel random map."""
    titles = titles or {}
    metrics = list(next(iter(summary["means"].values())))
    baselines = summary.get("baselines", {})
    vs_baseline = summary.get("vs_baseline", summary["vs_random"])
    header = ("| method (baseline) | " + " | ".join(metric_title(m) + (" ↓" if lower_is_better(m) else " ↑")
                                                   for m in metrics) + " | verdict |")
    rows = [header, "|---|" + "---:|" * len(metrics) + "---|"]
    for name in summary["ranking"]:
        baseline = baselines.get(name, RANDOM)
        cells = [f"{summary['means'][name][m]:.3f}<br>{interval_text(vs_baseline[name][m])}"
                 + ("" if baseline == RANDOM else f"<br>({interval_text(summary['vs_random'][name][m])})")
                 for m in metrics]
        rows.append(f"| {titles.get(name, name)} (`{baseline}`) | " + " | ".join(cells)
                    + f" | {'passes' if summary['verdicts'][name]['passes'] else 'fails'} |")
    for name in summary["means"]:
        if is_random(name):
            rows.append(f"| `{name}` | " + " | ".join(f"{summary['means'][name][m]:.3f}" for m in metrics) + " | baseline |")
    return "\n".join(rows)


def pairs_table(summary: dict, method: str, titles: dict[str, str] | None = None) -> str:
    """Markdown: `method` against each other method, the paired 95 % interval of its advantage."""
    titles = titles or {}
    metrics = list(next(iter(summary["means"].values())))
    rows = [f"| {titles.get(method, method)} against | " + " | ".join(metric_title(m) for m in metrics) + " |",
            "|---|" + "---:|" * len(metrics)]
    for key, intervals in summary["pairs"].items():
        first, other = key.split(" vs ")
        if first == method:
            rows.append(f"| {titles.get(other, other)} | " + " | ".join(interval_text(intervals[m]) for m in metrics) + " |")
    return "\n".join(rows)


def faithfulness_markdown(result: dict, where: str, command_line: str, titles: dict[str, str]) -> str:
    """The card's section: what was measured, the tables and the command."""
    summary = result["summary"]
    settings = result["settings"]
    parts = [
        f"{summary['all']['images']} images of {where}, split evenly between the classes; each explains its "
        f"predicted class. Scores are areas under the explained class's **log-odds** curve as the pixels a map "
        f"ranks highest are removed first (deletion, lower is better) or revealed first (insertion, higher is "
        f"better), in {settings['steps']} steps, onto a strong blur or the image's mean grey; ROAD (Rong et al. "
        f"2022) removes pixels by noisy linear imputation{_road_text(settings['road_percentiles'])}. Under each mean: "
        "the paired bootstrap 95 % interval (BCa) of how much better the method does than the random map of its own "
        "granularity on the same images (positive: better): a random map on the same grid, upsampled the same "
        "way, for the patch-level maps (named in brackets), one random value per pixel for saliency. In "
        "parentheses below it, for the patch-level maps: the same against the per-pixel random map, which is kept "
        "for comparison but does not decide, because scattered random pixels restore the whole image's texture "
        "at once on insertion, which a map drawn on a 16x16 grid cannot do whatever it ranks. A method *passes* "
        "when every deletion and insertion interval against its own baseline is above zero. The app shows every "
        "map with its verdict, in the order ranked here." + _map_settings_text(result, titles),
        "", faithfulness_table(summary["all"], titles)]
    if "correct" in summary and summary["correct"]["images"]:
        parts += ["", f"Correctly classified images only ({summary['correct']['images']}):", "",
                  faithfulness_table(summary["correct"], titles)]
    best = summary["all"]["ranking"][0] if summary["all"].get("ranking") else None
    if best:
        parts += ["", f"{titles.get(best, best)}, the most faithful here, against each other method (paired 95 % "
                  "intervals of its advantage; positive: more faithful):", "", pairs_table(summary["all"], best, titles)]
    if result["unavailable"]:
        parts += ["", "Not available for this model: " + "; ".join(f"{titles.get(m, m)}: {why}"
                                                                     for m, why in result["unavailable"].items())]
    parts += ["", f"Command: `{command_line}`"]
    return "\n".join(parts)


def _percentages(values) -> str:
    return ", ".join(f"{value} %" for value in values)


def _road_text(percentiles) -> str:
    return f" at {_percentages(percentiles)} kept" if percentiles else " (not measured in this run)"


def _map_settings_text(result: dict, titles: dict[str, str]) -> str:
    map_settings = result.get("map_settings") or {}
    if not map_settings:
        return ""
    return " Settings of the maps (`eval/explanation_settings.json`): " + "; ".join(
        f"{titles.get(m, m)}: {text}" for m, text in map_settings.items()) + "."
