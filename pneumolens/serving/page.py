"""The page's own handlers: what the browser's events call (all private, not part of the programs' API).

Each answers plain values by name (a dict), so tests call it without Gradio; app.py maps the names to the
page's components once (`by_component`).
"""

from __future__ import annotations

import gradio as gr
from PIL import Image

from pneumolens import presentation
from pneumolens.charts import curves_figure_png, robustness_figure_png
from pneumolens.dicom import Window
from pneumolens.film_view import AS_STORED, FilmView
from pneumolens.figures import png_image
from pneumolens.decision import NOT_A_RADIOGRAPH
from pneumolens.explain import METHODS, TITLES
from pneumolens.modeling import positive_index
from pneumolens.preprocessing import input_size
from pneumolens.serving.displayed import DisplayedMaps, display_size
from pneumolens.serving.api import ProgramApi
from pneumolens.serving.uploads import checked_path, errors_as_request_errors, trim_heap_after
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
        """The upload as decoded, and no downloads: those of an earlier image no longer apply. A DICOM's
        window control shows the file's windows and presets; it is hidden for any other picture."""
        if not file_path:
            return {"shown": None, "details": "", "downloads": no_downloads(), **window_controls(None)}
        path = checked_path(file_path)
        with errors_as_request_errors():
            image, details, film = self.service.preview(path)
        view = None if film is None else FilmView.of(film, display_size(image.size, self.settings.display_max_side))
        return {"shown": image.resize(display_size(image.size, self.settings.preview_max_side)),
                "details": presentation.preview_markdown(image, details, self.model_size), "downloads": no_downloads(),
                **window_controls(view)}

    def window_preset(self, view, choice) -> dict:
        """A preset chosen: the sliders move to it and the preview shows the film through it."""
        if view is None:
            return {name: gr.skip() for name in ("window", "shown", "level", "width")}
        window = view.window(choice)
        shown = window or view.stored_window
        return {"window": window, "shown": self.preview_of(view, window),
                "level": gr.update(value=shown.centre), "width": gr.update(value=shown.width)}

    def window_from_sliders(self, view, level, width) -> dict:
        """The sliders released: the film through that level and width."""
        if view is None:
            return {name: gr.skip() for name in ("window", "shown", "choice")}
        window = Window(float(level), max(float(width), 1.0), CUSTOM_WINDOW)
        return {"window": window, "shown": self.preview_of(view, window), "choice": gr.update(value=CUSTOM_WINDOW)}

    def preview_of(self, view, window):
        image = view.image(window)
        return image.resize(display_size(image.size, self.settings.preview_max_side))

    @trim_heap_after
    def analysis(self, file_path, explained_class, opacity, view=None, window=None) -> dict:
        analysis = self.api.analysed(file_path, explained_class)
        displayed = DisplayedMaps.of(analysis.explanation, self.settings.display_max_side)
        overlays = displayed.overlays(opacity, self.settings.colormap, blend=self.settings.blend,
                                      base=displayed_film(displayed, view, window))
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
            return {"similar_text": gr.skip(), "similar_gallery": gr.skip()}
        similar = record.get("similar")
        shown = [] if similar is None else [
            (picture, presentation.similar_caption(similar, row)) for row, picture in
            enumerate(map(self.service.film_image, similar["ids"][:SHOWN])) if picture is not None]
        text = presentation.similar_markdown(similar, self.positive_label,
                                             SHOWN, bool(shown), NOT_AT_HAND,
                                             withheld=record.get("decision") == NOT_A_RADIOGRAPH)
        return {"similar_text": text, "similar_gallery": gr.update(value=shown or None, visible=bool(shown))}

    def redraw(self, displayed, opacity, large_title, view=None, window=None) -> dict:
        """Every map and the large view again: another opacity, or the film under another window."""
        if displayed is None:  # nothing analysed yet, or the session's maps have expired: leave the page as is
            return {name: gr.skip() for name in (*(f"map_{m}" for m in METHODS), "large")}
        film = displayed_film(displayed, view, window)
        overlays = displayed.overlays(opacity, self.settings.colormap, blend=self.settings.blend, base=film)
        return {**{f"map_{method}": overlays.get(method) for method in METHODS},
                "large": large_pair(film, overlays, self.large_method(displayed, large_title))}

    def large_view(self, displayed, opacity, large_title, view=None, window=None):
        if displayed is None:
            return gr.skip()
        method = self.large_method(displayed, large_title)
        film = displayed_film(displayed, view, window)
        return large_pair(film, displayed.overlays(opacity, self.settings.colormap, [method], self.settings.blend,
                                                   base=film), method)

    def large_method(self, displayed, large_title):
        """The chosen map, or the first one there is where the architecture cannot make it (ConvNeXt has
        no attention maps)."""
        chosen = self.method_of[large_title]
        return chosen if chosen in displayed.input_maps_png else next(iter(displayed.input_maps_png), None)

    @trim_heap_after
    def robustness(self, file_path) -> dict:
        check = self.api.robustness_check(file_path)
        figure = None if check.withheld else png_image(robustness_figure_png(check))
        return {"robustness_sentence": check.sentence(), "robustness_figure": figure,
                "checked": {"file": file_path, "check": check}}

    @trim_heap_after
    def faithfulness_figure(self, file_path, explained_class):
        curves = self.api.image_curves(file_path, explained_class)
        return png_image(curves_figure_png(curves))

    @trim_heap_after
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


def large_pair(film, overlays, method):
    """The radiograph (`displayed_film`) against `method`'s map over it, for the slider."""
    return None if method is None else (film.convert("RGB"), overlays[method])


CUSTOM_WINDOW = "Custom (the sliders)"


def displayed_film(displayed, view: FilmView | None, window: Window | None):
    """The film the maps are drawn over, at the displayed size: as analysed, or under the window a person chose
    for a DICOM."""
    shown = displayed.image()
    if view is None or window is None:
        return shown
    return view.image(window).resize(shown.size, Image.BILINEAR)


def window_controls(view: FilmView | None) -> dict:
    """The window control for an upload: shown with the film's presets for a grey DICOM, hidden otherwise;
    the session's film view and window reset."""
    if view is None:
        hidden = gr.update(visible=False)
        return {"film": None, "window": None, "choice": hidden, "level": hidden, "width": hidden,
                "window_note": hidden}
    low, high = view.slider_range()
    return {"film": view, "window": None,
            "choice": gr.update(choices=[*view.choices, CUSTOM_WINDOW], value=AS_STORED, visible=True),
            "level": gr.update(minimum=low, maximum=high, value=view.stored_window.centre, visible=True),
            "width": gr.update(minimum=1, maximum=high - low, value=view.stored_window.width, visible=True),
            "window_note": gr.update(visible=True)}
