"""What a person reads: probabilities written carefully, the threshold marked, scales and verdicts in words."""

import html
import re

import pytest

import app
from pneumolens.explain import METHODS
from pneumolens.explain.standing import MethodStanding
from pneumolens.modeling import ModelSource
from pneumolens.charts import side_by_side
from pneumolens.presentation import (
    caption_markdown, decision_markdown, percent, probability_html, scale_meaning, verdict_line,
)
from pneumolens.report import html_report
from pneumolens.service import ModelIdentity
from pneumolens.serving.displayed import DisplayedMaps
from pneumolens.service import PneumoLensService

CERTAINTY = re.compile(r"(?<![\d.])(100(\.0)?|0(\.0)?) ?%")


def visible(markup: str) -> str:
    """The text of HTML or Markdown as a reader sees it: no tags, no styles, entities decoded."""
    return html.unescape(re.sub(r"<style>.*?</style>|<[^>]+>", " ", markup, flags=re.DOTALL))


@pytest.mark.parametrize("probability, shown", [
    (1.0, "> 99.9 %"), (0.99951, "> 99.9 %"), (0.9994, "99.9 %"), (0.5, "50.0 %"), (0.0004, "< 0.1 %"), (0.0, "< 0.1 %"),
    (0.0006, "0.1 %"),
])
def test_a_probability_is_never_written_as_certain(probability, shown):
    assert percent(probability) == shown


def test_the_probability_bar_marks_the_threshold_and_names_the_rule():
    shown = probability_html({"NORMAL": 0.15, "PNEUMONIA": 0.85}, "PNEUMONIA", 0.903)
    assert 'class="probability-fill" style="width:85.0%"' in shown
    assert 'class="probability-threshold" style="left:90.3%"' in shown
    assert "P(PNEUMONIA) <b>85.0 %</b>" in shown and "PNEUMONIA is decided from 90.3 %" in shown
    assert "not meaningful" in probability_html({"NORMAL": 0.5, "PNEUMONIA": 0.5}, "PNEUMONIA", 0.9, withheld=True)


def test_a_caption_is_a_verdict_a_scale_a_sentence_and_the_details_behind_a_disclosure():
    note = "Faithfulness: passed, 2 of 4 on this model. Better than a random map by +1.72 [+1.36, +2.06]."
    caption = caption_markdown(MethodStanding("gradcam", True, note), 2, 4, "PNEUMONIA", "Grad-CAM at block 10 of 12")
    first, scale, sentence, details = caption.split("\n\n")
    assert first == "**Grad-CAM** ✓ passed the faithfulness test, 2nd of 4."
    assert 'id="scale-gradcam"' in scale and "high: more evidence for PNEUMONIA" in scale
    assert "roughly here" in sentence and "[" not in first + scale + sentence  # no intervals up front
    assert details.startswith("<details>") and "+1.72 [+1.36, +2.06]" in details and "block 10 of 12" in details
    failed = verdict_line(MethodStanding("saliency", False, ""), 4, 4)
    assert failed.startswith("✗ failed") and "not evidence" in failed
    assert "PNEUMONIA" not in scale_meaning("rollout", "PNEUMONIA")  # rollout is the same for every class


def test_no_text_for_a_person_prints_certainty(tiny_trained_dirs, tmp_path, monkeypatch):
    """An image the model is sure of: the page, the report and the command line's figure write > 99.9 %."""
    service = PneumoLensService(ModelSource(str(tiny_trained_dirs["dinov2"])))
    analysis = service.analyse(app.EXAMPLES[0])
    analysis.explanation.probabilities = {"NORMAL": 2e-6, "PNEUMONIA": 1 - 2e-6}
    page = decision_markdown(analysis)
    report = html_report(analysis, DisplayedMaps.of(analysis.explanation, 256).overlays(0.45), analysis.explanation.image,
                         ModelIdentity("tiny", None, "dinov2"), "x.jpeg")
    figure = side_by_side(analysis.explanation, analysis.decision, 0.45)
    title = figure.axes[0].get_title()
    for text in (visible(page), visible(report), title):
        found = CERTAINTY.search(text)
        assert "> 99.9 %" in text and "< 0.1 %" in text and not found, text[found.start() - 150:found.end()] if found else text[:300]
    # What programs read keeps the full floats.
    assert analysis.record()["probabilities"]["PNEUMONIA"] == 1 - 2e-6


def test_every_map_of_the_command_line_and_figure_has_its_scale(tiny_trained_dirs, real_images):
    service = PneumoLensService(ModelSource(str(tiny_trained_dirs["dinov2"])))
    analysis = service.analyse(real_images["NORMAL"][0])
    figure = side_by_side(analysis.explanation, analysis.decision, 0.45)
    labels = [axis.get_xlabel() for axis in figure.axes if axis.get_xlabel().startswith("high:")]
    assert len(labels) == len(METHODS)
