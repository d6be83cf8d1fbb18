"""The page's own handlers: what the browser's events call (all private, not part of the programs' API).

Each answers plain values by name (a dict), so tests call it without Gradio; app.py maps the names to the
page's components once (`by_component`).
"""

from __future__ import annotations

import gradio as gr

from pneumolens import presentation
from pneumolens.figures import png_image
from pneumolens.decision import NOT_A_RADIOGRAPH
from pneumolens.explain import METHODS, TITLES
from pneumolens.modeling import positive_index
from pneumolens.preprocessing import input_size
from pneumolens.service import display_size
from pneumolens.serving.api import ProgramApi
from pneumolens.serving.uploads import checked_path, safely, trimmed
from pneumolens.similar import SHOWN
from pneumolens.training_films import NOT_AT_HAND

# What the page's analysis answers, by name: the headline, the warning, each map and its caption, the record
# and what redraws the maps in this browser session.
ANALYSIS_OUTPUTS = ("decision", "warning", *(f"map_{m}" for m in METHODS), *(f"caption_{m}" for m in METHODS),
                    "record", "displayed")


class PageHandlers:
    """The page's handlers over the programs' API (`ProgramApi`): the same analyses, drawn for a person."""

    def __init__(self, api: ProgramApi):
        self.api = api
        self.service = api.service
        self.settings = api.settings
        self.standings = {standing.name: standing for standing in self.service.standings}
        self.model_size = "x".join(str(side) for side in input_size(self.service.processor)[::-1])
        self.method_of = {TITLES[standing.name]: standing.name for standing in self.service.standings}
        self.positive_label = self.service.config.id2label[positive_index(self.service.config)]

    def preview(self, file_path) -> dict:
        """The upload as decoded, and no downloads: those of an earlier image no longer apply."""
        if not file_path:
            return {"shown": None, "details": "", "downloads": no_downloads()}
        image, details = safely(self.service.preview, checked_path(file_path))
        return {"shown": image.resize(display_size(image.size, self.settings.preview_max_side)),
                "details": presentation.preview_markdown(image, details, self.model_size), "downloads": no_downloads()}

    @trimmed
    def analysis(self, file_path, explained_class, opacity) -> dict:
        analysis = self.api.analysed(file_path, explained_class)
        displayed = analysis.displayed(self.settings.display_max_side)
        overlays = displayed.overlays(opacity, self.settings.colormap, blend=self.settings.blend)
        explanation = analysis.explanation
        ood = analysis.ood
        return {
            "decision": presentation.decision_markdown(analysis),
            "warning": f"⚠️ **Warning:** {ood['warning']}" if ood.get("warning") else "",
            **{f"map_{method}": overlays.get(method) for method in METHODS},
            **{f"caption_{method}": presentation.ranked_caption(
                self.service.standings, self.standings[method], explanation.explained_class,
                explanation.settings.get(method, ""), explanation.unavailable.get(method),
                analysis.readings.get(method), self.settings.blend) for method in METHODS},
            "record": analysis.record(),
            "displayed": displayed,
        }

    def similar_row(self, record) -> dict:
        """The similar training films of the record's analysis: the count and what the row is, and the
        pictures of the nearest SHOWN where the training images are at hand."""
        if not record:
            return {"text": gr.skip(), "gallery": gr.skip()}
        similar = record.get("similar")
        shown = [] if similar is None else [
            (picture, presentation.similar_caption(similar, row)) for row, picture in
            enumerate(map(self.service.film_image, similar["ids"][:SHOWN])) if picture is not None]
        text = presentation.similar_markdown(similar, self.positive_label,
                                             SHOWN, bool(shown), NOT_AT_HAND,
                                             withheld=record.get("decision") == NOT_A_RADIOGRAPH)
        return {"text": text, "gallery": gr.update(value=shown or None, visible=bool(shown))}

    def redraw(self, displayed, opacity, large_title) -> dict:
        if displayed is None:  # nothing analysed yet, or the session's maps have expired: leave the page as is
            return {name: gr.skip() for name in (*(f"map_{m}" for m in METHODS), "large")}
        overlays = displayed.overlays(opacity, self.settings.colormap, blend=self.settings.blend)
        return {**{f"map_{method}": overlays.get(method) for method in METHODS},
                "large": large_pair(displayed, overlays, self.large_method(displayed, large_title))}

    def large_view(self, displayed, opacity, large_title):
        if displayed is None:
            return gr.skip()
        method = self.large_method(displayed, large_title)
        return large_pair(displayed, displayed.overlays(opacity, self.settings.colormap, [method], self.settings.blend),
                          method)

    def large_method(self, displayed, large_title):
        """The chosen map, or the first one there is where the architecture cannot make it (ConvNeXt has
        no attention maps)."""
        chosen = self.method_of[large_title]
        return chosen if chosen in displayed.input_maps_png else next(iter(displayed.input_maps_png), None)

    @trimmed
    def robustness(self, file_path) -> dict:
        check = self.api.robustness_check(file_path)
        figure = None if check.withheld else png_image(presentation.robustness_figure_png(check))
        return {"sentence": check.sentence(), "figure": figure,
                "checked": {"file": file_path, "check": check}}

    @trimmed
    def faithfulness_figure(self, file_path, explained_class):
        curves = self.api.image_curves(file_path, explained_class)
        return png_image(presentation.curves_figure_png(curves))

    @trimmed
    def report(self, file_path, explained_class, opacity, checked=None) -> list[str]:
        """The report, the raw maps and the record as files; the robustness check goes into the report
        once it has run on this very upload."""
        analysis = self.api.analysed(file_path, explained_class)
        robustness = checked["check"] if checked and checked["file"] == file_path else None
        _, files = self.api.report_files(analysis, file_path, opacity, robustness, with_result_json=True)
        return list(files.values())


def no_downloads():
    # Hidden while empty: an empty download box would push the maps below the fold.
    return gr.update(value=None, visible=False)


def large_pair(displayed, overlays, method):
    """The radiograph against `method`'s map over it, for the slider."""
    return None if method is None else (displayed.image().convert("RGB"), overlays[method])
