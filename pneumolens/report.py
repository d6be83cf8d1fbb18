"""A report a person keeps: one self-contained HTML file per analysis.

Everything is inside the file (images as data: URIs, no scripts, no links to fetch), so it opens the same
offline, in a mail attachment or years later: the image, the maps with their colour scales, the probabilities, the decision
at the operating threshold, the out-of-distribution verdict, each map's measured faithfulness verdict and
the settings that made it, which model (id and revision) made it, when, and the disclaimer.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from .explain import HOW_TO_READ, METHODS, TITLES
from .explain.overlay import DEFAULT_BLEND
from .charts import robustness_figure_png
from .presentation import (
    EDGE_CAVEAT, SIMILAR_CAVEAT, headline, probability_css, probability_html, referral_sentence, relative_note,
    scale_css, scale_html, similar_caption, similar_sentence,
)
from .wording import DISCLAIMER, percent
from .service import ModelIdentity
from .similar import SHOWN



def html_report(analysis, overlays: dict[str, Image.Image], image: Image.Image, model: ModelIdentity,
                file_name: str, created: datetime | None = None, robustness=None, blend: str = DEFAULT_BLEND,
                film_pictures: list | None = None) -> str:
    """The report of one `service.Analysis`, with `overlays` (method -> image) and the display `image`.

    It prints on A4 or Letter in two pages: the decision, the input and who made it on the first, the
    four maps, each with its colour scale, and the appendix of settings and measurements on the second.
    `film_pictures`: the similar training films' pictures in the record's order, where they are at hand.
    """
    created = created or datetime.now(timezone.utc)
    record = analysis.record()
    ood = record["out_of_distribution"]
    flagged = bool(ood.get("flagged"))
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(percent(p))}</td></tr>"
                   for label, p in record["probabilities"].items())
    described = record["maps"]
    order = [*described, *(method for method in METHODS if method not in described)]  # the app's order
    explained = record["explained_class"]
    maps = "".join(_figure(method, overlays[method], described.get(method, {}), explained, analysis.readings.get(method),
                           blend) for method in order if method in overlays)
    sentence = record["agreement"]["sentence"]
    agreement = f'<p class="maps-agreement" id="maps-agreement">{html.escape(sentence)}</p>' if sentence else ""
    maps += "".join(f"<figure><figcaption><b>{html.escape(TITLES[m])}: not available.</b> {html.escape(why)}"
                    "</figcaption></figure>" for m, why in record["maps_unavailable"].items())
    # A flagged image gets no class: its probabilities stay, greyed, for whoever wants them.
    probability_note = " (not meaningful for this image)" if flagged else ""
    if flagged:
        verdict = f"<b class=warn>{html.escape(ood['warning'])}</b>"
    elif not ood.get("available"):
        verdict = "not checked (this model has no out-of-distribution detector)"
    else:
        verdict = f"looks like a chest radiograph (score {ood['score']:.1f} &le; {ood['threshold']:.1f})"
    bar = probability_html(record["probabilities"], analysis.positive_label, record["threshold"], withheld=flagged,
                           band=analysis.band) if analysis.positive_label in record["probabilities"] else ""
    referral = (f'<p class="referral" id="referral">{html.escape(referral_sentence(record["decision"], analysis.band, analysis.referral))}'
                "</p>" if record["refer"] else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PneumoLens report: {html.escape(file_name)}</title>
<style>{REPORT_CSS}{scale_css(blend=blend)}</style></head><body>
<h1>PneumoLens report</h1>
<p class="disclaimer"><b>{html.escape(DISCLAIMER)}</b></p>
<section class="summary">
<h2 id="decision">{html.escape(headline(record['decision'], record['refer']))}</h2>
{referral}{bar}
<table{' class=muted' if flagged else ''}><tr><th>class</th><th>probability{probability_note}</th></tr>{rows}</table>
<p>Operating threshold on the probability of {html.escape(analysis.positive_label or "the positive class")}:
{html.escape(percent(record['threshold']))}. Maps explain <b>{html.escape(explained)}</b>.</p>
<p>Out-of-distribution check: {verdict}</p>
<table>
<tr><td>image</td><td>{html.escape(file_name)} ({image.width} x {image.height} px as shown)</td></tr>
<tr><td>model</td><td>{html.escape(model.describe())}</td></tr>
<tr><td>created</td><td>{created.strftime('%Y-%m-%d %H:%M:%S %Z')}</td></tr>
</table>
</section>
<section class="input"><h2>Image</h2><img alt="the analysed image" src="{_data_uri(image)}">
<p class="note">{html.escape(file_name)} as analysed, shown at {image.width} x {image.height} px.</p></section>
{_similar_section(record, analysis.positive_label, film_pictures or [])}<section class="maps"><h2>Explanation maps</h2>{agreement}<p class="note">{html.escape(relative_note(blend))}</p>
<div class="grid">{maps}</div></section>
{_robustness_section(robustness)}<section class="appendix"><h2>Appendix: how each map was made and measured</h2>
<table><tr><th>map</th><th>settings</th><th>faithfulness, as measured for this model</th></tr>
{"".join(_appendix_row(method, described[method]) for method in described)}</table></section>
</body></html>
"""


