"""PneumoLens: the Gradio demo, its API and the Hugging Face Space entry point.

    python app.py                      # serves MODEL_ID, or the bundled model
    MODEL_ID=you/your-model python app.py

Endpoints (see README): /predict (the decision and the probabilities, fast; concurrent requests share
batched forward passes), /explain (probabilities, decision, out-of-distribution warning and every explanation map, each
with its measured faithfulness verdict, most faithful first on the page), /report (on demand: the HTML
report, the raw maps at full resolution and the JSON record) and /faithfulness (on demand: this image's
deletion and insertion curves of every map and of the random maps they are judged against).

MCP (docs/app.md): the tools `predict`, `explain` and `robustness` (JSON text and 384-pixel maps, endpoints
of their own: /agent_predict, /agent_explain, /agent_robustness) and `faithfulness_curves`, at
/gradio_api/mcp/ unless GRADIO_MCP_SERVER=false.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
import time
import uuid
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import gradio as gr
from gradio.components.label import LabelConfidence, LabelData

from pneumolens import fair_queue, presentation
from pneumolens.batching import MicroBatcher
from pneumolens.device import gpu_call, on_zero_gpu
from pneumolens.errors import PneumoLensError
from pneumolens.explain import METHODS, TITLES
from pneumolens.explain.overlay import BLENDS, DEFAULT_BLEND, DEFAULT_OPACITY
from pneumolens.memory import trim_soon
from pneumolens.modeling import positive_index
from pneumolens.preprocessing import input_size
from pneumolens.decision import NOT_A_RADIOGRAPH
from pneumolens.service import PneumoLensService, display_size, record_json
from pneumolens.similar import SHOWN
from pneumolens.training_films import NOT_AT_HAND

logger = logging.getLogger("app")

REPO = Path(__file__).resolve().parent
EXAMPLES = sorted(str(p) for p in (REPO / "examples").glob("*.jpeg"))
# The largest clinical radiograph files are ~20 MB (uncompressed 16-bit DICOM). Gradio caps uploads; the
# app checks files itself too, since a data: URI sent to an MCP tool never passes through an upload.
MAX_FILE_BYTES = 25 * 1024 * 1024
DISPLAY_MAX_SIDE = 1024  # overlays are drawn at most this large; maps.npz keeps the full resolution
PREVIEW_MAX_SIDE = 640
# The page at 1440x900 shows the decision, the probabilities and every map after Analyse without
# scrolling (the browser test's screenshot): these heights are what keeps it so.
PREVIEW_HEIGHT = 230
MAP_HEIGHT = 135
LARGE_HEIGHT = 470  # the large view: a 1.3 MP radiograph shows about 600 px wide at 1440x900
# The maps' colormap (docs/explanations.md says why this one); PNEUMOLENS_COLORMAP=jet brings back the old.
COLORMAP = os.environ.get("PNEUMOLENS_COLORMAP", presentation.COLORMAP)
# A map's colour fades with its value so that the film shows through; PNEUMOLENS_OVERLAY=even brings back
# the uniform blend.
BLEND = os.environ.get("PNEUMOLENS_OVERLAY", DEFAULT_BLEND)
# After Analyse, bring the decision into view where it is not (a phone: it sits below the upload column).
SHOW_DECISION = """() => { const d = document.getElementById("decision"); if (!d) return;
  const r = d.getBoundingClientRect();
  if (r.top < 0 || r.top > window.innerHeight - 80) window.scrollBy(0, r.top - 8); }"""
# The same before the analysis starts, passing its inputs through unchanged (a js step's return values are
# the inputs the handler gets).
SHOW_DECISION_FIRST = "(...inputs) => { (" + SHOW_DECISION + ")(); return inputs; }"
# /predict requests that arrive while the model is busy share its next forward pass, up to this many
# (PNEUMOLENS_PREDICT_BATCH=1 serves them one by one; benchmarks/load_benchmark.py compares the two).
PREDICT_BATCH_SIZE = int(os.environ.get("PNEUMOLENS_PREDICT_BATCH", 8))
PREDICTED = "predicted class"
# What /explain returns, in this order (a Gradio API answers positionally): `named_outputs` gives
# them by name, so clients and tests never count positions.
EXPLAIN_OUTPUTS = ("probabilities", "decision", "warning", *(f"map_{m}" for m in METHODS),
                   *(f"caption_{m}" for m in METHODS), "record")


def named_outputs(values) -> dict:
    """An /explain answer (a tuple, from `gradio_client` or the function) as {name: value}."""
    return dict(zip(EXPLAIN_OUTPUTS, values[:len(EXPLAIN_OUTPUTS)], strict=True))


# What a browser session may hold on the server: what redraws its last analysis (model-input maps and a
# display-size JPEG, about 150 KB), kept for 15 minutes after the last use and for at most 200 sessions
# (the oldest go first; benchmarks/soak.py measures what a session costs the server in all).
SESSION_TIME_TO_LIVE_S = 15 * 60
SESSION_CAPACITY = 200
# Uploads, downloads and other temporary files are deleted 15 minutes after they were written (checked
# every 5 minutes): an uploaded DICOM header can carry patient data, and the disk of a Space is small.
# PNEUMOLENS_CACHE_MAX_AGE_S sets another age (the soak benchmark uses a short one).
CACHE_MAX_AGE_S = int(os.environ.get("PNEUMOLENS_CACHE_MAX_AGE_S", 15 * 60))
DELETE_CACHE = (max(1, min(5 * 60, CACHE_MAX_AGE_S // 3)), CACHE_MAX_AGE_S)
# Requests waiting in the queue (running ones not counted): per browser session or MCP agent, per network
# address (a classroom behind one school address), in all (docs/safety.md says why these numbers).
QUEUE_LIMITS = fair_queue.QueueLimits()
# What an AI agent receives (MCP): maps this large, in this format, keep a whole `explain` answer of a
# 2,000-pixel radiograph well under the ~1 MiB that common MCP clients accept (docs/app.md has the sizes).
AGENT_MAP_MAX_SIDE = 384
AGENT_MAP_FORMAT = "webp"
AGENT_OPACITY = DEFAULT_OPACITY
# `explain` calls from agents run outside Gradio's queue (below), so at most this many wait for the model.
AGENT_CALLS_AT_ONCE = 4

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
""" + presentation.scale_css(COLORMAP, BLEND) + presentation.probability_css()
DISCLAIMER = presentation.disclaimer_markdown()
TITLE = "PneumoLens: explainable pneumonia detection on chest X-rays"


