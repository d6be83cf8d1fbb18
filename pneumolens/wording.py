"""Words every layer says alike, with no heavy import: a statistics module, the Space's card and the page
all format a probability and state the disclaimer from here; the service words its warnings and the maps'
agreement here (`presentation` draws; this only writes)."""

from __future__ import annotations

# Said once here, and shown by the page, the report and the Space card alike.
NOT_A_MEDICAL_DEVICE = "Not a medical device."
DISCLAIMER_DETAIL = ("PneumoLens is a research and teaching demo. It has not been cleared or validated for clinical "
                     "use: do not use it to diagnose, treat or triage anyone.")
DISCLAIMER = f"{NOT_A_MEDICAL_DEVICE} {DISCLAIMER_DETAIL}"


def disclaimer_markdown() -> str:
    return f"**{NOT_A_MEDICAL_DEVICE}** {DISCLAIMER_DETAIL}"


def percent(probability: float) -> str:
    """A probability to one decimal, never "100 %" or "0 %": a calibrated probability claims no certainty."""
    shown = round(probability * 100, 1)
    if shown >= 100.0:
        return "> 99.9 %"
    if shown <= 0.0:
        return "< 0.1 %"
    return f"{shown:.1f} %"


OOD_WARNING = ("This image does not look like the chest radiographs the model was trained on "
               "(out-of-distribution score {score:.1f} > {threshold:.1f}), so no class is decided. The model's "
               "probabilities are kept for reference, but they are not meaningful for this image.")
SHAPE_WARNING = ("This image cannot be a chest radiograph by its shape: {problem}. No class is decided. The "
                 "model's probabilities are kept for reference, but they are not meaningful for this image.")


def agreement_sentence(readings: dict, groups: list[list[str]], titles: dict[str, str]) -> str:
    """Which maps agree on this film's strongest region, which mark one of their own, and which peak at the
    film's edge, in one line; `readings` in the order the maps are shown, each map named by its title."""
    names = list(readings)
    grouped = {name for group in groups for name in group}
    alone = [name for name in names if name not in grouped]
    parts = [f"{listed(group, titles)} agree on the strongest region" if number == 0 else f"so do {listed(group, titles)}"
             for number, group in enumerate(groups)]
    if not groups:
        parts.append("the maps do not agree on the strongest region: read each on its own")
    elif len(alone) == 1:
        parts.append(f"{listed(alone, titles)} marks a region of its own")
    elif alone:
        parts.append(f"{listed(alone, titles)} each mark a region of their own")
    edge = [name for name in names if readings[name].peak_at_edge]
    if edge:
        parts.append(f"{listed(edge, titles)} {'peaks' if len(edge) == 1 else 'peak'} at the film's edge, where letters "
                     "and borders sit")
    sentence = "; ".join(parts) + "."
    return sentence[0].upper() + sentence[1:]


def listed(names: list[str], titles: dict[str, str]) -> str:
    """The maps' titles in a list ("attention rollout, gradient saliency and Grad-CAM")."""
    # In lower case (a sentence's first letter is raised after), but for a name such as Grad-CAM.
    shown = [title if "-" in title.split()[0] else title[0].lower() + title[1:] for title in map(titles.get, names)]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
