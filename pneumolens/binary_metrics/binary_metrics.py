"""PneumoLens binary metrics, as a Hugging Face `evaluate` module.

Accuracy, ROC-AUC, sensitivity, specificity, precision and F1 of the decision `score >= threshold`
(NumPy and SciPy), the threshold and the confusion matrix; with `bootstrap_samples` > 0, also a
95 % percentile bootstrap interval of each figure (images resampled with replacement, seeded).

Self-contained (NumPy and SciPy only), so it loads from its folder with no network:

    import evaluate
    metric = evaluate.load("pneumolens/binary_metrics")   # this folder
    metric.compute(references=[0, 1, 1], predictions=[0.2, 0.7, 0.4], threshold=0.5)
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import rankdata

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): the positive class's score (probability) of each image.
    references (list of int): 1 where the image shows the positive class, else 0.
    threshold (float): the decision threshold on the score, default 0.5.
    bootstrap_samples (int): resamples for the 95 % intervals; 0 (default) computes none.
    seed (int): the bootstrap's seed, default 0.
Returns:
    accuracy, precision, sensitivity, specificity, f1, roc_auc (NaN when one class only), threshold,
    confusion_matrix ([[TN, FP], [FN, TP]]), and with bootstrap_samples > 0 `intervals`:
    {metric: [low, high]}.
"""
_CITATION = ""
SCALARS = ("accuracy", "precision", "sensitivity", "specificity", "f1", "roc_auc")


class BinaryMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, threshold: float = 0.5, bootstrap_samples: int = 0, seed: int = 0):
        labels, scores = np.asarray(references, dtype=int), np.asarray(predictions, dtype=np.float64)
        result = binary_metrics(labels, scores, threshold)
        if bootstrap_samples > 0:
            result["intervals"] = bootstrap_intervals(labels, scores, threshold, bootstrap_samples, seed)
        return result


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, undefined: float = 0.0) -> dict:
    """The figures; a ratio whose denominator is 0 (no positives, say) is `undefined`."""
    figures = resampled_metrics(np.asarray(labels)[None], np.asarray(scores, dtype=np.float64)[None], threshold,
                                undefined)
    tn, fp, fn, tp = (int(figures[count][0]) for count in ("tn", "fp", "fn", "tp"))
    return {**{name: float(figures[name][0]) for name in SCALARS}, "threshold": float(threshold),
            "confusion_matrix": [[tn, fp], [fn, tp]]}


def resampled_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, undefined: float) -> dict:
    """Every figure of each row of (R, N) labels and scores at once: the one implementation, of one data set
    (R = 1) and of its bootstrap resamples alike. ROC-AUC is the Mann-Whitney statistic (ties count half),
    which is the area under the ROC curve; NaN for a row without both classes."""
    positive, decided = labels == 1, scores >= threshold
    tp, fn = np.sum(positive & decided, axis=1), np.sum(positive & ~decided, axis=1)
    fp, tn = np.sum(~positive & decided, axis=1), np.sum(~positive & ~decided, axis=1)
    precision, sensitivity = _ratio(tp, tp + fp, undefined), _ratio(tp, tp + fn, undefined)
    positives, negatives = tp + fn, tn + fp
    rank_sum = np.sum(rankdata(scores, axis=1) * positive, axis=1) - positives * (positives + 1) / 2
    both = (positives > 0) & (negatives > 0)
    return {
        "accuracy": _ratio(tp + tn, labels.shape[1], undefined),
        "precision": precision,
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp, undefined),
        "f1": _ratio(2 * precision * sensitivity, precision + sensitivity, undefined),
        "roc_auc": np.where(both, rank_sum / np.where(both, positives * negatives, 1), np.nan),
        "tn": tn, "fp": fp, "fn": fn, "tp": tp,
    }


def bootstrap_intervals(labels: np.ndarray, scores: np.ndarray, threshold: float, samples: int, seed: int) -> dict:
    """95 % percentile intervals over the resamples where a figure is defined (one without positives
    has no sensitivity, one without both classes no ROC-AUC)."""
    chosen = np.random.default_rng(seed).integers(0, len(labels), (samples, len(labels)))
    drawn = resampled_metrics(labels[chosen], scores[chosen], threshold, undefined=float("nan"))
    return {name: [float(v) for v in np.nanpercentile(drawn[name], [2.5, 97.5])]
            if not np.all(np.isnan(drawn[name])) else [float("nan"), float("nan")] for name in SCALARS}


def _ratio(numerator, denominator, undefined: float = 0.0) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    defined = (denominator != 0) & ~np.isnan(numerator) & ~np.isnan(denominator)
    return np.where(defined, numerator / np.where(defined, denominator, 1.0), undefined)