class UploadedFile(gr.File):
    """A file input that takes uploads only.

    Gradio downloads a URL given as FileData before any app code runs, with no size cap, and then the
    app would read the whole file into memory; here such a payload is refused before anything is fetched.
    The one URL taken is this server's own link to a file already uploaded to it (what an MCP agent's
    `upload_file_to_gradio` returns): it names a file in the upload folder, read from disk, never fetched.
    """

    def get_block_name(self) -> str:
        return "file"  # the browser draws it with gr.File's own front end (it has none of its own)

    async def async_move_resource_to_block_cache(self, url_or_file_path):
        return await super().async_move_resource_to_block_cache(_uploaded_file(url_or_file_path))

    def move_resource_to_block_cache(self, url_or_file_path):
        return super().move_resource_to_block_cache(_uploaded_file(url_or_file_path))


class DecidedLabelData(LabelData):
    """Gradio's label data, and whether the film is referred to a person (the label stays the decision)."""
    refer: bool | None = None
    referral_band: dict[str, float] | None = None


class DecisionLabel(gr.Label):
    """A label whose headline is the model's decision rather than its most probable class: the two differ
    between 0.5 and the operating threshold, and a flagged image's headline is "not a chest radiograph".
    Its value is `decision_value(...)`; a client receives {"label": decision, "confidences": [...],
    "refer": ..., "referral_band": ...}."""

    data_model = DecidedLabelData

    def get_block_name(self) -> str:
        return "label"

    def postprocess(self, value):
        if isinstance(value, dict) and "decision" in value:
            ranked = sorted(value["probabilities"].items(), key=lambda item: item[1], reverse=True)
            return DecidedLabelData(label=value["decision"], refer=value["refer"],
                                    referral_band=value["referral_band"],
                                    confidences=[LabelConfidence(label=label, confidence=p) for label, p in ranked])
        return super().postprocess(value)


class RequestError(gr.Error):
    """What a request did wrong (or what failed), in words, for the page, gradio_client and MCP alike:
    Gradio's MCP layer makes `str(error)` the tool's error text, which gr.Error quotes."""

    def __str__(self) -> str:
        return str(self.message)


def decision_value(result: dict, probabilities: dict[str, float]) -> dict:
    """What a `DecisionLabel` shows of a prediction or analysis record: the decision, the referral and
    `probabilities`."""
    return {"decision": result["decision"], "refer": result["refer"], "referral_band": result["referral_band"],
            "probabilities": probabilities}


UPLOADED_FILE_ROUTE = "/gradio_api/file="


def _uploaded_file(url_or_file_path):
    """`url_or_file_path` itself, or the uploaded file that a link to this server's file route names;
    any other URL is refused, unfetched."""
    if url_or_file_path is None or "://" not in str(url_or_file_path):
        return url_or_file_path
    _, route, encoded = str(url_or_file_path).partition(UPLOADED_FILE_ROUTE)
    if route:
        path = Path(unquote(encoded)).resolve()
        if Path(gr.utils.get_upload_folder()).resolve() in path.parents and path.is_file():
            return str(path)
    raise RequestError("Only uploaded files are accepted: this app does not fetch URLs.")


