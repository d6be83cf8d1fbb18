"""Scoring a model on a data set and writing what a reader checks: metrics, predictions, plots."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .decision import class_probabilities, decide, operating_threshold  # noqa: E402
from .card import REPORTED_METRICS  # noqa: E402
from .data import image_name  # noqa: E402
from .errors import PneumoLensError  # noqa: E402
from .metrics import binary_metrics  # noqa: E402
from .modeling import negative_label, positive_index  # noqa: E402
from .preprocessing import batch_transform  # noqa: E402

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
    """Score `dataset` and write metrics.json, predictions.csv, roc_curve.png, confusion_matrix.png.

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
    metrics = binary_metrics(truth, scores, threshold, bootstrap_samples)
    metrics.update(split=split_name, num_images=len(dataset), positive_label=positive_name)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_predictions(out / "predictions.csv", dataset, class_names, probabilities, config, threshold)
    _plot_roc(out / "roc_curve.png", truth, scores, metrics, split_name)
    _plot_confusion(out / "confusion_matrix.png", metrics, config, positive, split_name)
    logger.info("%s: accuracy %.4f, ROC-AUC %.4f at threshold %.3f (%d images) -> %s",
                split_name, metrics["accuracy"], metrics["roc_auc"], threshold, len(dataset), out)
    return metrics


def metrics_table(metrics: dict) -> str:
    """The scalar metrics, one per line, with their 95 % intervals where `metrics` has them."""
    intervals = metrics.get("intervals", {})
    lines = []
    for name in REPORTED_METRICS:
        low, high = intervals.get(name, (None, None))
        interval = f"  95 % CI [{low:.4f}, {high:.4f}]" if low is not None else ""
        lines.append(f"{name:<12} {metrics[name]:.4f}{interval}")
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
    figure, axis = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    if len(set(truth.tolist())) == 2:
        false_positive_rate, true_positive_rate, _ = roc_curve(truth, scores)
        axis.plot(false_positive_rate, true_positive_rate, label=f"AUC = {metrics['roc_auc']:.3f}")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axis.scatter([1 - metrics["specificity"]], [metrics["sensitivity"]], color="red", zorder=3,
                 label=f"threshold {metrics['threshold']:.3f}")
    axis.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC curve ({split_name})")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _plot_confusion(path, metrics, config, positive, split_name):
    names = [negative_label(config), config.id2label[positive]]
    matrix = np.array(metrics["confusion_matrix"])
    figure, axis = plt.subplots(figsize=(4.5, 4), dpi=120)
    axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=color, fontsize=14)
    axis.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names,
             xlabel="predicted", ylabel="true", title=f"Confusion matrix ({split_name})")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
