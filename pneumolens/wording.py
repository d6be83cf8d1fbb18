"""Words every layer says alike, with no heavy import: a statistics module, the Space's card and the page
all format a probability and state the disclaimer from here (`presentation` draws; this only writes)."""

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