class Handlers:
    """What the page, gradio_client and the MCP tools call: plain methods over one loaded model, which tests
    call without a server. `build_demo` lays the page out and wires these to its components."""

    def __init__(self, service: PneumoLensService, predict_batch_size: int = PREDICT_BATCH_SIZE):
        self.service = service
        # On ZeroGPU a GPU is attached only inside a `spaces.GPU` call, so each /predict runs its own pass
        # there instead of sharing the batcher's thread.
        self.batcher = None if on_zero_gpu() else MicroBatcher(service.predict_inputs, predict_batch_size)
        self.standings = {standing.name: standing for standing in service.standings}
        self.model_size = "x".join(str(side) for side in input_size(service.processor)[::-1])
        self.method_of = {TITLES[standing.name]: standing.name for standing in service.standings}
        self.admitted = _admission(AGENT_CALLS_AT_ONCE)
        self.positive_label = service.config.id2label[positive_index(service.config)]

    # -- shared by the page, gradio_client and the MCP tools ---------------------------------------------

    def predict_one(self, model_input):
        return self.service.predict_inputs([model_input])[0] if self.batcher is None \
            else self.batcher.submit(model_input)

    def predicted(self, file_path) -> dict:
        """One upload's prediction: decoded and preprocessed in the request's own thread (in parallel with
        other requests, and a bad upload fails alone, never a shared batch), then its batched pass."""
        return _safely(self.predict_one, _safely(self.service.model_input, _path(file_path)))

    def analysed(self, file_path, explained_class):
        return _safely(self.service.analyse, _path(file_path), self.explained_index(explained_class))

    def explained_index(self, explained_class):
        return None if explained_class in (None, PREDICTED) else self.service.labels.index(explained_class)

    # -- the page and gradio_client ----------------------------------------------------------------------

    def label_prediction(self, file_path):
        try:
            result = self.predicted(file_path)
            return decision_value(result, {label: round(p, 6) for label, p in result["probabilities"].items()})
        finally:
            trim_soon()

    def preview(self, file_path):
        """The upload as decoded, and no downloads: those of an earlier image no longer apply."""
        if not file_path:
            return None, "", no_downloads()
        image, details = _safely(self.service.preview, _path(file_path))
        return _fit(image, PREVIEW_MAX_SIDE), _preview_markdown(image, details, self.model_size), no_downloads()

    def report_files(self, file_path, explained_class, opacity, checked=None):
        try:
            analysis = self.analysed(file_path, explained_class)
            # The robustness check, once it has run on this very upload, goes into the report too.
            robustness = checked["check"] if checked and checked["file"] == file_path else None
            return _downloads(analysis, self.service.report(analysis, opacity, Path(file_path).name,
                                                            DISPLAY_MAX_SIDE, COLORMAP, robustness, BLEND))
        finally:
            trim_soon()

    def robustness_for_page(self, file_path):
        try:
            check = _safely(self.service.robustness, _path(file_path))
            figure = None if check.withheld else check.figure()
            return check.sentence(), figure, check.record(), {"file": file_path, "check": check}
        finally:
            trim_soon()

    def faithfulness_curves(self, image: str, explained_class: str = PREDICTED):
        """How faithful each explanation map is for this one chest radiograph: the deletion and insertion curves of every map and of the random maps of the same grid it is judged against. Removing (deletion) or revealing (insertion) the pixels in the order a faithful map ranks them makes the explained class's log-odds fall or rise faster than for a random map. About 110 forward passes: several seconds on a CPU.

        Args:
            image: The chest radiograph (JPEG, PNG, 16-bit PNG or DICOM, at most 25 MB) as a data: URI ("data:image/jpeg;base64,...") or a file uploaded to this server. URLs are refused: this server never fetches anything.
            explained_class: "predicted class" to explain the decision, or the name of the class whose evidence the maps show ("NORMAL" or "PNEUMONIA" for the bundled model).

        Returns:
            One PNG figure of the curves, the log-odds of the explained class against the share of pixels removed or revealed.
        """
        try:
            return _safely(self.service.faithfulness_curves, _path(image), self.explained_index(explained_class))
        finally:
            trim_soon()

    def page_explanation(self, file_path, explained_class, opacity):
        try:
            return self.page_outputs(file_path, explained_class, opacity)
        finally:  # the full-resolution analysis is freed by now
            trim_soon()

    def page_outputs(self, file_path, explained_class, opacity):
        analysis = self.analysed(file_path, explained_class)
        displayed = analysis.displayed(DISPLAY_MAX_SIDE)
        overlays = displayed.overlays(opacity, COLORMAP, blend=BLEND)
        explanation = analysis.explanation
        captions = [_caption(self.service.standings, self.standings[method], explanation.explained_class,
                             explanation.settings.get(method, ""), explanation.unavailable.get(method),
                             analysis.readings.get(method))
                    for method in METHODS]
        ood = analysis.ood
        warning = f"⚠️ **Warning:** {ood['warning']}" if ood.get("warning") else ""
        # A flagged image's probabilities are in the headline's small print, not beside it as bars.
        shown = {} if analysis.withheld else analysis.explanation.probabilities
        record = analysis.record()
        return (
            decision_value(record, shown),
            _decision_markdown(analysis),
            warning,
            *[overlays.get(method) for method in METHODS],
            *captions,
            record,
            displayed,
        )

    def similar_row(self, record):
        """The similar training films of the record's analysis: the count and what the row is, and the
        pictures of the nearest SHOWN where the training images are at hand."""
        if not record:
            return gr.skip(), gr.skip()
        similar = record.get("similar")
        shown = [] if similar is None else [
            (picture, presentation.similar_caption(similar, row)) for row, picture in
            enumerate(map(self.service.film_image, similar["ids"][:SHOWN])) if picture is not None]
        text = presentation.similar_markdown(similar, self.positive_label, SHOWN, bool(shown), NOT_AT_HAND,
                                             withheld=record.get("decision") == NOT_A_RADIOGRAPH)
        return text, gr.update(value=shown or None, visible=bool(shown))

    def redraw(self, displayed, opacity, large_title):
        if displayed is None:  # nothing analysed yet, or the session's maps have expired: leave the page as is
            return [gr.skip()] * (len(METHODS) + 1)
        overlays = displayed.overlays(opacity, COLORMAP, blend=BLEND)
        return [*[overlays.get(method) for method in METHODS],
                large_pair(displayed, overlays, self.large_method(displayed, large_title))]

    def large_view(self, displayed, opacity, large_title):
        if displayed is None:
            return gr.skip()
        method = self.large_method(displayed, large_title)
        return large_pair(displayed, displayed.overlays(opacity, COLORMAP, [method], BLEND), method)

    def large_method(self, displayed, large_title):
        """The chosen map, or the first one there is where the architecture cannot make it (ConvNeXt has
        no attention maps)."""
        chosen = self.method_of[large_title]
        return chosen if chosen in displayed.input_maps_png else next(iter(displayed.input_maps_png), None)

    # -- the MCP tools: answers an AI agent can take (JSON text, maps of at most AGENT_MAP_MAX_SIDE pixels).
    # Gradio names each tool by its function and reads an argument's description from its own line alone.

    def predict(self, image: str) -> str:
        """Decide whether a chest radiograph shows pneumonia, from one forward pass of the model: the decision, the calibrated probabilities and the out-of-distribution check. A research demo, not a medical device.

        Args:
            image: The chest radiograph (JPEG, PNG, 16-bit PNG or DICOM, at most 25 MB) as a data: URI ("data:image/jpeg;base64,...") or a file uploaded to this server. URLs are refused: this server never fetches anything.

        Returns:
            JSON text. "decision": the class decided at the model's operating threshold, or "not a chest radiograph" (and no class) when the out-of-distribution detector flags the image. "refer": true when the probability lies inside the model's "referral_band" ("lower", "upper" on the positive class's probability): a radiologist should read this film, the model is not sure enough to decide, and "decision" is only the class it leans to. "probabilities": each class's calibrated probability. "threshold": the probability of the positive class from which it is decided. "out_of_distribution": the detector's "score", "threshold" and "flagged".
        """
        try:
            return json.dumps(self.predicted(image))
        finally:
            trim_soon()

    def explain(self, image: str, explained_class: str = PREDICTED):
        """Explain a chest radiograph's pneumonia decision: the decision and probabilities as the predict tool gives them, and four explanation maps over the image (transformer attribution, Grad-CAM, gradient saliency, attention rollout), most faithful first, each with the faithfulness verdict measured for this model. A research demo, not a medical device.

        Args:
            image: The chest radiograph (JPEG, PNG, 16-bit PNG or DICOM, at most 25 MB) as a data: URI ("data:image/jpeg;base64,...") or a file uploaded to this server. URLs are refused: this server never fetches anything.
            explained_class: "predicted class" to explain the decision, or the name of the class whose evidence the maps show ("NORMAL" or "PNEUMONIA" for the bundled model).

        Returns:
            First, JSON text: "decision", "refer", "referral_band", "probabilities", "threshold", "explained_class", "out_of_distribution" as from predict; "map_images", the names of the images that follow, in their order; "maps", for each map its "faithfulness" verdict ("passed": it beat a random map of its own grid at finding the pixels the model uses, on this model's validation images), a "note" with the measured intervals, the "settings" that made it, "peak_at_edge" (true: its strongest region lies at the film's edge, where letters and borders sit, not in the lungs) and "edge_share" (the share of the map there; the edge is 51 % of the frame); "agreement": which maps agree on this film's strongest region ("pairs": each pair's overlap, "groups" above "agree_above", and the reading in one "sentence"); "maps_unavailable", the maps this architecture cannot give, with the reason; "similar": the training films most similar to this one in the model's own features ("nearest" of them, "counts" per class, and their "ids", "labels" and "similarities", most similar first), which show what the model sees in the film and are no second opinion (null without an index, or for an image that is not a chest radiograph). Then one image per map (WebP, at most 384 px, viridis colours that fade where the map is low, so the film shows through): the brighter and yellower a region, the more the map puts there (for Grad-CAM, more evidence for the explained class), relative to this image's strongest region.
        """
        with self.admitted():
            try:
                analysis = self.analysed(image, explained_class)
                overlays = analysis.displayed(AGENT_MAP_MAX_SIDE).overlays(AGENT_OPACITY, COLORMAP, blend=BLEND)
                record = analysis.record()
                record["map_images"] = [s.name for s in self.service.standings if s.name in overlays]
                return (json.dumps(record), *[overlays.get(s.name) for s in self.service.standings])
            finally:
                trim_soon()

    def robustness(self, image: str) -> str:
        """Does a chest radiograph's decision hold under acquisition changes? The decision and the calibrated probability of the image under each of the 26 changes of the shortcut stress suite (framing, film shape, burned-in text, devices, exposure, processing, detector), seeded so that an image always gets the same answer. A decision that holds is not thereby correct; a change that flips it names a shortcut the model may be using on this image. About 27 forward passes: several seconds on a CPU.

        Args:
            image: The chest radiograph (JPEG, PNG, 16-bit PNG or DICOM, at most 25 MB) as a data: URI ("data:image/jpeg;base64,...") or a file uploaded to this server. URLs are refused: this server never fetches anything.

        Returns:
            JSON text. "sentence": the answer in one sentence. "decision", "refer", "probability" and "threshold" of the unchanged image; "held" of "changes" keep the answer; "flipped": the names of the changes after which the image is decided as the other class; "referred": those that move a decided image into the referral band (a person should read it), which is no flip; "decided": for a referred image, those that move it out of the band; "outcomes": for each change its "name", "group", "description", "probability", "decision", "flipped" and "referred". "withheld" says why nothing was checked when the image is not a chest radiograph.
        """
        try:
            return json.dumps(_safely(self.service.robustness, _path(image)).record())
        finally:
            trim_soon()


