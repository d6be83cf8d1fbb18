"""Scoring a model on a data set and writing what a reader checks: metrics, predictions, plots."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .decision import ReferralBand, class_probabilities, decide, operating_threshold  # noqa: E402
from .card import REPORTED_METRICS  # noqa: E402
from .data import image_name  # noqa: E402
from .errors import PneumoLensError  # noqa: E402
from .metrics import binary_metrics  # noqa: E402
from .modeling import negative_label, positive_index  # noqa: E402
from .preprocessing import batch_transform  # noqa: E402
from .figures import pyplot, save_figure  # noqa: E402

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_probabilities(model, processor, dataset: Dataset, batch_size: int = 32) -> np.ndarray:
    """Class probabilities (N, num_labels) for a data set of undecoded images, in its order."""
    transform = batch_transform(processor)
    model.eval()
    batches = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start:start + batch_size]
        batches.append(class_probabilities(model, transform(rows)["pixel_values"]))
    return np.concatenate(batches) if batches else np.zeros((0, model.config.num_labels))


def evaluate_model(model, processor, dataset: Dataset, out_dir: str | Path, split_name: str,
                   threshold: float | None = None, batch_size: int = 32,
                   probabilities: np.ndarray | None = None, bootstrap_samples: int = 0) -> dict:
    """Score `dataset` and write metrics.json, predictions.csv, roc_curve.png, confusion_matrix.png and
    risk_coverage.png (the error rate among the films decided, deciding the most certain first).

    The threshold defaults to the model's saved operating threshold; `probabilities` already computed
    for `dataset` by `predict_probabilities` are used instead of a new pass. With `bootstrap_samples`, the
    metrics carry their 95 % bootstrap intervals (`intervals`). Labels are compared by name, so
    a data set whose class folders are ordered differently from the model's labels is still scored
    correctly.
    """
    config = model.config
    threshold = operating_threshold(config) if threshold is None else threshold
    positive = positive_index(config)
    class_names = dataset.features["label"].names
    positive_name = config.id2label[positive]
    if positive_name not in class_names:
        raise PneumoLensError(f"The data's classes {class_names} do not include the model's '{positive_name}'.")
    truth = np.array([class_names[label] == positive_name for label in dataset["label"]], dtype=int)
    if probabilities is None:
        probabilities = predict_probabilities(model, processor, dataset, batch_size)
    scores = probabilities[:, positive]
    band = ReferralBand.of(config)
    metrics = binary_metrics(truth, scores, threshold, bootstrap_samples, referral_band=band and band.bounds,
                             risk_coverage=True)
    # The curve is drawn for every model (an empty band refers nothing); the band's figures only where there is one.
    curve = metrics if band else binary_metrics(truth, scores, threshold, referral_band=(0.0, 0.0), risk_coverage=True)
    points = metrics.pop("risk_coverage", None) or curve["risk_coverage"]
    metrics.update(split=split_name, num_images=len(dataset), positive_label=positive_name)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_predictions(out / "predictions.csv", dataset, class_names, probabilities, config, threshold)
    _plot_roc(out / "roc_curve.png", truth, scores, metrics, split_name)
    _plot_confusion(out / "confusion_matrix.png", metrics, config, positive, split_name)
    _plot_risk_coverage(out / "risk_coverage.png", points, curve["aurc"], metrics, split_name)
    logger.info("%s: accuracy %.4f, ROC-AUC %.4f at threshold %.3f (%d images) -> %s",
                split_name, metrics["accuracy"], metrics["roc_auc"], threshold, len(dataset), out)
    return metrics


SELECTIVE_METRICS = ("referred_share", "errors_referred", "decided_accuracy", "decided_sensitivity",
                     "decided_specificity", "aurc")


def metrics_table(metrics: dict) -> str:
    """The scalar metrics, one per line, with their 95 % intervals where `metrics` has them; the selective
    ones too where the model has a referral band."""
    intervals = metrics.get("intervals", {})
    lines = []
    for name in (*REPORTED_METRICS, *(m for m in SELECTIVE_METRICS if m in metrics)):
        low, high = intervals.get(name, (None, None))
        interval = f"  95 % CI [{low:.4f}, {high:.4f}]" if low is not None else ""
        lines.append(f"{name:<19} {metrics[name]:.4f}{interval}")
    return "\n".join(lines)


def _write_predictions(path, dataset, class_names, probabilities, config, threshold):
    positive = positive_index(config)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "predicted", *[f"p_{name}" for name in labels]])
        for image, label, row in zip(dataset["image"], dataset["label"], probabilities):
            predicted = decide(config, row[positive], threshold)
            writer.writerow([image_name(image), class_names[label], predicted, *[f"{p:.6f}" for p in row]])


def _plot_roc(path, truth, scores, metrics, split_name):
    figure, axis = pyplot().subplots(figsize=(4.5, 4.5), dpi=120)
    if len(set(truth.tolist())) == 2:
        false_positive_rate, true_positive_rate, _ = roc_curve(truth, scores)
        axis.plot(false_positive_rate, true_positive_rate, label=f"AUC = {metrics['roc_auc']:.3f}")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axis.scatter([1 - metrics["specificity"]], [metrics["sensitivity"]], color="red", zorder=3,
                 label=f"threshold {metrics['threshold']:.3f}")
    axis.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC curve ({split_name})")
    axis.legend(loc="lower right")
    figure.tight_layout()
    save_figure(figure, path)


def _plot_confusion(path, metrics, config, positive, split_name):
    names = [negative_label(config), config.id2label[positive]]
    matrix = np.array(metrics["confusion_matrix"])
    figure, axis = pyplot().subplots(figsize=(4.5, 4), dpi=120)
    axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=color, fontsize=14)
    axis.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names,
             xlabel="predicted", ylabel="true", title=f"Confusion matrix ({split_name})")
    figure.tight_layout()
    save_figure(figure, path)


def _plot_risk_coverage(path, points: dict, aurc: float, metrics: dict, split_name: str):
    """The error rate among the films decided against the share decided, the most certain (by margin to the
    threshold) decided first; the model's referral band as a point where it has one."""
    figure, axis = pyplot().subplots(figsize=(4.8, 4), dpi=120)
    axis.plot(points["coverage"], points["risk"], label=f"margin to the threshold: AURC {aurc:.4f}")
    axis.axhline(points["risk"][-1], color="grey", linestyle="--", linewidth=0.8, label="deciding every film")
    if "referred_share" in metrics:
        axis.scatter([1 - metrics["referred_share"]], [1 - metrics["decided_accuracy"]], color="#e69f00", zorder=3,
                     label=f"referral band: {metrics['referred_share']:.1%} referred")
    axis.set(xlabel="share of films decided (coverage)", ylabel="error rate among the films decided",
             title=f"Risk-coverage ({split_name})", xlim=(0, 1),
             # The first few points are one or two films each: the scale follows the rest of the curve.
             ylim=(0, max(0.05, 1.3 * max(points["risk"][len(points["risk"]) // 10:]))))
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