REPORT_CSS = """body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}
h1{margin:0 0 .3em}h2{margin:.8em 0 .3em}.grid{display:flex;flex-wrap:wrap;gap:2%}
figure{width:49%;margin:0 0 1em;break-inside:avoid;page-break-inside:avoid}
figure img{width:100%;max-height:360px;object-fit:contain;background:#000}
figcaption{font-size:0.85em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:top}
.disclaimer{background:#fff3cd;padding:0.6em 1em;border:1px solid #e0c060}.warn{color:#a00}
.input img{max-width:420px;max-height:420px;width:auto}.muted{color:#888;font-size:0.85em}.note{font-size:0.9em}
.appendix table{font-size:0.8em}img.robustness{max-width:620px;width:100%}
@page{margin:10mm}
@media print{body{max-width:none;margin:0;font-size:10pt}h1{font-size:16pt}h2{font-size:12pt;break-after:avoid}
.disclaimer{-webkit-print-color-adjust:exact;print-color-adjust:exact}
.input img{max-height:70mm;max-width:100%}section.maps{break-before:page}.films figure{width:13%;min-width:0}.films small{display:none}
figure img{max-height:46mm}.appendix,section.robustness{break-inside:avoid}.appendix table{font-size:0.75em}img.robustness{max-height:150mm;width:auto}table,.probability{break-inside:avoid}}
.films{display:flex;flex-wrap:wrap;gap:8px}.films figure{width:15%;min-width:110px;margin:0}
.films img{width:100%;background:#000}.films small{word-break:break-all}section.similar{break-inside:avoid}
""" + probability_css()


def _similar_section(record: dict, positive_label: str, pictures: list) -> str:
    """The training films most similar to this one: the count, what they are and are not, and the nearest
    SHOWN, pictured where their pictures are at hand."""
    similar = record.get("similar")
    if similar is None:
        return ""
    pictures = (list(pictures) + [None] * SHOWN)[:min(SHOWN, similar["nearest"])]
    films = "".join(_film(similar, row, picture) for row, picture in enumerate(pictures))
    return (f'<section class="similar" id="similar"><h2>Similar training films</h2>'
            f'<p><b>{html.escape(similar_sentence(similar, positive_label))}</b> {html.escape(SIMILAR_CAVEAT)}</p>'
            f'<div class="films">{films}</div></section>\n')


def _film(similar: dict, row: int, picture) -> str:
    shown = f'<img alt="a similar training film" src="{_data_uri(picture)}">' if picture is not None else ""
    return (f"<figure>{shown}<figcaption>{html.escape(similar_caption(similar, row))}<br>"
            f"<small>{html.escape(similar['ids'][row])}</small></figcaption></figure>")


def _figure(method: str, image: Image.Image, described: dict, explained: str, reading=None,
            blend: str = DEFAULT_BLEND) -> str:
    title = TITLES[method]
    verdict = described.get("faithfulness", "not measured")
    caveat = (f'<div class="edge-caveat">&#9888; {html.escape(EDGE_CAVEAT)}</div>'
              if reading is not None and reading.peak_at_edge else "")
    return (f'<figure><img alt="{html.escape(title)}" src="{_data_uri(image)}"><figcaption>'
            f"<b>{html.escape(title)}</b>: faithfulness {html.escape(verdict)}."
            f"{scale_html(method, explained, blend=blend)}{caveat}{html.escape(HOW_TO_READ[method])}</figcaption></figure>")


def _robustness_section(check) -> str:
    """Does the decision hold under the stress suite's changes (`robustness.RobustnessCheck`), if asked."""
    if check is None:
        return ""
    figure = "" if check.withheld else \
        f'<img class="robustness" alt="the probability under each change" src="{_png_uri(robustness_figure_png(check))}">'
    return (f'<section class="robustness"><h2>Does this decision hold?</h2><p>{html.escape(check.sentence())}</p>'
            f"{figure}</section>\n")


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _appendix_row(method: str, described: dict) -> str:
    return (f"<tr><td>{html.escape(TITLES[method])}</td><td>{html.escape(described.get('settings') or '-')}</td>"
            f"<td>{html.escape(described.get('note') or '-')}</td></tr>")


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


SUMMARY_FIELDS = ("image", "report", "decision", "refer", "refer_reason", "explained_class", "threshold", "ood_flagged", "ood_score",
                  "similar", "robustness_held", "robustness_flipped")


def write_summary(path: str | Path, rows: list[dict]) -> None:
    """One CSV row per image: file, report, decision, probabilities and the OOD verdict (or the error)."""
    labels = sorted({label for row in rows for label in row.get("probabilities", {})})
    fields = [*SUMMARY_FIELDS, *(f"p_{label}" for label in labels), "error"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **{f"p_{label}": f"{p:.6f}" for label, p in row.get("probabilities", {}).items()}})
