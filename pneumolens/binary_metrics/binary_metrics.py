"""PneumoLens binary metrics, as a Hugging Face `evaluate` module.

Accuracy, ROC-AUC, sensitivity, specificity, precision and F1 of the decision `score >= threshold`
(scikit-learn underneath), the threshold and the confusion matrix; with `bootstrap_samples` > 0, also a
95 % percentile bootstrap interval of each figure (images resampled with replacement, seeded).

Self-contained (NumPy and scikit-learn only), so it loads from its folder with no network:

    import evaluate
    metric = evaluate.load("pneumolens/binary_metrics")   # this folder
    metric.compute(references=[0, 1, 1], predictions=[0.2, 0.7, 0.4], threshold=0.5)
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score

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
    predictions = (scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predictions, labels=[0, 1]).ravel().tolist()
    precision, sensitivity = _ratio(tp, tp + fp, undefined), _ratio(tp, tp + fn, undefined)
    return {
        "accuracy": _ratio(tp + tn, len(labels), undefined),
        "precision": precision,
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp, undefined),
        "f1": _ratio(2 * precision * sensitivity, precision + sensitivity, undefined),
        "roc_auc": float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else float("nan"),
        "threshold": float(threshold),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def bootstrap_intervals(labels: np.ndarray, scores: np.ndarray, threshold: float, samples: int, seed: int) -> dict:
    """95 % percentile intervals over the resamples where a figure is defined (one without positives
    has no sensitivity, one without both classes no ROC-AUC)."""
    rng = np.random.default_rng(seed)
    drawn = {name: [] for name in SCALARS}
    for _ in range(samples):
        chosen = rng.integers(0, len(labels), len(labels))
        metrics = binary_metrics(labels[chosen], scores[chosen], threshold, undefined=float("nan"))
        for name in SCALARS:
            drawn[name].append(metrics[name])
    return {name: [float(v) for v in np.nanpercentile(values, [2.5, 97.5])] if not np.all(np.isnan(values))
            else [float("nan"), float("nan")] for name, values in drawn.items()}


def _ratio(numerator: float, denominator: float, undefined: float = 0.0) -> float:
    if np.isnan(numerator) or np.isnan(denominator) or not denominator:
        return undefined
    return float(numerator / denominator)