def no_downloads():
    # Hidden while empty: an empty download box would push the maps below the fold.
    return gr.update(value=None, visible=False)


def show_downloads():
    return gr.update(visible=True)


def no_robustness():
    return "", None


def large_pair(displayed, overlays, method):
    """The radiograph against `method`'s map over it, for the slider."""
    return None if method is None else (displayed.image().convert("RGB"), overlays[method])


def build_demo(service: PneumoLensService, delete_cache: tuple[int, int] | None = DELETE_CACHE,
               predict_batch_size: int = PREDICT_BATCH_SIZE,
               queue_limits: fair_queue.QueueLimits = QUEUE_LIMITS) -> gr.Blocks:
    """The Blocks app around one loaded model: the page's layout, and its events wired to `Handlers`."""
    handlers = Handlers(service, predict_batch_size)
    # The whole width of the window: at 1440 pixels the large view gets 600 of them.
    with gr.Blocks(title=TITLE, delete_cache=delete_cache, fill_width=True) as demo:
        page = page_components(service, handlers.method_of)
        wire_events(page, handlers, predict_batch_size)
        add_agent_tools(handlers, predict_batch_size)
    demo.queue(max_size=queue_limits.queue_size)
    fair_queue.install(demo, queue_limits)
    return demo


def page_components(service: PneumoLensService, method_of: dict[str, str]) -> SimpleNamespace:
    """The page's components, laid out inside the Blocks being built; returned by name for the wiring."""
    gr.Markdown(f"## {TITLE}\n{DISCLAIMER}", elem_id="header")
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            # No file_types filter: DICOM files often have no extension; the content decides.
            upload = UploadedFile(label="Chest X-ray: JPEG, PNG (8 or 16-bit) or DICOM", type="filepath",
                                  height=110)
            shown = gr.Image(label="Preview (as decoded)", type="pil", format="jpeg", interactive=False,
                             height=PREVIEW_HEIGHT, elem_id="preview")
            shown_details = gr.Markdown(elem_id="preview-details")
            with gr.Row():
                explained_class = gr.Dropdown([PREDICTED, *service.labels], value=PREDICTED,
                                              label="Explain the class", min_width=120)
                opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity", min_width=120)
            run = gr.Button("Analyse", variant="primary")
            gr.Examples(EXAMPLES, inputs=upload, label="Examples (official validation images, CC BY 4.0)")
        with gr.Column(scale=7, min_width=340):
            decision = gr.Markdown(elem_id="decision")
            warning = gr.Markdown(elem_id="ood-warning")
            # The API's decision and probabilities (a label whose headline is the decision); the page shows
            # them in the decision's own display, where the threshold is marked and no 100 % is printed.
            probabilities = DecisionLabel(num_top_classes=len(service.labels), visible=False)
            with gr.Row():
                with gr.Column(scale=6, min_width=340):
                    large = gr.ImageSlider(label="One map, large: the radiograph | the map over it (drag)",
                                           type="pil", format="jpeg", max_height=LARGE_HEIGHT,
                                           interactive=False, elem_id="large-view")
                    large_title = gr.Radio(list(method_of), value=next(iter(method_of)), show_label=False,
                                           elem_id="large-choice")
                # Every map, most faithful first, each with its verdict and scale; answered in registry order,
                # by name (EXPLAIN_OUTPUTS).
                with gr.Column(scale=4, min_width=340):
                    image_of, caption_of = {}, {}
                    for pair in _pairs(service.standings):
                        with gr.Row():
                            for standing in pair:
                                with gr.Column(min_width=165):
                                    image_of[standing.name] = gr.Image(
                                        label=TITLES[standing.name], type="pil", format="jpeg",
                                        height=MAP_HEIGHT, elem_id=f"map-{standing.name}",
                                        elem_classes="map-image")
                                    caption_of[standing.name] = gr.Markdown(
                                        _caption(service.standings, standing), elem_id=f"caption-{standing.name}",
                                        elem_classes="map-caption")
            images, captions = [image_of[m] for m in METHODS], [caption_of[m] for m in METHODS]
            # The training films nearest in the model's features: filled after the analysis, from its record.
            with gr.Column(elem_id="similar-films"):
                similar_text = gr.Markdown(elem_id="similar-sentence")
                similar_gallery = gr.Gallery(label="The most similar training films (click one to enlarge)",
                                             columns=SHOWN, rows=1, height="auto", object_fit="contain",
                                             format="jpeg", visible=False, elem_id="similar-gallery")
            with gr.Row():
                # Made on demand: most people never download, and the full-resolution maps cost a
                # second pass only to those who do.
                make_report = gr.Button("Report and raw maps", elem_id="make-report", size="sm")
            downloads = gr.File(label="Downloads: report (.html), raw maps (.npz), result (.json)",
                                file_count="multiple", elem_id="downloads", visible=False)
            with gr.Accordion("Result (JSON)", open=False):
                result = gr.JSON(show_label=False)
    with gr.Accordion("How faithful are these maps for this image?", open=False):
        gr.Markdown("Deletion and insertion curves of every map and of the random maps they are judged "
                    "against, for the uploaded image: a faithful map makes the explained class's log-odds "
                    "fall fastest when its pixels are removed first, and rise fastest when they are revealed "
                    "first. About 110 forward passes: several seconds on a CPU.")
        make_curves = gr.Button("Measure on this image", elem_id="make-curves")
        curves = gr.Image(label="Faithfulness on this image", type="pil", format="png", elem_id="curves")
    with gr.Accordion("Does this decision hold? The image under each acquisition change", open=False):
        gr.Markdown("The decision and the probability of this image under each change of the shortcut stress "
                    "suite: tighter framing, another film shape, pasted markers and text, devices, exposure, "
                    "processing and detector changes, seeded so that an image always gets the same answer. A "
                    "decision that holds is not thereby correct; a change that flips it names a shortcut the "
                    "model may be using on this image. 27 forward passes, in batches.")
        check_robustness = gr.Button("Check this image", elem_id="check-robustness")
        robustness_answer = gr.Markdown(elem_id="robustness-sentence")
        robustness_figure = gr.Image(label="The probability under each change", type="pil", format="png",
                                     elem_id="robustness-figure")
        robustness_record = gr.JSON(visible=False)
    with gr.Accordion("About the model", open=False):
        gr.Markdown(service.summary())
    state = gr.State(time_to_live=SESSION_TIME_TO_LIVE_S)
    checked = gr.State(time_to_live=SESSION_TIME_TO_LIVE_S)  # the robustness check of the current upload
    return SimpleNamespace(
        upload=upload, shown=shown, shown_details=shown_details, explained_class=explained_class, opacity=opacity,
        run=run, decision=decision, warning=warning, probabilities=probabilities, large=large,
        large_title=large_title, images=images, captions=captions, make_report=make_report, downloads=downloads,
        result=result, similar_text=similar_text, similar_gallery=similar_gallery, make_curves=make_curves, curves=curves, check_robustness=check_robustness, robustness_answer=robustness_answer,
        robustness_figure=robustness_figure, robustness_record=robustness_record, state=state, checked=checked)


