"""PneumoLens binary metrics, as a Hugging Face `evaluate` module.

Accuracy, ROC-AUC, sensitivity, specificity, precision and F1 of the decision `score >= threshold`
(NumPy and SciPy), the threshold and the confusion matrix; with `bootstrap_samples` > 0, also a
95 % percentile bootstrap interval of each figure (images resampled with replacement, seeded).

With `referral_band` = [lower, upper], the selective figures too: the images whose score lies strictly
inside the band are referred to a person, and the rest decided at the threshold. The share referred, the
share of the errors (at the threshold) that are referred, accuracy, sensitivity and specificity among the
decided images, and the area under the risk-coverage curve (AURC) when images are decided in order of
their margin to the threshold in log-odds, most certain first (lower is better), with its points.

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
    referral_band (list of two floats): the scores strictly between them are referred; default none.
    referred (list of bool): with referral_band, the images referred, where a rule other than the band
        (the stability rule) refers some too; default: those inside the band.
Returns:
    accuracy, precision, sensitivity, specificity, f1, roc_auc (NaN when one class only), threshold,
    confusion_matrix ([[TN, FP], [FN, TP]]), and with bootstrap_samples > 0 `intervals`:
    {metric: [low, high]}. With referral_band also referral_band, referred_share, errors_referred,
    decided_accuracy, decided_sensitivity, decided_specificity, aurc (with their intervals) and
    risk_coverage ({"coverage": [...], "risk": [...]}, the curve behind aurc).
"""
_CITATION = ""
SCALARS = ("accuracy", "precision", "sensitivity", "specificity", "f1", "roc_auc")
SELECTIVE = ("referred_share", "errors_referred", "decided_accuracy", "decided_sensitivity", "decided_specificity",
             "aurc")


class BinaryMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, threshold: float = 0.5, bootstrap_samples: int = 0, seed: int = 0,
                 referral_band=None, referred=None):
        labels, scores = np.asarray(references, dtype=int), np.asarray(predictions, dtype=np.float64)
        result = binary_metrics(labels, scores, threshold)
        band = None
        if referral_band is not None:
            band = (float(referral_band[0]), float(referral_band[1]))
            referred = in_band(scores, band) if referred is None else np.asarray(referred, dtype=bool)
            figures = selective_metrics(labels[None], scores[None], threshold, referred[None], undefined=0.0)
            result.update({name: float(figures[name][0]) for name in SELECTIVE}, referral_band=list(band),
                          risk_coverage=risk_coverage(labels, scores, threshold))
        if bootstrap_samples > 0:
            result["intervals"] = bootstrap_intervals(labels, scores, threshold, bootstrap_samples, seed,
                                                      None if band is None else referred)
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


def in_band(scores: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """The images strictly inside `band`: those the band refers."""
    return (scores > band[0]) & (scores < band[1])


def selective_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, referred: np.ndarray,
                      undefined: float) -> dict:
    """The selective figures of each row of (R, N) labels and scores, the `referred` images (R, N) referred
    (see the module's description)."""
    positive, decided_positive = labels == 1, scores >= threshold
    wrong = positive != decided_positive
    kept = ~referred
    tp, fn = np.sum(kept & positive & decided_positive, axis=1), np.sum(kept & positive & ~decided_positive, axis=1)
    tn, fp = np.sum(kept & ~positive & ~decided_positive, axis=1), np.sum(kept & ~positive & decided_positive, axis=1)
    return {
        "referred_share": _ratio(np.sum(referred, axis=1), labels.shape[1], undefined),
        "errors_referred": _ratio(np.sum(wrong & referred, axis=1), np.sum(wrong, axis=1), undefined),
        "decided_accuracy": _ratio(tp + tn, np.sum(kept, axis=1), undefined),
        "decided_sensitivity": _ratio(tp, tp + fn, undefined),
        "decided_specificity": _ratio(tn, tn + fp, undefined),
        "aurc": np.mean(_risks(wrong, _margins(scores, threshold)), axis=1),
    }


def risk_coverage(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """The risk-coverage curve of one data set: after deciding the k most certain images (by margin), the
    share decided (coverage) and the error rate among them (risk), k = 1..N."""
    wrong = (np.asarray(labels)[None] == 1) != (np.asarray(scores)[None] >= threshold)
    risks = _risks(wrong, _margins(np.asarray(scores, dtype=np.float64)[None], threshold))[0]
    return {"coverage": (np.arange(1, len(risks) + 1) / len(risks)).tolist(), "risk": risks.tolist()}


def _margins(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Each score's distance from the threshold in log-odds."""
    clipped = np.clip(scores, 1e-12, 1 - 1e-12)
    bound = np.clip(threshold, 1e-12, 1 - 1e-12)
    return np.abs(np.log(clipped / (1 - clipped)) - np.log(bound / (1 - bound)))


def _risks(wrong: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """(R, N): the error rate among the k most certain images of each row, k = 1..N."""
    order = np.argsort(-margins, axis=1, kind="stable")
    errors = np.cumsum(np.take_along_axis(wrong, order, axis=1), axis=1)
    return errors / np.arange(1, wrong.shape[1] + 1)


def bootstrap_intervals(labels: np.ndarray, scores: np.ndarray, threshold: float, samples: int, seed: int,
                        referred: np.ndarray | None = None) -> dict:
    """95 % percentile intervals over the resamples where a figure is defined (one without positives
    has no sensitivity, one without both classes no ROC-AUC)."""
    chosen = np.random.default_rng(seed).integers(0, len(labels), (samples, len(labels)))
    drawn = resampled_metrics(labels[chosen], scores[chosen], threshold, undefined=float("nan"))
    names = SCALARS
    if referred is not None:
        drawn.update(selective_metrics(labels[chosen], scores[chosen], threshold, referred[chosen],
                                       undefined=float("nan")))
        names = SCALARS + SELECTIVE
    return {name: [float(v) for v in np.nanpercentile(drawn[name], [2.5, 97.5])]
            if not np.all(np.isnan(drawn[name])) else [float("nan"), float("nan")] for name in names}


def _ratio(numerator, denominator, undefined: float = 0.0) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    defined = (denominator != 0) & ~np.isnan(numerator) & ~np.isnan(denominator)
    return np.where(defined, numerator / np.where(defined, denominator, 1.0), undefined)
