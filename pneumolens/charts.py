"""The figures a person sees beside the answer, drawn with matplotlib: the probability under each acquisition
change, one image's deletion and insertion curves, and explain.py's side-by-side figure of every map."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib import colormaps

from .explain import METHODS, TITLES
from .explain.overlay import COLORMAP, DEFAULT_BLEND, overlay
from .figures import figure_png, pyplot
from .presentation import FILM_GREY, low_end, scale_meaning
from .wording import percent


def faded_colormap(colormap: str = COLORMAP):
    """`colormap` as it looks over a film when its colour fades with the value: a matplotlib colormap for
    figures' colour bars."""
    from matplotlib.colors import ListedColormap

    levels = np.linspace(0.0, 1.0, 256)[:, None]
    colours = colormaps[colormap](levels[:, 0])[:, :3]
    return ListedColormap(levels * colours + (1 - levels) * np.array(FILM_GREY) / 255, name=f"{colormap}_faded")


ROBUSTNESS_KEPT, ROBUSTNESS_FLIPPED, ROBUSTNESS_MOVED = "#3b6fb6", "#d62728", "#b07800"


def robustness_figure_png(check) -> bytes:
    """A robustness check (`robustness.RobustnessCheck`): the shown probability under each change, the
    threshold as a line, flips red and moves into or out of the referral band amber."""
    def colour(outcome) -> str:
        return ROBUSTNESS_FLIPPED if outcome.flipped else ROBUSTNESS_MOVED if outcome.referred != check.in_band \
            else ROBUSTNESS_KEPT

    def mark(outcome) -> str:
        if outcome.flipped:
            return "  (flips)"
        return ("  (decides)" if check.in_band else "  (refers)") if outcome.referred != check.in_band else ""

    outcomes = check.outcomes
    figure, axis = pyplot().subplots(figsize=(7.2, 0.22 * len(outcomes) + 1.6), dpi=100)
    rows = range(len(outcomes))
    axis.scatter([outcome.probability for outcome in outcomes], rows, c=[colour(o) for o in outcomes], s=28,
                 zorder=3, marker="o")
    if check.band is not None:
        axis.axvspan(check.band.lower, check.band.upper, color="#e69f00", alpha=0.18, linewidth=0,
                     label=f"referral band {percent(check.band.lower)} to {percent(check.band.upper)}")
    axis.axvline(check.threshold, color="#d62728", linestyle="--", linewidth=1.2,
                 label=f"operating threshold {percent(check.threshold)}")
    axis.axvline(check.probability, color="#777", linewidth=1, label=f"unchanged image {percent(check.probability)}")
    axis.set_yticks(list(rows), [f"{outcome.name}{mark(outcome)}" for outcome in outcomes], fontsize=7)
    for label, outcome in zip(axis.get_yticklabels(), outcomes):
        label.set_color("#222" if colour(outcome) == ROBUSTNESS_KEPT else colour(outcome))
    axis.set(xlim=(0, 1), xlabel=f"shown probability of {check.positive_label}")
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
    kept = "the referral" if check.in_band else f"the decision {check.decision}"
    axis.set_title(f"Does {kept} hold? {check.held} of {len(outcomes)} changes keep it", fontsize=9)
    axis.legend(loc="lower left", fontsize=7, framealpha=0.9)
    figure.tight_layout()
    return figure_png(figure)


def curves_figure_png(curves) -> bytes:
    """One image's deletion and insertion curves (`service.ImageCurves`), one line per map (the random maps
    dashed or dotted grey)."""
    from .explain.faithfulness import CURVES, RANDOM, area, is_random, random_title

    curves_by_map, explained, fill = curves.curves, curves.explained_class, curves.fill
    figure, axes = pyplot().subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for axis, kind in zip(axes, CURVES):
        for name, by_metric in curves_by_map.items():
            curve = by_metric[f"{kind}_{fill}"]
            style = {"linestyle": "--" if name == RANDOM else ":", "color": "grey"} if is_random(name) else {}
            title = TITLES.get(name, random_title(name) if is_random(name) else name)
            axis.plot(np.linspace(0, 1, len(curve)), curve, label=f"{title}: area {area(curve):.2f}", **style)
        better = "lower" if kind == "deletion" else "higher"
        axis.set_title(f"{kind.capitalize()} ({better} area is more faithful)", fontsize=10)
        axis.set_xlabel(f"share of pixels {'removed' if kind == 'deletion' else 'revealed'} ({fill} fill), "
                        "highest-ranked first", fontsize=8)
        axis.set_ylabel(f"log-odds of {explained}", fontsize=8)
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure_png(figure)


def side_by_side(explanation, answer: str, opacity: float, colormap: str = COLORMAP, blend: str = DEFAULT_BLEND):
    """A figure: the image, then each method's overlay with its caption and colour scale; unavailable ones
    say why."""
    from matplotlib.cm import ScalarMappable

    methods = [m for m in METHODS if m in explanation.maps or m in explanation.unavailable]
    figure, axes = pyplot().subplots(1, 1 + len(methods), figsize=(4 * (1 + len(methods)), 5.4), dpi=100)
    probabilities = ", ".join(f"{label} {percent(p)}" for label, p in explanation.probabilities.items())
    axes[0].imshow(explanation.image)
    axes[0].set_title(f"{answer}\n{probabilities}\nexplaining: {explanation.explained_class}", fontsize=9)
    for axis, method in zip(axes[1:], methods):
        if method in explanation.maps:
            axis.imshow(overlay(explanation.image, explanation.maps[method], opacity, colormap, blend))
            axis.set_title(TITLES[method], fontsize=10)
            shown = faded_colormap(colormap) if blend == "value" else colormap
            scale = figure.colorbar(ScalarMappable(cmap=shown), ax=axis, orientation="horizontal", fraction=0.05,
                                    pad=0.03, ticks=[0, 1])
            scale.ax.set_xticklabels([low_end(blend), "high"], fontsize=7)
            scale.set_label(textwrap.fill("high: " + scale_meaning(method, explanation.explained_class), 48), fontsize=7)
        else:
            axis.text(0.5, 0.5, "not available:\n" + explanation.unavailable[method], ha="center", va="center",
                      wrap=True, fontsize=8)
            axis.set_title(method, fontsize=10)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure
