"""What a person reads beside a map or a probability, the same on the page, in the report and from
`explain.py`: probabilities written carefully, each map's colour scale in words, and a map's verdict in
plain words with its measurement kept for those who ask; the page's Markdown, HTML and CSS. The figures are
`charts` (matplotlib) and `sheets` (PIL); the words every layer shares, `wording`.
"""

from __future__ import annotations

import html

import numpy as np
from matplotlib import colormaps

from .decision import NOT_A_RADIOGRAPH
from .wording import disclaimer_markdown, percent  # noqa: F401 (the page states the disclaimer from here)
from .explain import HOW_TO_READ, REGISTRY, TITLES
from .explain.overlay import COLORMAP, DEFAULT_BLEND
from .explain.reading import EDGE_AREA, EDGE_FRACTION
RELATIVE = "relative to this image's strongest region"
# The out-of-distribution verdict's warning, in the record and on the page.
RELATIVE_NOTE = ("Each map's colours are relative to its own strongest region in this image: compare regions "
                 "within one map, not between maps or images.")
FADE_NOTE = "Where a map is low its colour fades, so the film shows through."
# What the colour scale's bar is drawn over when a map's colour fades with its value: a film's mid grey.
FILM_GREY = (176, 176, 176)


def relative_note(blend: str = DEFAULT_BLEND) -> str:
    return f"{RELATIVE_NOTE} {FADE_NOTE}" if blend == "value" else RELATIVE_NOTE


def scale_meaning(method: str, explained_label: str, relative: bool = True) -> str:
    """What the high end of `method`'s colour scale means, in words (with `relative`: to what)."""
    meaning = REGISTRY[method].scale_high.format(label=explained_label)
    return f"{meaning}, {RELATIVE}" if relative else meaning


def css_gradient(colormap: str = COLORMAP, stops: int = 11, blend: str = DEFAULT_BLEND) -> str:
    """`colormap` as a CSS background, low on the left: drawn by the browser, once per page. Where the map's
    colour fades with its value (`blend` "value"), the bar fades the same way over a film's grey."""
    colours = colormaps[colormap](np.linspace(0.0, 1.0, stops))[:, :3]
    fade = blend == "value"
    parts = [f"rgba({r * 255:.0f},{g * 255:.0f},{b * 255:.0f},{i / (stops - 1) if fade else 1:.2f}) "
             f"{100 * i / (stops - 1):.0f}%" for i, (r, g, b) in enumerate(colours)]
    return f"linear-gradient(to right, {', '.join(parts)})" + (f", rgb{FILM_GREY}" if fade else "")


def scale_css(colormap: str = COLORMAP, blend: str = DEFAULT_BLEND) -> str:
    """The styles `scale_html` needs (the page and the report include them once)."""
    return (".colour-scale{margin:3px 0;font-size:12px;line-height:1.25}"
            ".colour-scale .scale-row{display:flex;align-items:center;gap:4px;white-space:nowrap}"
            f".colour-scale .scale-bar{{flex:1 1 auto;max-width:160px;height:10px;border:1px solid #888;"
            f"background:{css_gradient(colormap, blend=blend)};-webkit-print-color-adjust:exact;"
            "print-color-adjust:exact}"
            ".colour-scale .scale-end,.colour-scale .scale-meaning{color:#444}")


def low_end(blend: str = DEFAULT_BLEND) -> str:
    """The low end of a colour scale in words: where the colour fades with the value, the film shows there."""
    return "low (clear)" if blend == "value" else "low"


def scale_html(method: str, explained_label: str, relative: bool = True, blend: str = DEFAULT_BLEND) -> str:
    """One map's colour scale: the bar from low to high (where the colour fades with the value, low is
    clear), and what high means (with `relative`: to what; the page says that once for all maps)."""
    meaning = html.escape(scale_meaning(method, explained_label, relative))
    return (f'<div class="colour-scale" id="scale-{method}"><div class="scale-row"><span class="scale-end">{low_end(blend)}'
            f'</span><span class="scale-bar"></span><span class="scale-end">high</span></div>'
            f'<div class="scale-meaning">high: {meaning}</div></div>')


def ordinal(rank: int) -> str:
    return f"{rank}{'th' if 11 <= rank % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(rank % 10, 'th')}"


def verdict_line(standing, rank: int, of: int) -> str:
    """A map's faithfulness verdict in plain words, with its rank on this model."""
    if standing.passes is None:
        return "faithfulness not measured for this model"
    if standing.passes:
        return f"✓ passed the faithfulness test, {ordinal(rank)} of {of}"
    return (f"✗ failed the faithfulness test, {ordinal(rank)} of {of}: a view of the model, not evidence for "
            "the decision")


def caption_markdown(standing, rank: int, of: int, explained_label: str, settings: str = "",
                     unavailable: str | None = None, reading=None, blend: str = DEFAULT_BLEND) -> str:
    """A map's caption on the page: title and verdict, its scale, the caveat where its `reading` peaks at the
    film's edge, how to read it, and the settings and the measured intervals behind a disclosure."""
    title = TITLES[standing.name]
    if unavailable is not None:
        return f"**{title}: not available for this model.** {unavailable}"
    edge = edge_share_line(reading) if reading is not None else ""
    details = " ".join(part for part in (f"Made with {settings}." if settings else "", standing.note, edge) if part)
    caveat = (f'<div class="edge-caveat" id="caveat-{standing.name}">⚠ {html.escape(EDGE_CAVEAT)}</div>\n\n'
              if reading is not None and reading.peak_at_edge else "")
    return (f"**{title}** {verdict_line(standing, rank, of)}.\n\n"
            f"{scale_html(standing.name, explained_label, relative=False, blend=blend)}\n\n{caveat}{HOW_TO_READ[standing.name]}\n\n"
            f"<details><summary>Settings and measurement</summary>{html.escape(details)}</details>")


# Under a map whose strongest region lies at the film's edge: short, since a caption is narrow.
EDGE_CAVEAT = "Peaks at the film's edge, where letters and borders sit: not a finding in the lungs."


def edge_share_line(reading) -> str:
    """How much of a map lies at the film's edge, against the edge's share of the frame."""
    return (f"{percent(reading.edge_share)} of this map lies at the film's edge (the outer "
            f"{100 * EDGE_FRACTION:.0f} %, {100 * EDGE_AREA:.0f} % of the frame); its strongest region is "
            f"{'there' if reading.peak_at_edge else 'in the centre of the film'}.")


REFER_HEADLINE = "Refer: a radiologist should read this film"


def headline(decision: str, refer: bool) -> str:
    """The answer in a few words: the decided class, or the referral and the class the film leans to."""
    return f"{REFER_HEADLINE} (leans to {decision})" if refer else f"Decision: {decision}"


def referral_sentence(decision: str, band, referral=None) -> str:
    """Why a referred film is not decided, and which class it leans to: inside the band, or (`referral`
    from the stability rule) its answer does not hold under small acquisition changes."""
    if referral is not None and referral.unstable:
        from .stress import stress_change

        after = "; ".join(f"{stress_change(name).description}: {percent(referral.changed_probability(name))}"
                          for name in referral.moved)
        inside = all(band.refers(referral.changed_probability(name)) for name in referral.moved)
        where = "inside the referral band" if inside else "inside the referral band or across the threshold"
        changes = ("a small acquisition change" if len(referral.checked) == 1 else
                   f"{len(referral.moved)} of {len(referral.checked)} small acquisition changes")
        return (f"The answer does not hold: after {changes} the probability lies {where} ({after}). A person "
                f"should read this film. It leans to {decision}.")
    return (f"The model is not sure enough to decide: the probability lies inside the referral band "
            f"({percent(band.lower)} to {percent(band.upper)}), where on validation films its answers were too "
            f"often wrong to stand alone. It leans to {decision}.")


def probability_html(probabilities: dict[str, float], positive_label: str, threshold: float,
                     withheld: bool = False, band=None) -> str:
    """The positive class's probability as a bar with the operating threshold marked on it, so that
    "85 %, decided NORMAL" reads as the rule it is, and the model's referral `band` shaded, the film's point
    marked in it; greyed where no class is decided."""
    p = probabilities[positive_label]
    others = ", ".join(f"{label} {percent(q)}" for label, q in probabilities.items() if label != positive_label)
    rule = ("not meaningful for this image" if withheld else
            f"{positive_label} is decided from {percent(threshold)} (the marked operating threshold)")
    if band is not None and not withheld:
        rule += (f"; between {percent(band.lower)} and {percent(band.upper)} (shaded) the film is referred to a "
                 "person")
        shaded = (f'<div class="probability-band" style="left:{100 * band.lower:.1f}%;'
                  f'width:{100 * (band.upper - band.lower):.1f}%"></div>')
    else:
        shaded = ""
    return (f'<div class="probability{" withheld" if withheld else ""}" id="probability">'
            f'<div class="probability-track"><div class="probability-fill" style="width:{100 * p:.1f}%"></div>'
            f'{shaded}<div class="probability-threshold" style="left:{100 * threshold:.1f}%"></div>'
            f'<div class="probability-point" style="left:{100 * p:.1f}%"></div></div>'
            f'<div class="probability-text">P({html.escape(positive_label)}) <b>{html.escape(percent(p))}</b>'
            f'{" (" + html.escape(others) + ")" if others else ""}; {html.escape(rule)}.</div></div>')


def probability_css() -> str:
    exact = "-webkit-print-color-adjust:exact;print-color-adjust:exact"
    return (".probability{margin:4px 0 6px;max-width:520px}"
            f".probability-track{{position:relative;height:14px;background:#e6e6e6;border:1px solid #999;{exact}}}"
            f".probability-fill{{position:absolute;left:0;top:0;bottom:0;background:#3b6fb6;{exact}}}"
            ".withheld .probability-fill{background:#aaa}"
            # The band over the fill, striped, so that the fill still shows through it.
            ".probability-band{position:absolute;top:0;bottom:0;background:repeating-linear-gradient(135deg,"
            f"rgba(230,159,0,.45) 0 3px,rgba(230,159,0,.15) 3px 7px);border-left:1px solid #b07800;"
            f"border-right:1px solid #b07800;{exact}}}"
            f".probability-threshold{{position:absolute;top:-5px;bottom:-5px;width:3px;margin-left:-1px;"
            f"background:#d62728;{exact}}}"
            f".probability-point{{position:absolute;top:50%;width:10px;height:10px;margin:-6px 0 0 -6px;"
            f"border-radius:50%;background:#fff;border:2px solid #1d3557;{exact}}}"
            ".withheld .probability-point{border-color:#888}"
            ".probability-text{font-size:13px;margin-top:3px}"
            ".referral{border-left:5px solid #e69f00;background:#fff8e6;padding:6px 10px;margin:2px 0 6px}"
            ".edge-caveat{color:#7a4b00;background:#fff8e6;padding:1px 4px;margin:2px 0}"
            ".maps-agreement{margin-top:2px;padding:0 6px;border-left:3px solid #3b6fb6}")


SIMILAR_CAVEAT = ("These are the training films the model finds most like this one, in the features it decides "
                  "from: they show what the model sees, not a second opinion. When the model is wrong, its most "
                  "similar films are often of the wrong class too.")


SIMILARITY_MEANS = ("Beside each film: its class and its similarity, the cosine of the two films' features (1 for "
                    "the same features).")


def similar_sentence(similar: dict, positive_label: str) -> str:
    """"k of the 20 most similar training films are PNEUMONIA", from a record's `similar`."""
    return (f"{similar['counts'].get(positive_label, 0)} of the {similar['nearest']} most similar training films "
            f"are {positive_label}.")


def similar_caption(similar: dict, row: int) -> str:
    """One shown film's caption: its label and similarity."""
    return f"{similar['labels'][row]} · {similar['similarities'][row]:.3f}"


def similar_markdown(similar: dict | None, positive_label: str, shown: int, pictures: bool,
                     not_at_hand: str = "", withheld: bool = False) -> str:
    """The section's words: the count, what the row is and is not, and without pictures the films listed."""
    if withheld:
        return "**Similar training films:** none are shown for an image that is not a chest radiograph."
    if similar is None:
        return "**Similar training films:** this model has no index of its training films."
    text = f"**{similar_sentence(similar, positive_label)}** <small>{SIMILAR_CAVEAT} {SIMILARITY_MEANS}</small>"
    if pictures:
        return text
    listed = "\n".join(f"{row + 1}. {similar_caption(similar, row)} (`{similar['ids'][row]}`)"
                       for row in range(min(shown, similar["nearest"])))
    return f"{text}\n\n{listed}\n\n<small>{not_at_hand}</small>"


# -- the page's own text: the decision, a map's caption among the others, the decoded upload ----------------

def ranked_caption(standings, standing, explained_label: str = "the explained class", settings: str = "",
                   unavailable: str | None = None, reading=None, blend: str = DEFAULT_BLEND) -> str:
    """`caption_markdown` of `standing`, ranked among the measured `standings`."""
    measured = [s.name for s in standings if s.passes is not None]
    rank = measured.index(standing.name) + 1 if standing.name in measured else 0
    return caption_markdown(standing, rank, len(measured), explained_label, settings, unavailable, reading, blend)


def decision_markdown(analysis) -> str:
    """The page's headline of an analysis: the decision or the referral, the probabilities against the
    threshold, which class the maps explain and where they agree."""
    explanation = analysis.explanation
    shown = probability_html(explanation.probabilities, analysis.positive_label, analysis.threshold,
                             withheld=analysis.withheld, band=analysis.band)
    agreement = (f'\n\n<div class="maps-agreement" id="maps-agreement">{analysis.agreement["sentence"]}</div>'
                 if analysis.agreement["sentence"] else "")
    if analysis.withheld:
        return (f"### Decision: {NOT_A_RADIOGRAPH}\nNo class is decided. <small>The model's probabilities, not "
                f"meaningful for this image:</small>\n\n{shown}\n\nThe maps explain {explanation.explained_class}."
                f"{agreement}")
    referral = (f'\n<div class="referral" id="referral">'
                f'{referral_sentence(analysis.decision, analysis.band, analysis.referral)}'
                "</div>\n" if analysis.refer else "")
    return (f"### {headline(analysis.decision, analysis.refer)}\n{referral}{shown}\n\nThe maps explain "
            f"**{explanation.explained_class}**. {RELATIVE_NOTE}{agreement}")


# How the preview names what a DICOM header says (`dicom.described_fields`); Rows and Columns are the size shown.
PREVIEW_NAMES = {"BodyPartExamined": "body part", "ViewPosition": "view", "PhotometricInterpretation": "photometric",
                 "BitsStored": "bits stored", "Transfer syntax": "transfer syntax", "Pixel spacing": "pixel spacing",
                 "Window": "window", "Frame": "frame", "mode": "mode"}


def preview_markdown(image, details: dict, model_size: str) -> str:
    """What is known of an upload as decoded, and the size the model sees."""
    known = "; ".join(f"{PREVIEW_NAMES.get(name, name)} {value}" for name, value in details.items()
                      if name not in ("format", "size", "Rows", "Columns"))
    return (f"**{details.get('format', 'image')}**, {image.width} x {image.height} px as decoded"
            f"{'; ' + known if known else ''}. The model sees it resized to {model_size}.")


CURVES_INTRODUCTION = (
    "Deletion and insertion curves of every map and of the random maps they are judged against, for the uploaded "
    "image: a faithful map makes the explained class's log-odds fall fastest when its pixels are removed first, "
    "and rise fastest when they are revealed first. About 110 forward passes: several seconds on a CPU.")
ROBUSTNESS_INTRODUCTION = (
    "The decision and the probability of this image under each change of the shortcut stress suite: tighter "
    "framing, another film shape, pasted markers and text, devices, exposure, processing and detector changes, "
    "seeded so that an image always gets the same answer. A decision that holds is not thereby correct; a change "
    "that flips it names a shortcut the model may be using on this image. 27 forward passes, in batches.")
PAGE_CSS = """
#header h2 { margin: 0 0 2px 0; }
#header p { margin: 0; font-size: 0.9em; }
#decision h3 { margin: 0 0 2px 0; }
#decision { min-height: 64px; }  /* room for the queue position while a student waits */
.map-caption, .map-caption * { font-size: 12px !important; line-height: 1.3 !important; }
.map-caption p { margin: 2px 0 !important; }
.map-caption details summary { cursor: pointer; color: #555; }
#similar-sentence small { color: #555; }
#similar-gallery .grid-wrap { height: auto !important; min-height: 0 !important; }  /* one row, no empty box */
#similar-gallery:has(.preview) .grid-wrap { min-height: 460px !important; }  /* a clicked film, large */
#similar-gallery .caption-label { max-width: 95%; }
@media (max-width: 640px) {  /* a phone: each map the width of the screen, the similar films three a row */
  .map-image { height: auto !important; }
  .map-image img { width: 100%; height: auto; max-height: none; }
  #similar-gallery .grid-container { grid-template-columns: repeat(3, minmax(0, 1fr)) !important; }
  #similar-gallery .caption-label { font-size: 10px; padding: 1px 3px; }
}
"""


def page_css(colormap: str = COLORMAP, blend: str = DEFAULT_BLEND) -> str:
    """The page's style: its layout, the maps' colour scale and the probability bar."""
    return PAGE_CSS + scale_css(colormap, blend) + probability_css()


# -- "About the model" ------------------------------------------------------------------------------------------

def model_summary(service) -> str:
    """A short Markdown summary of a served model (`service.PneumoLensService`): base model, data, metrics,
    threshold, referral band and maps, read from the model and its card."""
    from .decision import ReferralBand, operating_threshold
    from .modeling import positive_index

    card, config = service.card(), service.config
    base = (card.data.base_model if card else None) or "unknown"
    lines = [f"**Model:** `{service.source.name_or_path}` ({config.model_type}, "
             f"{sum(p.numel() for p in service.model.parameters()) / 1e6:.1f} M parameters), "
             f"fine-tuned from `{base}`, served on `{service.device}` (float32).",
             f"**Labels:** {', '.join(service.labels)}. **Decision threshold** on "
             f"P({config.id2label[positive_index(config)]}): {operating_threshold(config):.3f}"
             f"{_probabilities_note(config)}."]
    band = ReferralBand.of(config)
    if band is not None:
        lines.append(f"**Referral band:** between {percent(band.lower)} and {percent(band.upper)} the film is referred "
                     f"to a person instead of decided (chosen on the carved validation split and its stressed "
                     f"copies{_band_target(band)}).")
    if card and card.data.datasets:
        lines.append(f"**Data:** {', '.join(card.data.datasets)}.")
    results = _card_results(card)
    if results:
        lines.append("**Measured:** " + "; ".join(results) + ".")
    lines.append(f"**Maps:** {_map_settings(service)}.")
    return "  \n".join(lines)


def _probabilities_note(config) -> str:
    from .decision import Calibration

    calibration = Calibration.of(config)
    if calibration is None:
        return " (probabilities: the softmax, not calibrated)"
    return (f" (probabilities: calibrated by Platt scaling on the carved validation split, "
            f"sigmoid({calibration.scale:.3f} d + {calibration.bias:.3f}) of the logit difference d)")


def _map_settings(service) -> str:
    from .explain import layout_of
    from .preprocessing import input_size

    layout = layout_of(service.model, input_size(service.processor))
    verdicts = {standing.name: standing.verdict for standing in service.standings}
    parts = []
    for name, method in REGISTRY.items():
        if layout.kind in method.architectures:
            made = method.settings_text(layout, service.explanation_options)
            parts.append(f"{TITLES[name]} ({made + ', ' if made else ''}faithfulness {verdicts.get(name, 'not measured')})")
    return "; ".join(parts)


def _card_results(card) -> list[str]:
    if not card or not card.data.eval_results:
        return []
    by_split: dict[str, list[str]] = {}
    for result in card.data.eval_results:
        if result.metric_type in ("accuracy", "roc_auc"):
            name = "accuracy" if result.metric_type == "accuracy" else "ROC-AUC"
            by_split.setdefault(result.dataset_split, []).append(f"{name} {result.metric_value:.3f}")
    return [f"{split.replace('_', ' ')}: {', '.join(values)}" for split, values in by_split.items()]


def _band_target(band) -> str:
    if band.target_error is None or band.confidence is None:
        return ""
    return (f", so that at most {100 * band.target_error:.0f} % of the films decided are wrong, with "
            f"{100 * band.confidence:.0f} % confidence")