def wire_events(page: SimpleNamespace, handlers: Handlers, predict_batch_size: int) -> None:
    """Each event of the page, and the API's endpoints, to its handler, inside the Blocks being built."""
    # Every handler that runs the model, under `spaces.GPU` where that package is installed (ZeroGPU).
    # Gradio makes every public endpoint an MCP tool: those made for the page and for gradio_client
    # (positional tuples, a session state, full-size overlays, downloads) are listed for programs only.
    label_prediction, page_explanation, report_files, robustness_for_page = (
        not_an_mcp_tool(gpu_call(handler)) for handler in (handlers.label_prediction, handlers.page_explanation,
                                                            handlers.report_files, handlers.robustness_for_page))
    faithfulness_curves = gpu_call(handlers.faithfulness_curves)
    redraw = dict(api_visibility="private", concurrency_limit=2, concurrency_id="redraw")
    on_model = dict(concurrency_limit=1, concurrency_id="model")

    page.upload.change(handlers.preview, page.upload, [page.shown, page.shown_details, page.downloads],
                       api_visibility="private", concurrency_limit=2, concurrency_id="preview")
    page.upload.change(no_robustness, None, [page.robustness_answer, page.robustness_figure],
                       api_visibility="private", concurrency_limit=None)
    page.explained_class.change(no_downloads, None, page.downloads, api_visibility="private", concurrency_limit=None)
    # The decision comes into view at once: while the analysis waits, its queue position shows there.
    page.run.click(page_explanation, [page.upload, page.explained_class, page.opacity],
                   [page.probabilities, page.decision, page.warning, *page.images, *page.captions, page.result,
                    page.state], api_name="explain", js=SHOW_DECISION_FIRST, **on_model).success(
        handlers.large_view, [page.state, page.opacity, page.large_title], page.large, **redraw).then(
        None, js=SHOW_DECISION).then(handlers.similar_row, page.result, [page.similar_text, page.similar_gallery],
                                     **redraw)
    page.make_curves.click(faithfulness_curves, [page.upload, page.explained_class], page.curves,
                           api_name="faithfulness", **on_model)
    page.check_robustness.click(robustness_for_page, page.upload, [page.robustness_answer, page.robustness_figure,
                                                                   page.robustness_record, page.checked],
                                api_name="robustness", **on_model)
    # The API answers the files alone; the page then shows the box that holds them.
    page.make_report.click(report_files, [page.upload, page.explained_class, page.opacity, page.checked],
                           page.downloads, api_name="report", **on_model).success(
        show_downloads, None, page.downloads, api_visibility="private", concurrency_limit=None)
    # Queued like everything else, but in its own group: a redraw never waits for the model.
    page.opacity.release(handlers.redraw, [page.state, page.opacity, page.large_title], [*page.images, page.large],
                         **redraw)
    page.large_title.change(handlers.large_view, [page.state, page.opacity, page.large_title], page.large, **redraw)
    # The fast endpoint: no button of its own in the page, one forward pass, for programs. As many at once
    # as one batch holds: they wait in the batcher, not in Gradio's queue.
    answer = DecisionLabel(visible=False)
    gr.Button(visible=False).click(label_prediction, page.upload, answer, api_name="predict",
                                   concurrency_limit=predict_batch_size, concurrency_id="predict")


