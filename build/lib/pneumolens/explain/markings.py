"""Do the maps point at burned-in text?

Radiographs carry laterality letters, time stamps and device codes, and the Kermany classes differ in
how often and where (issue #8). Each image gets a marking from the stress suite; the marking's pixels
are found as the difference to the unmarked image, carried onto the model input the way the image
processor frames the image, and for each method the share of the map's mass on them is compared with
the share of the input they cover. The ratio, the lift, is 1 for a map that ignores the marking and
10 for one ten times as dense on it as on average.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops

from ..images import load_image
from ..preprocessing import input_size
from ..stress import stress_change
from .artifacts import mass_share
from .explainer import Explainer
from .options import ExplanationOptions
from .geometry import input_box

MARKINGS = ("text_laterality", "text_timestamp", "text_device")
CHANGED = 8  # grey levels: a marked pixel differs by more; JPEG-free, so the rest differ by 0


def marking_mask(processor, original: Image.Image, marked: Image.Image) -> np.ndarray:
    """(H, W) booleans at the model's input size: where `marked` differs from `original`, as the model
    sees it (a centre-cropping processor's unseen border dropped, then resized like the image)."""
    changed = np.asarray(ImageChops.difference(original.convert("L"), marked.convert("L"))) > CHANGED
    left, top, right, bottom = (round(edge) for edge in input_box(processor, original.size))
    height, width = input_size(processor)
    window = Image.fromarray(changed).crop((left, top, right, bottom)).convert("L")
    return np.asarray(window.resize((width, height), Image.BILINEAR)) > 0


def marking_report(explainer: Explainer, images, markings=MARKINGS, seed: int = 0,
                   options: ExplanationOptions = ExplanationOptions(), progress=lambda items: items) -> dict:
    """Per marking and method: mean share of the map's mass on the marking, the marking's mean share of
    the input, and the mean lift (share / area) over `images`."""
    rows = []
    for index, image in enumerate(progress(list(images))):
        original = load_image(image)
        for name in markings:
            marked = stress_change(name)(original, seed, index)
            mask = marking_mask(explainer.processor, original, marked)
            if not mask.any():  # the marking fell outside what the model sees
                continue
            explanation = explainer.explain(marked, options=options)
            area = float(mask.mean())
            for method, heatmap in explanation.input_maps.items():
                share = mass_share(heatmap, mask)
                rows.append({"image": index, "marking": name, "method": method, "area": area,
                             "share": share, "lift": share / area})
    return {"summary": summarise_markings(rows), "rows": rows}


def summarise_markings(rows: list[dict]) -> dict:
    summary: dict = {}
    for marking in dict.fromkeys(row["marking"] for row in rows):
        for method in dict.fromkeys(row["method"] for row in rows):
            picked = [row for row in rows if row["marking"] == marking and row["method"] == method]
            lifts = np.array([row["lift"] for row in picked])
            summary.setdefault(marking, {})[method] = {
                "images": len(picked), "area": float(np.mean([row["area"] for row in picked])),
                "share": float(np.mean([row["share"] for row in picked])), "lift": float(lifts.mean()),
                "share_of_images_with_lift_over_2": float((lifts > 2).mean())}
    return summary


def markings_table(summary: dict, titles: dict[str, str] | None = None) -> str:
    """Markdown: per marking, each method's mean mass share and lift."""
    titles = titles or {}
    markings = list(summary)
    methods = list(next(iter(summary.values()))) if markings else []
    rows = ["| method | " + " | ".join(f"{m}: mass on it (lift)" for m in markings) + " |",
            "|---|" + "---:|" * len(markings)]
    for method in methods:
        cells = [f"{summary[m][method]['share']:.1%} ({summary[m][method]['lift']:.1f}x)" for m in markings]
        rows.append(f"| {titles.get(method, method)} | " + " | ".join(cells) + " |")
    rows.append("| area of the marking | " + " | ".join(f"{summary[m][methods[0]]['area']:.1%}" for m in markings) + " |")
    return "\n".join(rows)


def markings_section(report: dict, markings, num_images: int, where: str, command_line: str,
                     titles: dict[str, str]) -> str:
    return (f"Burned-in text from the stress suite ({', '.join(markings)}) pasted onto {num_images} images of "
            f"{where}; each explains its predicted class. Per method, the mean share of the map's mass on the "
            "marking's pixels and, in brackets, the mean lift: that share over the share of the model input the "
            f"marking covers (1x: the map ignores the marking).\n\n{markings_table(report['summary'], titles)}\n\n"
            f"Command: `{command_line}`")
