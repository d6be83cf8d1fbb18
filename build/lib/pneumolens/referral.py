"""A third answer, chosen on validation data: the band around the operating threshold where a film is
referred to a person instead of decided.

**The signal** is the film's margin: the distance of its shown probability from the operating threshold,
in log-odds. Bernhardt et al. (2022) found no confidence score that consistently beats it on medical data.

**The band** is symmetric in log-odds: `width` either side of the threshold, two bounds on the shown
probability. One number, because the two sides cannot be fitted apart honestly: the carved split's few
errors on one side say little of where films from elsewhere err.

**The rule** (Learn then Test, Angelopoulos et al. 2021, with fixed-sequence testing): for a target error
rate `target_error` among the films decided and a confidence `confidence`, the chosen width is the
narrowest for which, on the carved validation split *and on each of its stressed copies* (which stand in
for films from elsewhere), the binomial test rejects "the error rate among the decided films is above the
target" at level 1 - `confidence`. Widths are tried from wide to narrow along a grid fixed before any label
is read (the widths that refer 50 %, 49.75 %, ... 0 % of the pooled films) and the walk stops at the first
width that fails; so with probability `confidence`, the error rate among decided films, on films like each
validation set, is at most the target. Requiring every set (an intersection-union test) needs no
multiplicity correction; the fixed sequence needs none either.

    python -m pneumolens referral-band --model_name_or_path models/pneumolens-dinov2-small \\
        --dataset_name_or_dir ../shared/data/chest_xray
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import beta, binom

from .card import set_card_section, set_card_subsection
from .decision import REFERRAL_KEY, ReferralBand, operating_threshold
from .errors import PneumoLensError
from .metrics import binary_metrics
from .modeling import positive_index
from .presentation import percent
from .stress import CLEAN

logger = logging.getLogger(__name__)

REFERRAL_DIR = "eval/referral"
TARGET_ERROR = 0.03
CONFIDENCE = 0.9
MOST_REFERRED = 0.5  # a band that must refer more than half of the films is no band: it is a failed model
GRID_STEP = 0.0025
BOOTSTRAP_SAMPLES = 1000  # behind the 95 % intervals of each set's selective figures


@dataclass(frozen=True)
class SetFigures:
    """One validation set under a band: what was referred, and the errors among what was decided."""
    images: int
    referred: int
    errors: int  # at the threshold, all films
    errors_referred: int
    decided_errors: int
    p_value: float  # of "the error rate among decided films is above the target"

    @property
    def decided(self) -> int:
        return self.images - self.referred

    def error_bound(self, confidence: float) -> float:
        """The one-sided Clopper-Pearson upper bound of the error rate among the decided films."""
        if self.decided == 0:
            return 1.0
        if self.decided_errors == self.decided:
            return 1.0
        return float(beta.ppf(confidence, self.decided_errors + 1, self.decided - self.decided_errors))

    def record(self, confidence: float) -> dict:
        decided = max(self.decided, 1)
        return {"images": self.images, "referred": self.referred, "referred_share": self.referred / self.images,
                "errors": self.errors, "errors_referred": self.errors_referred,
                "decided": self.decided, "decided_errors": self.decided_errors,
                "decided_error_rate": self.decided_errors / decided,
                "decided_error_bound": self.error_bound(confidence), "p_value": self.p_value}


def margins(positive_probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Each film's distance from the operating threshold in log-odds."""
    p = np.clip(np.asarray(positive_probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    t = float(np.clip(threshold, 1e-12, 1 - 1e-12))
    return np.abs(np.log(p / (1 - p)) - np.log(t / (1 - t)))


def set_figures(truth: np.ndarray, positive_probabilities: np.ndarray, threshold: float, width: float,
                target_error: float) -> SetFigures:
    truth = np.asarray(truth).astype(bool)
    scores = np.asarray(positive_probabilities, dtype=np.float64)
    wrong = truth != (scores >= threshold)
    referred = margins(scores, threshold) < width
    decided_errors = int(np.sum(wrong & ~referred))
    decided = int(np.sum(~referred))
    p_value = float(binom.cdf(decided_errors, decided, target_error)) if decided else 1.0
    return SetFigures(len(truth), int(referred.sum()), int(wrong.sum()), int(np.sum(wrong & referred)),
                      decided_errors, p_value)


def width_grid(pooled_margins: np.ndarray, most_referred: float = MOST_REFERRED,
               step: float = GRID_STEP) -> list[float]:
    """Widths from wide to narrow, each referring `step` less of the pooled films than the one before, down
    to 0; label-free, so the sequence is fixed before the test reads any label."""
    shares = np.arange(most_referred, -step / 2, -step)
    widths = [float(np.quantile(pooled_margins, share)) if share > 0 else 0.0 for share in shares]
    return list(dict.fromkeys(widths))  # a width that refers no more films than the next adds no test


@dataclass
class BandChoice:
    band: ReferralBand
    threshold: float
    target_error: float
    confidence: float
    sets: dict[str, SetFigures]
    tested: int  # widths tested before the walk stopped
    selective: dict[str, dict]  # per set: `binary_metrics` at the band, with 95 % bootstrap intervals

    def record(self) -> dict:
        return {"rule": RULE, "threshold": self.threshold, "target_error": self.target_error,
                "confidence": self.confidence, "band": self.band.saved(), "widths_tested": self.tested,
                "sets": {name: {**figures.record(self.confidence), "metrics": self.selective[name]}
                         for name, figures in self.sets.items()}}


RULE = ("Learn then Test with fixed-sequence testing: the narrowest symmetric band in log-odds around the "
        "operating threshold for which, on the carved validation split and on each of its stressed copies, a "
        "one-sided binomial test rejects 'the error rate among the decided films exceeds the target'")


def choose_band(truth: np.ndarray, positive_probabilities: dict[str, np.ndarray], threshold: float,
                target_error: float = TARGET_ERROR, confidence: float = CONFIDENCE,
                most_referred: float = MOST_REFERRED) -> BandChoice:
    """The referral band by the module's rule. `positive_probabilities` holds the shown probability of the
    positive class of the same validation films, unchanged (`stress.CLEAN`) and under each change; `truth`
    says which films are positive."""
    if not 0 < target_error < 1 or not 0 < confidence < 1:
        raise PneumoLensError(f"The target error ({target_error}) and the confidence ({confidence}) must be in (0, 1).")
    if CLEAN not in positive_probabilities:
        raise PneumoLensError("The referral band is chosen on the unchanged validation films and their stressed "
                              f"copies; the unchanged films ('{CLEAN}') are missing.")
    truth = np.asarray(truth).astype(bool)
    pooled = np.concatenate([margins(p, threshold) for p in positive_probabilities.values()])
    chosen, tested = None, 0
    for width in width_grid(pooled, most_referred):
        tested += 1
        sets = {name: set_figures(truth, p, threshold, width, target_error)
                for name, p in positive_probabilities.items()}
        if max(figures.p_value for figures in sets.values()) > 1 - confidence:
            break
        chosen = (width, sets)
    if chosen is None:
        raise PneumoLensError(
            f"No referral band that refers at most {100 * most_referred:.0f} % of the validation films keeps the error "
            f"rate among the decided films at or below {100 * target_error:.1f} % with {100 * confidence:.0f} % "
            "confidence, on the carved "
            "split and each stressed copy. The model is not good enough for a band; train it further, or ask for "
            "a larger --target_error.")
    width, sets = chosen
    band = ReferralBand.around(threshold, width, target_error=target_error, confidence=confidence)
    selective = {name: binary_metrics(truth, p, threshold, BOOTSTRAP_SAMPLES, referral_band=band.bounds)
                 for name, p in positive_probabilities.items()}
    return BandChoice(band, threshold, target_error, confidence, sets, tested, selective)



def update_model_band(model_dir: str | Path, config, truth: np.ndarray, positive_probabilities: dict[str, np.ndarray],
                      target_error: float, confidence: float, command: str) -> dict:
    """Choose the band (`choose_band`), save it in `model_dir`'s config, write eval/referral/referral.json and,
    where the model has a card, its "Referral band" section and the rule in "How to use". Returns the record.
    What `python -m pneumolens referral-band` and train_hf.py both do."""
    model_dir = Path(model_dir)
    choice = choose_band(truth, positive_probabilities, operating_threshold(config), target_error, confidence)
    setattr(config, REFERRAL_KEY, choice.band.saved())
    config.save_pretrained(model_dir)
    record = choice.record()
    out = model_dir / REFERRAL_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "referral.json").write_text(json.dumps(record, indent=2) + "\n")
    if (model_dir / "README.md").is_file():
        write_card_sections(model_dir / "README.md", record, config, command)
    clean = record["sets"][CLEAN]
    logger.info("Referral band %.4f-%.4f (%.3f log-odds either side of %.4f): %.1f %% of the carved split referred, "
                "%d of its %d errors", choice.band.lower, choice.band.upper, choice.band.width, choice.threshold,
                100 * clean["referred_share"], clean["errors_referred"], clean["errors"])
    return record


def write_card_sections(card: Path, record: dict, config, command: str) -> None:
    """The card's "Referral band" section, and the rule in its "How to use"."""
    set_card_section(card, "Referral band", referral_section(record, command))
    set_card_subsection(card, "How to use", "Refer or decide", how_to_refer(config))


def referral_section(record: dict, command: str) -> str:
    """The card's section: the band, its rule and what it did on each validation set."""
    band, sets = record["band"], record["sets"]
    rows = "\n".join(
        f"| {'carved split, unchanged' if name == CLEAN else name} | {s['images']} | {_with_interval(s['metrics'], 'referred_share')} "
        f"| {s['errors_referred']} of {s['errors']} | {_with_interval(s['metrics'], 'decided_accuracy')} "
        f"| {_with_interval(s['metrics'], 'decided_sensitivity')} | {_with_interval(s['metrics'], 'decided_specificity')} "
        f"| {s['decided_errors']} of {s['decided']}, at most {_share(s['decided_error_bound'], 2)} "
        f"| {_with_interval(s['metrics'], 'aurc', 4)} |"
        for name, s in sets.items())
    return (
        f"Between the shown probabilities {percent(band['lower'])} and {percent(band['upper'])} of the positive class "
        f"(the operating threshold {percent(record['threshold'])} inside, {band['width']:.3f} log-odds either side), "
        "the model does not decide: it refers the film to a person, and names the class it leans to. The app, "
        "the API, the MCP tools, the report and `explain.py` say so (`\"refer\": true`); the `pipeline` does "
        "not (How to use shows the rule in plain Transformers).\n\n"
        f"**Rule.** {record['rule']} (target {_share(record['target_error'], 1)}, confidence "
        f"{_share(record['confidence'])}; {record['widths_tested']} widths tested from wide to narrow). With "
        f"{_share(record['confidence'])} confidence, the error rate among the films decided is at most "
        f"{_share(record['target_error'], 1)} on films "
        "like each of these sets. Films from elsewhere may still err outside the band: the stressed copies "
        "stand in for them, they are not them.\n\n"
        "Each figure with its 95 % bootstrap interval; accuracy, sensitivity and specificity among the films decided; "
        f"the errors among them with the one-sided {_share(record['confidence'])} Clopper-Pearson bound of their rate; AURC: "
        "the area under the risk-coverage curve of the margin (lower is better).\n\n"
        "| validation set | films | referred | errors referred | accuracy decided | sensitivity decided "
        "| specificity decided | errors among decided | AURC |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"{rows}\n\n"
        f"Command: `{command}`")


def _share(value: float, decimals: int = 0) -> str:
    return f"{100 * value:.{decimals}f} %"


def _with_interval(metrics: dict, name: str, digits: int = 3) -> str:
    low, high = metrics.get("intervals", {}).get(name, (None, None))
    value = f"{metrics[name]:.{digits}f}"
    return value if low is None else f"{value} [{low:.{digits}f}, {high:.{digits}f}]"


def how_to_refer(config) -> str:
    """The card's "How to use" words on the referral, in plain Transformers."""
    positive = config.id2label[positive_index(config)]
    return (
        f"Where `config.json` has a `{REFERRAL_KEY}`, PneumoLens refers a film whose shown probability of {positive} "
        "lies strictly inside it to a person, and says which class it leans to; the `pipeline` decides every film. "
        "With `probability` and `decision` as above:\n\n"
        "```python\n"
        f"band = getattr(model.config, \"{REFERRAL_KEY}\", None)  # None: a model without one decides every film\n"
        "refer = band is not None and band[\"lower\"] < float(probability) < band[\"upper\"]\n"
        "answer = f\"refer: a radiologist should read this film (leans to {decision})\" if refer else decision\n"
        "```")