def not_an_mcp_tool(function):
    """`function`, left out of the MCP tool list (Gradio's list skips a function marked as another kind of
    MCP object); gradio_client still calls it. The test of the tool list checks that this still holds."""
    @functools.wraps(function)
    def endpoint(*args, **kwargs):
        return function(*args, **kwargs)

    endpoint._mcp_type = "gradio_client endpoint"
    return endpoint


def add_agent_tools(handlers: Handlers, predict_batch_size: int) -> None:
    """The MCP tools `predict`, `explain` and `robustness`, endpoints of their own, inside the Blocks being
    built."""
    predict, explain, robustness = map(gpu_call, (handlers.predict, handlers.explain, handlers.robustness))
    with gr.Group(visible=False):
        image = UploadedFile(type="filepath")
        explained_class = gr.Textbox(value=PREDICTED)
        answer = gr.Textbox()
        maps = [gr.Image(type="pil", format=AGENT_MAP_FORMAT) for _ in handlers.service.standings]
    gr.Button(visible=False).click(predict, image, answer, api_name="agent_predict",
                                   concurrency_limit=predict_batch_size, concurrency_id="predict")
    gr.Button(visible=False).click(robustness, image, answer, api_name="agent_robustness", concurrency_limit=1,
                                   concurrency_id="model")
    # Outside the queue: Gradio's MCP layer gives a tool of several outputs only its first when the event is
    # queued (6.31). The service's model lock serialises the passes; `admitted` bounds the waiting.
    gr.Button(visible=False).click(explain, [image, explained_class], [answer, *maps], api_name="agent_explain",
                                   queue=False)


