"""Binary classification metrics: the project's `evaluate` module (`pneumolens/binary_metrics/`).

One module serves the Trainer (through `trainer_metrics`), the stand-alone evaluation and the stress
suite, so the numbers in training logs, metrics files and the model card are the same numbers. It is
loaded from its folder with `evaluate.load`, which needs no network (a metric named by its Hub id, such
as `evaluate.load("accuracy")`, would fetch its code from the Hub at run time).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

METRIC_MODULE = Path(__file__).resolve().parent / "binary_metrics"


@lru_cache(maxsize=1)
def metric_module():
    """The `evaluate` module, loaded once per process from its folder."""
    import evaluate

    # In memory: no Arrow cache files, which two processes computing at once would contend for.
    return evaluate.load(str(METRIC_MODULE), keep_in_memory=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def binary_metrics(labels, positive_scores, threshold: float = 0.5, bootstrap_samples: int = 0,
                   seed: int = 0, referral_band: tuple[float, float] | None = None,
                   risk_coverage: bool = False, referred=None) -> dict:
    """Metrics of the decision `score >= threshold` against `labels` (1 = positive class).

    Returns accuracy, precision, sensitivity (recall), specificity, F1, ROC-AUC (NaN when only one
    class is present), the threshold and the confusion matrix as [[TN, FP], [FN, TP]]; with
    `bootstrap_samples`, also `intervals`, each metric's 95 % percentile bootstrap interval. With
    `referral_band` (lower, upper), also the selective figures of the images decided outside it (or outside
    `referred`, a mask, where a rule beside the band refers some too), and with
    `risk_coverage` the points of the risk-coverage curve behind their AURC (for a plot; no figure to store).
    """
    metrics = metric_module().compute(
        references=np.asarray(labels).astype(int).tolist(),
        predictions=np.asarray(positive_scores, dtype=np.float64).tolist(),
        threshold=float(threshold), bootstrap_samples=bootstrap_samples, seed=seed,
        referral_band=None if referral_band is None else [float(bound) for bound in referral_band],
        referred=None if referred is None else np.asarray(referred, dtype=bool).tolist())
    if not risk_coverage:
        metrics.pop("risk_coverage", None)
    return metrics


def youden_threshold(labels, positive_scores) -> float:
    """The score threshold that maximises Youden's J = sensitivity + specificity - 1 on these data.

    Among thresholds with equal J the middle one is returned, and it is placed halfway between the
    neighbouring scores, so a tiny shift of a score does not flip a decision on the selection data.
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(positive_scores, dtype=np.float64)
    if len(set(labels.tolist())) < 2:
        raise ValueError("A threshold needs scores of both classes; these labels have one class only.")
    false_positive_rate, true_positive_rate, thresholds = roc_curve(labels, scores)
    youden_j = true_positive_rate - false_positive_rate
    best = np.flatnonzero(np.isclose(youden_j, youden_j.max()))
    index = int(best[len(best) // 2])
    # roc_curve's first threshold is +inf (nothing predicted positive); never choose it.
    index = max(index, 1)
    below = scores[scores < thresholds[index]]
    lower = below.max() if below.size else 0.0
    return float(np.clip((thresholds[index] + lower) / 2.0, 0.0, 1.0))


def trainer_metrics(positive_index: int, threshold: float = 0.5):
    """A `compute_metrics` callable for `transformers.Trainer` (scalar metrics only)."""

    def compute_metrics(eval_prediction) -> dict:
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        scores = softmax(np.asarray(logits))[:, positive_index]
        positives = (np.asarray(labels) == positive_index).astype(int)
        return scalar_metrics(binary_metrics(positives, scores, threshold))

    return compute_metrics


def scalar_metrics(metrics: dict) -> dict:
    """`binary_metrics` with the confusion matrix as four scalars (tn, fp, fn, tp), as the Trainer logs."""
    metrics = dict(metrics)
    tn_fp, fn_tp = metrics.pop("confusion_matrix")
    metrics.update(tn=tn_fp[0], fp=tn_fp[1], fn=fn_tp[0], tp=fn_tp[1])
    return metrics
