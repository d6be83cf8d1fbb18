"""A report a person keeps: one self-contained HTML file per analysis.

Everything is inside the file (images as data: URIs, no scripts, no links to fetch), so it opens the same
offline, in a mail attachment or years later: the image, the three maps, the probabilities, the decision
at the operating threshold, the out-of-distribution verdict, each map's measured faithfulness verdict and
the settings that made it, which model (id and revision) made it, when, and the disclaimer.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from .explain import HOW_TO_READ, METHODS, TITLES

DISCLAIMER = ("Not a medical device. PneumoLens is a research and teaching demo. It has not been cleared or "
              "validated for clinical use: do not use it to diagnose, treat or triage anyone.")


@dataclass(frozen=True)
class ModelIdentity:
    """Which model answered: what a reader needs to reproduce the result."""

    name_or_path: str
    revision: str | None
    model_type: str

    def describe(self) -> str:
        return f"{self.name_or_path} @ {self.revision or 'local files (no Hub revision)'} ({self.model_type})"


def html_report(analysis, overlays: dict[str, Image.Image], image: Image.Image, model: ModelIdentity,
                file_name: str, created: datetime | None = None) -> str:
    """The report of one `service.Analysis`, with `overlays` (method -> image) and the display `image`."""
    created = created or datetime.now(timezone.utc)
    record = analysis.record()
    ood = record["out_of_distribution"]
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{p:.1%}</td></tr>"
                   for label, p in record["probabilities"].items())
    described = record["maps"]
    order = [*described, *(method for method in METHODS if method not in described)]  # the app's order
    maps = "".join(_figure(overlays[method], TITLES[method], HOW_TO_READ[method], described.get(method, {}))
                   for method in order if method in overlays)
    maps += "".join(f"<figure><figcaption><b>{html.escape(TITLES[m])}: not available.</b> {html.escape(why)}"
                    "</figcaption></figure>" for m, why in record["maps_unavailable"].items())
    # A flagged image gets no class: its probabilities stay, greyed, for whoever wants them.
    probability_note = " (not meaningful for this image)" if ood.get("flagged") else ""
    if not ood.get("available"):
        verdict = "not checked (this model has no out-of-distribution detector)"
    elif ood["flagged"]:
        verdict = f"<b class=warn>{html.escape(ood['warning'])}</b>"
    else:
        verdict = f"looks like a chest radiograph (score {ood['score']:.1f} &le; {ood['threshold']:.1f})"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PneumoLens report: {html.escape(file_name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
figure{{display:inline-block;width:32%;margin:0 0.5% 1em;vertical-align:top}}figure img{{width:100%}}
figcaption{{font-size:0.85em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px}}
.disclaimer{{background:#fff3cd;padding:0.6em 1em;border:1px solid #e0c060}}.warn{{color:#a00}}
.input img{{max-width:420px;width:100%}}.muted{{color:#888;font-size:0.85em}}</style></head><body>
<h1>PneumoLens report</h1>
<p class="disclaimer"><b>{html.escape(DISCLAIMER)}</b></p>
<h2 id="decision">Decision: {html.escape(record['decision'])}</h2>
<table{' class=muted' if ood.get('flagged') else ''}><tr><th>class</th><th>probability{probability_note}</th></tr>{rows}</table>
<p>Operating threshold on the positive class: {record['threshold']:.3f}. Maps explain
<b>{html.escape(record['explained_class'])}</b>.</p>
<p>Out-of-distribution check: {verdict}</p>
<table>
<tr><td>image</td><td>{html.escape(file_name)} ({image.width} x {image.height} px as shown)</td></tr>
<tr><td>model</td><td>{html.escape(model.describe())}</td></tr>
<tr><td>created</td><td>{created.strftime('%Y-%m-%d %H:%M:%S %Z')}</td></tr>
</table>
<h2>Image</h2><div class="input"><img alt="the analysed image" src="{_data_uri(image)}"></div>
<h2>Explanation maps</h2>{maps}
</body></html>
"""


def _figure(image: Image.Image, title: str, how_to_read: str, described: dict) -> str:
    settings = f" ({html.escape(described['settings'])})" if described.get("settings") else ""
    note = f"<br><i>{html.escape(described['note'])}</i>" if described.get("note") else ""
    return (f'<figure><img alt="{html.escape(title)}" src="{_data_uri(image)}">'
            f"<figcaption><b>{html.escape(title)}{settings}.</b> {html.escape(how_to_read)}{note}</figcaption></figure>")


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


SUMMARY_FIELDS = ("image", "report", "decision", "explained_class", "threshold", "ood_flagged", "ood_score")


def write_summary(path: str | Path, rows: list[dict]) -> None:
    """One CSV row per image: file, report, decision, probabilities and the OOD verdict (or the error)."""
    labels = sorted({label for row in rows for label in row.get("probabilities", {})})
    fields = [*SUMMARY_FIELDS, *(f"p_{label}" for label in labels), "error"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **{f"p_{label}": f"{p:.6f}" for label, p in row.get("probabilities", {}).items()}})