def _admission(limit: int):
    """A context manager that admits at most `limit` callers at once and refuses the next one plainly."""
    slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def admitted():
        if not slots.acquire(blocking=False):
            raise RequestError(f"The server is busy with {limit} other explanations; please try again in a minute.")
        try:
            yield
        finally:
            slots.release()
    return admitted


def delete_old_cache_files(blocks: gr.Blocks, age_s: float) -> int:
    """Delete the files `blocks` put in Gradio's cache more than `age_s` seconds ago; return how many.

    Gradio's own `delete_cache` task iterates the live sets of cached files while requests add to them,
    dies at the first "Set changed size during iteration" and never deletes again (measured: a
    100-session soak left all 624 MB). This walks copies, so requests can keep arriving.
    """
    keep = set().union(*(getattr(block, "keep_in_cache", set()) for block in blocks.blocks.values()))
    now, deleted = time.time(), 0
    for cached in list(blocks.temp_file_sets):
        for file in list(cached):
            if file in keep:
                continue
            try:
                if now - os.lstat(file).st_ctime > age_s:
                    os.remove(file)
                    deleted += 1
                    cached.discard(file)
            except FileNotFoundError:
                cached.discard(file)
    return deleted


def delete_old_data_uri_files(folder: Path, age_s: float) -> int:
    """Gradio's MCP layer writes an image sent as a data: URI to `folder`/<hash>/file.<ext> and tracks it
    nowhere else; it can be a DICOM with patient data, so it goes after `age_s` seconds like an upload."""
    now, deleted = time.time(), 0
    for file in folder.glob("*/file*"):
        try:
            if file.name.split(".")[0] == "file" and now - file.lstat().st_ctime > age_s:
                file.unlink()
                deleted += 1
        except FileNotFoundError:
            pass
    return deleted


@asynccontextmanager
async def cache_cleanup(server_app):
    """A lifespan for the server: every `delete_cache` frequency, `delete_old_cache_files` in a thread."""
    blocks = server_app.get_blocks()
    frequency, age = blocks.delete_cache or (None, None)

    async def clean_periodically():
        while True:
            await asyncio.sleep(frequency)
            try:
                await asyncio.to_thread(delete_old_cache_files, blocks, age)
                await asyncio.to_thread(delete_old_data_uri_files, Path(gr.utils.get_upload_folder()), age)
            except Exception:  # a failed sweep must not end the next ones
                logger.exception("Cache cleanup failed")

    task = asyncio.create_task(clean_periodically()) if frequency and age else None
    try:
        yield
    finally:
        if task:
            task.cancel()


