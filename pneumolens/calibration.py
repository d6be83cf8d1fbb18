"""Probabilities that mean what they say, and one decision wherever the model is used.

Both are fitted on the carved validation split and saved with a binary model:

- **The decision, folded into the classifier.** The classifier's bias is shifted so that the operating
  threshold falls where the two logits are equal: the top label of the logits is the decision, in
  PneumoLens and in a plain `pipeline("image-classification")` on the downloaded model alike. The
  pipeline's scores are then *decision scores* (0.5 at the operating threshold), not probabilities.
- **Platt scaling** of the logit difference d = z_positive - z_negative:
  P(positive) = sigmoid(scale * d + bias), fitted by maximum likelihood. This is what PneumoLens shows as
  the probability; the saved `operating_threshold` is sigmoid(bias), the calibrated probability at the
  fold, so "P >= threshold" and "top logit" are the same decision.

Calibration is measured as the expected calibration error of P(positive) over 15 equal-width bins
(`ECE_BINS`), the Brier score and the log loss, before and after, and, since fitting and measuring on the
same images flatters the fit, also cross-fitted: fitted on one half of the patients, measured on the other
("fold" here always means the decision folded into the bias, never a cross-validation fold).

    python -m pneumolens calibrate --model_name_or_path models/pneumolens-dinov2-small \\
        --dataset_name_or_dir ../shared/data/chest_xray
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from .decision import (
    CALIBRATION_KEY, THRESHOLD_KEY, Calibration, decision_boundary, operating_threshold,
)
from .errors import PneumoLensError
from .modeling import positive_index

logger = logging.getLogger(__name__)

ECE_BINS = 15
CALIBRATION_DIR = "eval/calibration"
FEW_IMAGES = 5


def fit_platt(differences: np.ndarray, truth: np.ndarray) -> Calibration:
    if len(set(np.asarray(truth).tolist())) < 2:
        raise PneumoLensError("Calibration needs images of both classes.")
    regression = LogisticRegression(C=np.inf, max_iter=1000).fit(np.asarray(differences)[:, None], truth)
    scale, bias = float(regression.coef_[0, 0]), float(regression.intercept_[0])
    if scale <= 0:
        raise PneumoLensError(f"Calibration failed: the fitted scale {scale:.3f} is not positive, so the "
                              "positive class's probability would fall as its logit rises.")
    return Calibration(scale, bias)


def calibration_metrics(truth: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> dict:
    """ECE over `bins` equal-width bins of P(positive), Brier score and log loss."""
    truth, probabilities = np.asarray(truth, float), np.clip(np.asarray(probabilities, float), 1e-12, 1 - 1e-12)
    shown, observed, counts = reliability_bins(truth, probabilities, bins)
    ece = sum(abs(p - o) * (n / len(truth)) for p, o, n in zip(shown, observed, counts))
    return {"ece": float(ece), "brier": float(np.mean((probabilities - truth) ** 2)),
            "log_loss": float(-np.mean(truth * np.log(probabilities) + (1 - truth) * np.log(1 - probabilities)))}


def reliability_bins(truth: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS):
    """Per non-empty equal-width bin of P(positive), in order: the mean shown probability, the observed
    share of positives and the number of images."""
    truth, probabilities = np.asarray(truth, float), np.asarray(probabilities, float)
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    used = [b for b in range(bins) if np.any(which == b)]
    return (np.array([probabilities[which == b].mean() for b in used]),
            np.array([truth[which == b].mean() for b in used]), np.array([np.sum(which == b) for b in used]))


def cross_fitted(differences: np.ndarray, truth: np.ndarray, groups: list[str], seed: int = 0) -> np.ndarray:
    """Calibrated probabilities, each from a fit on the other half of the patients."""
    patients = np.array(sorted(set(groups)))
    first_half = set(np.random.default_rng(seed).permutation(patients)[: len(patients) // 2])
    in_first_half = np.array([group in first_half for group in groups])
    calibrated = np.empty(len(truth))
    for held_out in (in_first_half, ~in_first_half):
        calibrated[held_out] = _sigmoid(fit_platt(differences[~held_out], truth[~held_out]).log_odds(differences[held_out]))
    return calibrated


def fold_decision(model, calibration: Calibration | None, storage_dtype: torch.dtype = torch.float32) -> dict:
    """Shift the classifier's bias so the current decision boundary is at equal logits, and save
    `calibration` (re-expressed for the shifted logits) and the threshold in the config; without a
    calibration the probabilities are the shifted softmax and the threshold 0.5.

    The shift is read back from the bias rounded to `storage_dtype` (how the weights will be saved), so the
    saved threshold is exactly where the stored logits are equal. Returns what changed.
    """
    config = model.config
    if config.num_labels != 2:
        raise PneumoLensError(f"Calibration needs a binary model; this one has {config.num_labels} classes.")
    boundary = decision_boundary(config)
    positive = positive_index(config)
    bias = model.classifier.bias.data  # the parameter's storage: the shift is no step of any graph
    before = float(bias[positive].float() - bias[1 - positive].float())
    with torch.no_grad():
        bias[positive] -= boundary / 2
        bias[1 - positive] += boundary / 2
        bias.copy_(bias.to(storage_dtype).to(bias.dtype))
    shift = before - float(bias[positive].float() - bias[1 - positive].float())
    folded = None if calibration is None else Calibration(
        calibration.scale, calibration.bias + calibration.scale * shift, calibration.method)
    setattr(config, CALIBRATION_KEY, asdict(folded) if folded else None)
    setattr(config, THRESHOLD_KEY, float(_sigmoid(folded.bias)) if folded else 0.5)
    return {"boundary": boundary, "shift": shift, "threshold": getattr(config, THRESHOLD_KEY)}


def shown_after(record: dict) -> Calibration:
    """What turns the logit difference before `calibrate`'s fold into the probability shown after it: the
    fitted calibration, or without one the folded softmax."""
    return _shown_after(Calibration(**record["fitted"]) if record["fitted"] else None, record["shift"])


def _shown_after(fitted: Calibration | None, shift: float) -> Calibration:
    return fitted or Calibration(1.0, -shift)


def recalibrated(probabilities: np.ndarray, calibration: Calibration, positive: int) -> np.ndarray:
    """(N, 2) probabilities of the model before `fold_decision` as the ones it shows after; `calibration`
    is `shown_after(record)`."""
    calibrated = _sigmoid(calibration.log_odds(_log_odds(probabilities, positive)))
    return np.stack([1 - calibrated, calibrated] if positive == 1 else [calibrated, 1 - calibrated], axis=1)


def calibrate(model, truth: np.ndarray, probabilities: np.ndarray, groups: list[str], out_dir: str | Path,
              storage_dtype: torch.dtype = torch.float32) -> dict:
    """Fit Platt scaling on the carved validation split's (N, 2) shown probabilities, fold the decision
    into `model`, and write calibration.json and reliability.png to `out_dir`. Returns the record.

    Where no calibration can be fitted (one class only, or scores that fall as the truth rises: a model
    that has not learnt), the decision is folded all the same and the probabilities stay uncalibrated.
    """
    config = model.config
    positive = positive_index(config)
    truth = np.asarray(truth, float)
    before = probabilities[:, positive]
    differences = _log_odds(probabilities, positive)
    current = Calibration.of(config)
    if current is not None:  # a calibrated model: refit on its own logits
        differences = (differences - current.bias) / current.scale
    try:
        calibration = fit_platt(differences, truth)
        cross_fitted_metrics = calibration_metrics(truth, cross_fitted(differences, truth, groups))
    except PneumoLensError as reason:
        logger.warning("%s The decision is folded into the classifier without a calibration.", reason)
        calibration, cross_fitted_metrics = None, None
    threshold_before = operating_threshold(config)
    folded = fold_decision(model, calibration, storage_dtype)
    after = _sigmoid(_shown_after(calibration, folded["shift"]).log_odds(differences))
    record = {
        "images": len(truth), "bins": ECE_BINS, "binning": f"{ECE_BINS} equal-width bins of P(positive)",
        "before": calibration_metrics(truth, before), "after": calibration_metrics(truth, after),
        "after_cross_fitted": cross_fitted_metrics,
        "calibration": getattr(config, CALIBRATION_KEY), "fitted": asdict(calibration) if calibration else None,
        "threshold_before": threshold_before, "threshold_after": folded["threshold"], "shift": folded["shift"],
        "decisions_changed": int(np.sum((before >= threshold_before) != (differences >= folded["shift"]))),
        "positive_share": float(truth.mean()),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(record, indent=2) + "\n")
    reliability_diagram(out / "reliability.png", truth, {"before (softmax)": before, "after": after},
                        config.id2label[positive])
    logger.info("Calibration: ECE %.4f -> %.4f, Brier %.4f -> %.4f; threshold %.4f -> %.4f",
                record["before"]["ece"], record["after"]["ece"], record["before"]["brier"],
                record["after"]["brier"], threshold_before, folded["threshold"])
    return record


def _log_odds(probabilities: np.ndarray, positive: int) -> np.ndarray:
    """The logit difference behind (N, 2) probabilities, from both columns: 1 - p loses the digits of a
    saturated probability."""
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-300, 1.0)
    return np.log(probabilities[:, positive]) - np.log(probabilities[:, 1 - positive])


def reliability_diagram(path, truth, curves: dict[str, np.ndarray], positive_name: str, bins: int = ECE_BINS):
    from .figures import pyplot, save_figure

    figure, (axis, counts) = pyplot().subplots(2, 1, figsize=(4.8, 5.6), dpi=120, sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1]})
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for (name, probabilities), marker in zip(curves.items(), "os"):
        ece = calibration_metrics(truth, probabilities, bins)["ece"]
        x, y, counts_per_bin = reliability_bins(truth, probabilities, bins)
        few = counts_per_bin < FEW_IMAGES
        line, = axis.plot(x, y, marker=marker, label=f"{name}: ECE {ece:.3f}")
        # A bin of one or two images is 0 or 1 by chance: drawn hollow, so the eye weighs it less.
        axis.plot(x[few], y[few], linestyle="none", marker=marker, markerfacecolor="white", color=line.get_color())
        counts.hist(probabilities, bins=edges, histtype="step", label=name)
    axis.set(ylabel=f"observed share {positive_name}",
             title=f"Reliability (carved validation split)\nhollow: bins of fewer than {FEW_IMAGES} images")
    axis.legend(loc="upper left", fontsize=8)
    counts.set(xlabel=f"shown P({positive_name})", ylabel="images", yscale="log")
    figure.tight_layout()
    save_figure(figure, path)


def calibration_section(record: dict, command: str) -> str:
    """The card's section: the figures before and after, the diagram and the command."""
    fitted = record["calibration"]
    after = "after: Platt scaling, fitted here" if fitted else "after: the folded softmax (no calibration fitted)"
    rows = [("before: softmax", record["before"]), (after, record["after"])]
    if record["after_cross_fitted"]:
        rows.append(("after: Platt scaling, cross-fitted (by patient halves)", record["after_cross_fitted"]))
    table = "\n".join(f"| {name} | {m['ece']:.4f} | {m['brier']:.4f} | {m['log_loss']:.4f} |" for name, m in rows)
    shown = (f"The probabilities PneumoLens shows are sigmoid({fitted['scale']:.4f} x (logit difference) + "
             f"{fitted['bias']:.4f}), saved in `config.json` as `{CALIBRATION_KEY}`. They are calibrated for images "
             f"like the carved split, where {record['positive_share']:.0%} are positive; where the finding is "
             f"rarer, the same image's true probability is lower." if fitted else
             "No calibration could be fitted on these images; the probabilities shown are the softmax of the "
             "folded classifier.")
    return (
        f"Measured on the carved validation split ({record['images']} images, {record['positive_share']:.0%} "
        f"positive). ECE: expected calibration error of the shown P(positive) over {record['binning']}.\n\n"
        f"| probabilities | ECE | Brier | log loss |\n|---|---|---|---|\n{table}\n\n"
        f"![Reliability diagram]({CALIBRATION_DIR}/reliability.png)\n\n"
        f"{shown} The decisions are those before calibration ({record['decisions_changed']} of "
        f"{record['images']} changed): the operating threshold {record['threshold_before']:.4f} on the softmax is "
        f"{record['threshold_after']:.4f} on the shown probability, and it is folded into the classifier's bias, "
        f"so the top logit (what `pipeline(\"image-classification\")` ranks first) is the decision.\n\n"
        f"Command: `{command}`")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))



if __name__ == "__main__":  # the command's earlier name: say where it went rather than do nothing
    raise SystemExit("error: this command is `python -m pneumolens calibrate` now, with the same options")


CARD_SECTION = "Calibration"


def write_card_section(model_dir: str | Path, record: dict, command: str) -> None:
    """The calibration's section in the model's card, where the model has one."""
    from .card import set_card_section

    card = Path(model_dir) / "README.md"
    if card.is_file():
        set_card_section(card, CARD_SECTION, calibration_section(record, command))
