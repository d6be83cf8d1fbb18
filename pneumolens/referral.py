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

**The second reason, stability** (`decision.StabilityRule`): a film decided outside the band is referred
when at least `k` of a few acquisition changes (a prefix of `STABILITY_CHANGES`) move it into the band or
across the threshold: an answer that does not hold under the variation a film from another site brings.
Test-time changes as an uncertainty signal under shift: Ayhan & Berens (2018), Wang et al. (2019). The band
width, the prefix and `k` are chosen together by the same test: for the band alone and for each (prefix, k)
beside it, a path of widths from wide to narrow, each setting's share of the pooled validation films
referred label-free, so every path is fixed before any label is read; along each path the walk stops at the
first setting where one set fails, at the level split evenly between the paths (Bonferroni: one path
through every setting stops at the first failure of any rule), and the chosen setting is the one that
passed and refers the fewest films. For that the stressed copies are checked too: a film from elsewhere
arrives changed, and is then checked. Only films within `MOST_CHECKED` log-odds of the threshold are
checked (the cost of the choice); the rule's zone is the margin of the furthest validation film any of its
changes moved, and a served film beyond it costs no extra pass.

    python -m pneumolens referral-band --model_name_or_path models/pneumolens-dinov2-small \\
        --dataset_name_or_dir ../shared/data/chest_xray
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from .card import set_card_section, set_card_subsection
from .decision import REFERRAL_KEY, STABILITY_KEY, ReferralBand, StabilityRule, operating_threshold
from .errors import PneumoLensError
from .metrics import binary_metrics
from .modeling import positive_index
from .wording import percent
from .stress import CLEAN, predict_checked

logger = logging.getLogger(__name__)

REFERRAL_DIR = "eval/referral"
PROBABILITIES_FILE = "validation_probabilities.npz"
TARGET_ERROR = 0.03
CONFIDENCE = 0.9
MOST_REFERRED = 0.5  # a band that must refer more than half of the films is no band: it is a failed model
GRID_STEP = 0.0025
BOOTSTRAP_SAMPLES = 1000  # behind the 95 % intervals of each set's selective figures
# The stability rule's candidate changes, in the order its nested sets take them: small changes of framing,
# contrast and exposure (a slight zoom first), each deterministic, so a film gets the same answer each time.
STABILITY_CHANGES = ("zoom_centre_80", "contrast_0.6", "gamma_1.7", "gamma_0.6")
MOST_CHECKED = 5.0  # log-odds from the threshold: films further out are not checked while choosing
TRIAGE_SENSITIVITIES = (0.99, 0.98)  # the sensitivity among decided films at which the triage figure is read


@dataclass(frozen=True)
class SetFigures:
    """One validation set under a band: what was referred, and the errors among what was decided."""
    images: int
    referred: int
    errors: int  # at the threshold, all films
    errors_referred: int
    decided_errors: int
    p_value: float  # of "the error rate among decided films is above the target"
    unstable: int = 0  # of the referred, those the stability rule refers (outside the band)
    errors_unstable: int = 0  # of the errors referred, those the stability rule refers

    @property
    def decided(self) -> int:
        return self.images - self.referred

    def error_bound(self, confidence: float) -> float:
        """The one-sided Clopper-Pearson upper bound of the error rate among the decided films."""
        if self.decided == 0:
            return 1.0
        test = binomtest(self.decided_errors, self.decided, alternative="less")
        return float(test.proportion_ci(confidence_level=confidence, method="exact").high)

    def record(self, confidence: float) -> dict:
        decided = max(self.decided, 1)
        return {"images": self.images, "referred": self.referred, "referred_share": self.referred / self.images,
                "errors": self.errors, "errors_referred": self.errors_referred,
                "decided": self.decided, "decided_errors": self.decided_errors,
                "decided_error_rate": self.decided_errors / decided,
                "decided_error_bound": self.error_bound(confidence), "p_value": self.p_value,
                "referred_unstable": self.unstable, "errors_referred_unstable": self.errors_unstable}