def _path(file_path) -> str:
    if not file_path:
        raise RequestError("Please upload a chest X-ray image or DICOM file first.")
    path = str(file_path)
    # Uploads arrive as files in Gradio's cache; anything else (a URL, an arbitrary path) is refused.
    if "://" in path or not Path(path).is_file():
        raise RequestError("Only uploaded files are accepted.")
    size = Path(path).stat().st_size
    if size > MAX_FILE_BYTES:
        raise RequestError(f"The file is too large: {size / 2**20:.1f} MB, at most {MAX_FILE_BYTES / 2**20:.0f} MB "
                           "are accepted.")
    return path


def _safely(function, *args):
    """Run a model call; bad input becomes a `gr.Error` naming the problem, and the server keeps serving."""
    try:
        return function(*args)
    except PneumoLensError as err:
        raise RequestError(str(err)) from err
    except Exception as err:  # a bug must not take the server down; log it, tell the user plainly
        logger.exception("Analysis failed")
        raise RequestError(f"The analysis failed ({type(err).__name__}). Please try another image.") from err


def _caption(standings, standing, explained_label: str = "the explained class", settings: str = "",
             unavailable: str | None = None, reading=None) -> str:
    """A map's caption: its verdict in plain words and rank, its colour scale, the caveat where it peaks at the
    film's edge, how to read it, and behind a disclosure the settings that made it and the measured intervals."""
    measured = [s.name for s in standings if s.passes is not None]
    rank = measured.index(standing.name) + 1 if standing.name in measured else 0
    return presentation.caption_markdown(standing, rank, len(measured), explained_label, settings, unavailable,
                                         reading, BLEND)


def _pairs(items: list) -> list[list]:
    return [items[i:i + 2] for i in range(0, len(items), 2)]


def _decision_markdown(analysis) -> str:
    explanation = analysis.explanation
    shown = presentation.probability_html(explanation.probabilities, analysis.positive_label, analysis.threshold,
                                          withheld=analysis.withheld, band=analysis.band)
    agreement = (f'\n\n<div class="maps-agreement" id="maps-agreement">{analysis.agreement["sentence"]}</div>'
                 if analysis.agreement["sentence"] else "")
    if analysis.withheld:
        return (f"### Decision: {NOT_A_RADIOGRAPH}\nNo class is decided. <small>The model's probabilities, not "
                f"meaningful for this image:</small>\n\n{shown}\n\nThe maps explain {explanation.explained_class}."
                f"{agreement}")
    heading = presentation.headline(analysis.decision, analysis.refer)
    referral = (f'\n<div class="referral" id="referral">{presentation.referral_sentence(analysis.decision, analysis.band)}'
                "</div>\n" if analysis.refer else "")
    return (f"### {heading}\n{referral}{shown}\n\nThe maps explain **{explanation.explained_class}**. "
            f"{presentation.RELATIVE_NOTE}{agreement}")


def _fit(image, max_side: int):
    return image.resize(display_size(image.size, max_side))


def _preview_markdown(image, details: dict, model_size: str) -> str:
    known = ", ".join(f"{name} {value}" for name, value in details.items() if name not in ("format", "size"))
    return (f"**{details.get('format', 'image')}**, {image.width} x {image.height} px as decoded"
            f"{'; ' + known if known else ''}. The model sees it resized to {model_size}.")


def _downloads(analysis, report_html: str) -> list[str]:
    # Written inside Gradio's cache, so that it serves them without a copy and the cache sweep removes them.
    folder = Path(gr.utils.get_upload_folder()) / f"pneumolens-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text(report_html, encoding="utf-8")
    (folder / "maps.npz").write_bytes(analysis.maps_npz())
    (folder / "result.json").write_text(record_json(analysis))
    return [str(folder / name) for name in ("report.html", "maps.npz", "result.json")]


def launch_options() -> dict:
    return {"max_file_size": MAX_FILE_BYTES, "server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            "state_session_capacity": SESSION_CAPACITY, "app_kwargs": {"lifespan": cache_cleanup}, "css": PAGE_CSS,
            "mcp_server": serves_mcp()}


def serves_mcp() -> bool:
    """Whether to serve the MCP tools at /gradio_api/mcp/: yes, unless GRADIO_MCP_SERVER says false (or 0)."""
    return os.environ.get("GRADIO_MCP_SERVER", "true").strip().lower() not in ("false", "0", "no", "off")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if BLEND not in BLENDS:
        raise SystemExit(f"error: PNEUMOLENS_OVERLAY={BLEND}: use one of {', '.join(BLENDS)}")
    try:
        app_service = PneumoLensService()  # PNEUMOLENS_TRAINING_FILMS: where the similar films' pictures are
    except PneumoLensError as error:
        raise SystemExit(f"error: {error}")
    build_demo(app_service).launch(**launch_options())