def margins(positive_probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Each film's distance from the operating threshold in log-odds."""
    p = np.clip(np.asarray(positive_probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    t = float(np.clip(threshold, 1e-12, 1 - 1e-12))
    return np.abs(np.log(p / (1 - p)) - np.log(t / (1 - t)))


def set_figures(truth: np.ndarray, positive_probabilities: np.ndarray, threshold: float, width: float,
                target_error: float, unstable: np.ndarray | None = None) -> SetFigures:
    """One set's figures at a band of `width`, the films `unstable` marks referred too."""
    truth = np.asarray(truth).astype(bool)
    scores = np.asarray(positive_probabilities, dtype=np.float64)
    wrong = truth != (scores >= threshold)
    in_band = margins(scores, threshold) < width
    unstable = np.zeros(len(truth), bool) if unstable is None else unstable & ~in_band
    referred = in_band | unstable
    decided_errors = int(np.sum(wrong & ~referred))
    decided = int(np.sum(~referred))
    p_value = float(binomtest(decided_errors, decided, target_error, alternative="less").pvalue) if decided else 1.0
    return SetFigures(len(truth), int(referred.sum()), int(wrong.sum()), int(np.sum(wrong & referred)),
                      decided_errors, p_value, int(unstable.sum()), int(np.sum(wrong & unstable)))


def width_grid(pooled_margins: np.ndarray, most_referred: float = MOST_REFERRED,
               step: float = GRID_STEP) -> list[float]:
    """Widths from wide to narrow, each referring `step` less of the pooled films than the one before, down
    to 0; label-free, so the sequence is fixed before the test reads any label."""
    shares = np.arange(most_referred, -step / 2, -step)
    widths = [float(np.quantile(pooled_margins, share)) if share > 0 else 0.0 for share in shares]
    return list(dict.fromkeys(widths))  # a width that refers no more films than the next adds no test


@dataclass(frozen=True)
class Setting:
    """One point of the path: a band `width` either side of the threshold, and the stability rule's changes
    (a prefix of the candidates; none: the band alone) of which `min_moved` must move a film to refer it."""
    width: float
    changes: tuple[str, ...] = ()
    min_moved: int = 0
    share: float = 0.0  # of the pooled validation films referred: the path's order, label-free


class ValidationSets:
    """The validation sets as the walk reads them: each film's shown log-odds from the threshold, unchanged
    and under each candidate change (NaN where the film was not checked)."""

    def __init__(self, probabilities: dict[str, dict[str, np.ndarray]], threshold: float, changes: tuple[str, ...]):
        if CLEAN not in probabilities:
            raise PneumoLensError("The referral band is chosen on the unchanged validation films and their stressed "
                                  f"copies; the unchanged films ('{CLEAN}') are missing.")
        centre = _log_odds(threshold)
        self.threshold, self.changes = threshold, changes
        self.scores = {name: np.asarray(by_check[CLEAN], dtype=np.float64) for name, by_check in probabilities.items()}
        self.log_odds = {name: _log_odds(scores) - centre for name, scores in self.scores.items()}
        self.changed = {name: np.stack([_log_odds(np.asarray(by_check[change], dtype=np.float64)) - centre
                                        for change in changes]) if changes else np.zeros((0, len(self.scores[name])))
                        for name, by_check in probabilities.items()}

    def referred(self, name: str, setting: Setting) -> tuple[np.ndarray, np.ndarray]:
        """(inside the band, referred by the stability rule) of one set's films."""
        log_odds = self.log_odds[name]
        in_band = np.abs(log_odds) < setting.width
        if not setting.changes:
            return in_band, np.zeros(len(log_odds), bool)
        moved = self.moved(name, setting.width)[:len(setting.changes)]
        return in_band, ~in_band & (moved.sum(axis=0) >= setting.min_moved)

    def moved(self, name: str, width: float) -> np.ndarray:
        """(changes, films): the change puts the film inside a band of `width` or across the threshold."""
        changed, log_odds = self.changed[name], self.log_odds[name]
        return ~np.isnan(changed) & ((np.abs(changed) < width) | ((changed >= 0) != (log_odds >= 0)))

    def zone_width(self, setting: Setting) -> float:
        """The margin of the furthest film decided outside the band that any of the setting's changes moves:
        beyond it no validation film needs the check."""
        furthest = [np.abs(self.log_odds[name])[(self.moved(name, setting.width)[:len(setting.changes)].any(axis=0))
                                                & (np.abs(self.log_odds[name]) >= setting.width)]
                    for name in self.scores]
        return float(max((part.max() for part in furthest if part.size), default=setting.width))


def families(changes: tuple[str, ...]) -> list[tuple[tuple[str, ...], int]]:
    """The rules a band may be paired with: none, then each prefix of `changes` with each number of them that
    must move a film."""
    return [((), 0), *((changes[:used], min_moved) for used in range(1, len(changes) + 1)
                       for min_moved in range(1, used + 1))]


def family_path(sets: ValidationSets, family: tuple[tuple[str, ...], int], widths: list[float]) -> list[Setting]:
    """One family's settings from the widest band to the narrowest, each with the share of the pooled
    validation films it refers (label-free)."""
    films = sum(len(scores) for scores in sets.scores.values())
    path = []
    for width in widths:
        setting = Setting(width, *family)
        referred = sum(int(np.sum(np.logical_or(*sets.referred(name, setting)))) for name in sets.scores)
        path.append(Setting(width, *family, share=referred / films))
    return path


@dataclass
class ReferralChoice:
    band: ReferralBand
    rule: StabilityRule | None
    threshold: float
    target_error: float
    confidence: float
    sets: dict[str, SetFigures]
    tested: int  # settings tested before each path's walk stopped, all paths together
    path: int  # settings on all paths
    selective: dict[str, dict]  # per set: `binary_metrics` of the chosen setting, with 95 % bootstrap intervals
    triage: dict[str, dict]  # per set: the share of NORMAL films decided alone at each triage sensitivity
    families: dict[str, float | None]  # per rule beside the band: the share its last passing setting refers

    def record(self) -> dict:
        return {"rule": RULE, "threshold": self.threshold, "target_error": self.target_error,
                "confidence": self.confidence, "band": self.band.saved(),
                "stability": self.rule.saved() if self.rule else None, "settings_tested": self.tested,
                "settings_on_paths": self.path, "families": self.families,
                "sets": {name: {**figures.record(self.confidence), "metrics": self.selective[name],
                                "triage": self.triage[name]}
                         for name, figures in self.sets.items()}}


RULE = ("Learn then Test with fixed-sequence testing: for the band alone and for each stability rule beside it (a "
        "prefix of the candidate changes, and how many of them must move a film), a path of settings from the "
        "widest band to the narrowest, ordered by the share of the pooled validation films referred; along each "
        "path, the walk goes on while, on the carved validation split and on each of its stressed copies, a "
        "one-sided binomial test rejects 'the error rate among the decided films exceeds the target' at the level "
        "split evenly between the paths (Bonferroni), and the setting chosen is the one referring least of those "
        "that passed")


def choose_band(truth: np.ndarray, positive_probabilities: dict[str, np.ndarray], threshold: float,
                target_error: float = TARGET_ERROR, confidence: float = CONFIDENCE,
                most_referred: float = MOST_REFERRED) -> ReferralChoice:
    """The referral band alone (`choose_referral` without a stability rule): `positive_probabilities` holds
    the shown probability of the positive class of each validation set."""
    return choose_referral(truth, {name: {CLEAN: p} for name, p in positive_probabilities.items()}, threshold, (),
                           target_error, confidence, most_referred)


def choose_referral(truth: np.ndarray, probabilities: dict[str, dict[str, np.ndarray]], threshold: float,
                    changes: tuple[str, ...] = STABILITY_CHANGES, target_error: float = TARGET_ERROR,
                    confidence: float = CONFIDENCE, most_referred: float = MOST_REFERRED) -> ReferralChoice:
    """The band and the stability rule by the module's rule. `probabilities` holds, for the same validation
    films unchanged (`stress.CLEAN`) and under each stress change, the shown probability of the positive
    class as they are (`CLEAN`) and under each of `changes` (NaN: not checked); `truth` says which films are
    positive."""
    if not 0 < target_error < 1 or not 0 < confidence < 1:
        raise PneumoLensError(f"The target error ({target_error}) and the confidence ({confidence}) must be in (0, 1).")
    truth = np.asarray(truth).astype(bool)
    sets = ValidationSets(probabilities, threshold, tuple(changes))
    widths = width_grid(np.concatenate([np.abs(log_odds) for log_odds in sets.log_odds.values()]), most_referred)
    paths = [family_path(sets, family, widths) for family in families(sets.changes)]
    level = (1 - confidence) / len(paths)

    def passing(setting: Setting) -> dict[str, SetFigures] | None:
        figures = {name: set_figures(truth, scores, threshold, setting.width, target_error,
                                     sets.referred(name, setting)[1]) for name, scores in sets.scores.items()}
        return figures if max(f.p_value for f in figures.values()) <= level else None

    walks = [_walk(path, passing) for path in paths]
    passed = [last for last, _ in walks if last is not None]
    tested = sum(count for _, count in walks)
    if not passed:
        raise PneumoLensError(
            f"No referral band that refers at most {100 * most_referred:.0f} % of the validation films keeps the error "
            f"rate among the decided films at or below {100 * target_error:.1f} % with {100 * confidence:.0f} % "
            "confidence, on the carved "
            "split and each stressed copy. The model is not good enough for a band; train it further, or ask for "
            "a larger --target_error.")
    # The least referred; at an equal share, the cheaper rule.
    setting, figures = min(passed, key=lambda chosen: (chosen[0].share, len(chosen[0].changes), chosen[0].min_moved))
    band = ReferralBand.around(threshold, setting.width, target_error=target_error, confidence=confidence)
    rule = StabilityRule(setting.changes, setting.min_moved, sets.zone_width(setting)) if setting.changes else None
    selective = {name: binary_metrics(truth, scores, threshold, BOOTSTRAP_SAMPLES, referral_band=band.bounds,
                                      referred=np.logical_or(*sets.referred(name, setting)))
                 for name, scores in sets.scores.items()}
    every = [setting for path in paths for setting in path]
    triage = {name: triage_figures(truth, sets, name, setting, every) for name in sets.scores}
    return ReferralChoice(band, rule, threshold, target_error, confidence, figures, tested, len(every), selective,
                          triage, {_family_name(path[0]): last[0].share if last else None
                                   for path, (last, _) in zip(paths, walks) if path})


def _walk(path: list[Setting], passing) -> tuple[tuple | None, int]:
    """Fixed-sequence testing along `path`: (the last setting that passed with its figures, or None; how many
    settings were tested)."""
    last = None
    for tested, setting in enumerate(path, 1):
        figures = passing(setting)
        if figures is None:
            return last, tested
        last = (setting, figures)
    return last, len(path)


def _family_name(setting: Setting) -> str:
    return f"{setting.min_moved} of {'+'.join(setting.changes)}" if setting.changes else "band alone"


def triage_figures(truth: np.ndarray, sets: ValidationSets, name: str, chosen: Setting, path: list[Setting]) -> dict:
    """The share of a set's NORMAL (negative) films decided NORMAL without a person at the chosen setting and,
    as a triage product is judged (Plesner et al. 2024), the most of them any setting of the path decides
    while the sensitivity among the decided films stays at or above each of `TRIAGE_SENSITIVITIES`."""
    def alone(setting: Setting) -> tuple[float, float]:
        decided = ~np.logical_or(*sets.referred(name, setting))
        says_positive = sets.log_odds[name] >= 0
        positives = truth & decided
        sensitivity = float(np.sum(positives & says_positive) / positives.sum()) if positives.any() else 1.0
        return float(np.sum(~truth & decided & ~says_positive) / max(int((~truth).sum()), 1)), sensitivity

    points = [alone(setting) for setting in path]
    return {"normal_decided_alone": alone(chosen)[0],
            **{f"normal_decided_alone_at_sensitivity_{level:g}": max(
                (share for share, sensitivity in points if sensitivity >= level), default=0.0)
               for level in TRIAGE_SENSITIVITIES}}


def _log_odds(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def checked_probabilities(model, processor, images: list, stressed: dict[str, np.ndarray], changes: tuple[str, ...],
                          seed: int, batch_size: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """What the choice reads ({set: {check: shown probability of the positive class}}): the validation sets'
    probabilities `stressed` ({set: (N, num_labels)}, as `stress.predict_stressed` gives them for `images`)
    and, for each film within `MOST_CHECKED` log-odds of the threshold, its set's copy under each of `changes`
    (one forward pass per batch and change)."""
    positive, threshold = positive_index(model.config), operating_threshold(model.config)
    checked = predict_checked(model, processor, images, stressed, tuple(changes),
                              lambda p: margins(p[:, positive], threshold) < MOST_CHECKED, seed, batch_size)
    return {name: {check: p[:, positive] for check, p in by_check.items()} for name, by_check in checked.items()}


def save_probabilities(path: Path, truth: np.ndarray, probabilities: dict[str, dict[str, np.ndarray]]) -> None:
    """The numbers the choice read, so that it can be made again without a forward pass (`load_probabilities`)."""
    np.savez_compressed(path, truth=np.asarray(truth, bool),
                        **{f"{name}/{check}": p for name, by_check in probabilities.items() for check, p in by_check.items()})


def load_probabilities(path: Path) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    with np.load(path) as saved:
        probabilities: dict[str, dict[str, np.ndarray]] = {}
        for key in saved.files:
            if key != "truth":
                name, check = key.split("/")
                probabilities.setdefault(name, {})[check] = saved[key]
        return saved["truth"], probabilities


def update_model_referral(model_dir: str | Path, config, truth: np.ndarray,
                          probabilities: dict[str, dict[str, np.ndarray]], changes: tuple[str, ...],
                          target_error: float, confidence: float, command: str) -> dict:
    """Choose the band and the stability rule (`choose_referral`), save them in `model_dir`'s config, write
    eval/referral/referral.json (and the probabilities it read) and, where the model has a card, its
    "Referral band" section and the rule in "How to use". Returns the record. What `python -m pneumolens
    referral-band` and train_hf.py both do."""
    model_dir = Path(model_dir)
    choice = choose_referral(truth, probabilities, operating_threshold(config), changes, target_error, confidence)
    setattr(config, REFERRAL_KEY, choice.band.saved())
    setattr(config, STABILITY_KEY, choice.rule.saved() if choice.rule else None)
    config.save_pretrained(model_dir)
    record = choice.record()
    out = model_dir / REFERRAL_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "referral.json").write_text(json.dumps(record, indent=2) + "\n")
    save_probabilities(out / PROBABILITIES_FILE, truth, probabilities)
    if (model_dir / "README.md").is_file():
        write_card_sections(model_dir / "README.md", record, config, command)
    clean = record["sets"][CLEAN]
    logger.info("Referral band %.4f-%.4f (%.3f log-odds either side of %.4f), stability rule %s: %.1f %% of the "
                "carved split referred, %d of its %d errors", choice.band.lower, choice.band.upper, choice.band.width,
                choice.threshold, record["stability"], 100 * clean["referred_share"], clean["errors_referred"],
                clean["errors"])
    return record


def write_card_sections(card: Path, record: dict, config, command: str) -> None:
    """The card's "Referral band" section, and the rule in its "How to use"."""
    set_card_section(card, "Referral band", referral_section(record, command))
    set_card_subsection(card, "How to use", "Refer or decide", how_to_refer(config))


def referral_section(record: dict, command: str) -> str:
    """The card's section: the band, the stability rule, how they were chosen and what they did on each
    validation set."""
    band, sets = record["band"], record["sets"]
    rows = "\n".join(
        f"| {'carved split, unchanged' if name == CLEAN else name} | {s['images']} "
        f"| {_with_interval(s['metrics'], 'referred_share')} | {s['referred'] - s['referred_unstable']} "
        f"| {s['referred_unstable']} | {s['errors_referred']} of {s['errors']} ({s['errors_referred_unstable']}) "
        f"| {_with_interval(s['metrics'], 'decided_accuracy')} | {_with_interval(s['metrics'], 'decided_sensitivity')} "
        f"| {_with_interval(s['metrics'], 'decided_specificity')} "
        f"| {s['decided_errors']} of {s['decided']}, at most {_share(s['decided_error_bound'], 2)} "
        f"| {_share(s['triage']['normal_decided_alone'], 1)} | "
        + " | ".join(_share(s['triage'][f'normal_decided_alone_at_sensitivity_{level:g}'], 1)
                     for level in TRIAGE_SENSITIVITIES) + " |"
        for name, s in sets.items())
    triage_columns = " | ".join(f"NORMAL decided alone, sensitivity ≥ {_share(level)}" for level in TRIAGE_SENSITIVITIES)
    return (
        f"Between the shown probabilities {percent(band['lower'])} and {percent(band['upper'])} of the positive class "
        f"(the operating threshold {percent(record['threshold'])} inside, {band['width']:.3f} log-odds either side), "
        "the model does not decide: it refers the film to a person, and names the class it leans to. "
        f"{stability_sentence(record['stability'])} The app, the API, the MCP tools, the report and `explain.py` "
        "say so (`\"refer\": true`, and why in `\"refer_reason\"`); the `pipeline` does not (How to use shows the "
        "rule in plain Transformers).\n\n"
        f"**Rule.** {record['rule']} (target {_share(record['target_error'], 1)}, confidence "
        f"{_share(record['confidence'])}; {len(record['families'])} paths, {record['settings_tested']} of their "
        f"{record['settings_on_paths']} settings tested). With {_share(record['confidence'])} confidence, the error rate among the films decided is "
        f"at most {_share(record['target_error'], 1)} on films like each of these sets. Films from elsewhere may "
        "still err where nothing refers them: the stressed copies stand in for them, they are not them.\n\n"
        "Each figure with its 95 % bootstrap interval; referred, then how many of them the band and the stability "
        "rule refer; errors referred (by the stability rule); accuracy, sensitivity and specificity among the films "
        f"decided; the errors among them with the one-sided {_share(record['confidence'])} Clopper-Pearson bound of "
        "their rate; the share of the NORMAL films decided NORMAL without a person at this rule, and, as a triage "
        "product is judged (Plesner et al. 2024), the most of them any setting of the paths decides while the "
        "sensitivity among the decided films stays at or above 99 % and 98 % (read on the same films: a description, "
        "not a guarantee).\n\n"
        f"| validation set | films | referred | by the band | by stability | errors referred | accuracy decided "
        f"| sensitivity decided | specificity decided | errors among decided | NORMAL decided alone | {triage_columns} |\n"
        f"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{'---:|' * len(TRIAGE_SENSITIVITIES)}\n"
        f"{rows}\n\n"
        f"Command: `{command}`")


def stability_sentence(stability: dict | None) -> str:
    """The stability rule in words, for the card and the docs."""
    if not stability:
        return "The model has no stability rule: only the band refers."
    changes = ", ".join(f"`{name}`" for name in stability["changes"])
    moved = (f"{changes} moves" if len(stability["changes"]) == 1 else
             f"at least {stability['min_moved']} of {len(stability['changes'])} small acquisition changes ({changes}) move")
    return (f"A film decided outside the band is referred too when {moved} its probability into the band or across "
            "the threshold: its answer does not hold. Only films within "
            f"{stability['zone_width']:.2f} log-odds of the threshold are checked, the furthest a change moved a "
            f"validation film (films further than {MOST_CHECKED:.1f} log-odds were not checked while choosing); the "
            "others cost no extra forward pass.")


def _share(value: float, decimals: int = 0) -> str:
    return f"{100 * value:.{decimals}f} %"


def _with_interval(metrics: dict, name: str, digits: int = 3) -> str:
    low, high = metrics.get("intervals", {}).get(name, (None, None))
    value = f"{metrics[name]:.{digits}f}"
    return value if low is None else f"{value} [{low:.{digits}f}, {high:.{digits}f}]"


def how_to_refer(config) -> str:
    """The card's "How to use" words on the referral, in plain Transformers."""
    positive = config.id2label[positive_index(config)]
    rule = StabilityRule.of(config)
    stability = "" if rule is None else (
        f"\n\nWith a `{STABILITY_KEY}` too, a film decided outside the band whose probability lies within "
        f"`zone_width` log-odds of the threshold is made again under each of its `changes` (PneumoLens's stress "
        f"changes, `pneumolens.stress.stress_change(name)(image, 0, 0)`) and referred when at least `min_moved` of "
        "them put its probability inside the band or on the other side of the threshold.")
    return (
        f"Where `config.json` has a `{REFERRAL_KEY}`, PneumoLens refers a film whose shown probability of {positive} "
        "lies strictly inside it to a person, and says which class it leans to; the `pipeline` decides every film. "
        "With `probability` and `decision` as above:\n\n"
        "```python\n"
        f"band = getattr(model.config, \"{REFERRAL_KEY}\", None)  # None: a model without one decides every film\n"
        "refer = band is not None and band[\"lower\"] < float(probability) < band[\"upper\"]\n"
        "answer = f\"refer: a radiologist should read this film (leans to {decision})\" if refer else decision\n"
        f"```{stability}")
