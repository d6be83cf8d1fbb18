"""The programs' API: one named endpoint per operation, the same for gradio_client and for AI agents over MCP.

Each endpoint answers the JSON record first, as text (what an agent reads as it is, and `json.loads` in a
program), then its images or files. The record names each of them ("images" or "files": {name: file
name}) and each file carries that name, so a client finds a map by its name, never by its position. The
docstrings are the MCP tools' descriptions: Gradio reads an argument's description from its own line.

No `from __future__ import annotations` here: `gr.api` reads the return annotations as objects.
"""

import functools
import inspect
import json
import uuid
from pathlib import Path

import gradio as gr
from gradio import FileData

from pneumolens.batching import MicroBatcher
from pneumolens.device import on_zero_gpu
from pneumolens.explain.overlay import DEFAULT_OPACITY
from pneumolens.figures import image_bytes
from pneumolens.charts import curves_figure_png, robustness_figure_png
from pneumolens.sheets import map_sheet
from pneumolens.service import PneumoLensService, record_json
from pneumolens.serving.displayed import DisplayedMaps, report_html
from pneumolens.serving.settings import ServingSettings
from pneumolens.serving.uploads import RequestError, checked_path, errors_as_request_errors, trim_heap_after

PREDICTED = "predicted class"
# Each argument's description, the same for every endpoint that takes it (`described`).
ARGUMENTS = {
    "image": (
        "The chest radiograph (JPEG, PNG, 16-bit PNG or DICOM, at most 25 MB) as a data: URI "
        '("data:image/jpeg;base64,...") or a file uploaded to this server. URLs are refused: this server never '
        "fetches anything."),
    "explained_class": (
        '"predicted class" to explain the decision, or the name of the class whose evidence the maps show '
        '("NORMAL" or "PNEUMONIA" for the bundled model).'),
    "opacity": (
        "The maps' opacity in the report at each map's strongest point, from 0 to 1."),
    "robustness": (
        "Also check the decision under each change of the stress suite, in the report (27 more forward passes)."),
}
# Every map on one sheet, one file: each file a client downloads costs it a connection (about 50 ms for
# gradio_client, which opens a new one for each), and the record names where each map sits on it.
MAPS_IMAGE = "maps.jpeg"


def described(summary: str, returns: str):
    """Give an endpoint its docstring, which Gradio makes the API's and the MCP tool's description: the
    `summary`, each of its arguments' description from ARGUMENTS, and what it `returns`."""
    def describe(function):
        arguments = [name for name in inspect.signature(function).parameters if name != "self"]
        listed = "\n".join(f"    {name}: {ARGUMENTS[name]}" for name in arguments)
        function.__doc__ = f"{summary}\n\nArgs:\n{listed}\n\nReturns:\n    {returns}\n"
        return function
    return describe


class ProgramApi:
    """The operations over one loaded model, as plain methods: the endpoints call them, the page's own
    handlers build on them, tests call them without a server."""

    def __init__(self, service: PneumoLensService, settings: ServingSettings = ServingSettings()):
        self.service = service
        self.settings = settings
        # On ZeroGPU a GPU is attached only inside a `spaces.GPU` call, so each /predict runs its own pass
        # there instead of sharing the batcher's thread.
        self.batcher = None if on_zero_gpu() else MicroBatcher(service.predict_inputs, settings.predict_batch_size)

    # -- the mechanics the endpoints and the page share -----------------------------------------------------

    def predicted(self, image) -> dict:
        """One upload's prediction: decoded and preprocessed in the request's own thread (in parallel with
        other requests, and a bad upload fails alone, never a shared batch), then its batched pass."""
        path = checked_path(image)
        with errors_as_request_errors():
            model_input = self.service.model_input(path)
            if self.batcher is None:
                return self.service.predict_inputs([model_input])[0]
            return self.batcher.submit(model_input)

    def analysed(self, image, explained_class: str | None):
        path, explained_index = checked_path(image), self.explained_index(explained_class)
        with errors_as_request_errors():
            return self.service.analyse(path, explained_index)

    def explained_index(self, explained_class: str | None) -> int | None:
        if explained_class in (None, "", PREDICTED):
            return None
        if explained_class not in self.service.labels:
            raise RequestError(f"The explained class {explained_class!r} is not one of this model's classes: "
                               f"{', '.join([PREDICTED, *self.service.labels])}.")
        return self.service.labels.index(explained_class)

    def robustness_check(self, image):
        path = checked_path(image)
        with errors_as_request_errors():
            return self.service.robustness(path)

    def image_curves(self, image, explained_class: str | None):
        path, explained_index = checked_path(image), self.explained_index(explained_class)
        with errors_as_request_errors():
            return self.service.faithfulness_curves(path, explained_index)

    def report_files(self, analysis, image, opacity: float, robustness=None,
                     with_result_json: bool = False) -> tuple[dict, dict[str, str]]:
        """The record of `analysis`'s report and its files written: the HTML report (with the `robustness`
        check where one is given), the raw maps and, for the page's downloads, the record as JSON."""
        html = report_html(self.service, analysis, opacity, Path(checked_path(image)).name,
                           self.settings.display_max_side, self.settings.colormap, robustness, self.settings.blend)
        record = {**analysis.record(), "files": {"report": "report.html", "maps": "maps.npz"}}
        contents = {"report.html": html.encode("utf-8"), "maps.npz": analysis.maps_npz()}
        if with_result_json:
            contents["result.json"] = record_json(analysis).encode("utf-8")
        return record, write_files(contents)

    # -- the endpoints ---------------------------------------------------------------------------------------

    @trim_heap_after
    @described(
        "Decide whether a chest radiograph shows pneumonia, from one forward pass of the model: the decision, "
        "the calibrated probabilities and the out-of-distribution check. A research demo, not a medical device.",
        "JSON text. \"decision\": the class decided at the model's operating threshold, or \"not a chest "
        'radiograph" (and no class) when the out-of-distribution detector flags the image. "refer": true when '
        "a radiologist should read this film and \"decision\" is only the class it leans to; \"refer_reason\" says "
        "why: \"inside the band\" (the probability lies inside the model's \"referral_band\", \"lower\" and "
        "\"upper\" on the positive class's probability) or \"moves into the band under N of the M changes: ...\" "
        "(the answer does not hold: small acquisition changes, named in \"stability_check\" with those that "
        "\"moved\" it, put the probability into the band or across the threshold; only films near the band are "
        "checked). \"probabilities\": each class's calibrated probability. "
        '"threshold": the probability of the positive class from which it is decided. "out_of_distribution": '
        "the detector's \"score\", \"threshold\" and \"flagged\".")
    def predict(self, image: FileData) -> str:
        return json.dumps(self.predicted(image))

    @trim_heap_after
    @described(
        "Explain a chest radiograph's pneumonia decision: the decision and probabilities as the predict tool "
        "gives them, and four explanation maps over the image (transformer attribution, Grad-CAM, gradient "
        "saliency, attention rollout), each with the faithfulness verdict measured for this model. A research "
        "demo, not a medical device.",
        'First, JSON text: "decision", "refer", "refer_reason", "stability_check", "referral_band", "probabilities", '
        '"threshold", "explained_class", "out_of_distribution" as from predict; "maps_image", the file name of the image '
        'that follows; "maps", for each map its "box" in that image ([left, top, right, bottom] pixels), its '
        '"faithfulness" verdict ("passed": it beat a random map of its own grid at finding the pixels the model'
        " uses, on this model's validation images), a \"note\" with the measured intervals, the \"settings\" that "
        "made it, \"peak_at_edge\" (true: its strongest region lies at the film's edge, where letters and borders"
        ' sit, not in the lungs) and "edge_share" (the share of the map there; the edge is 51 % of the frame); '
        "\"agreement\": which maps agree on this film's strongest region (\"pairs\": each pair's overlap, \"groups\" "
        'above "agree_above", and the reading in one "sentence"); "maps_unavailable", the maps this '
        'architecture cannot give, with the reason; "similar": the training films most similar to this one in '
        "the model's own features (\"nearest\" of them, \"counts\" per class, and their \"ids\", \"labels\" and "
        '"similarities", most similar first), which show what the model sees in the film and are no second '
        "opinion (null without an index, or for an image that is not a chest radiograph). Then that image "
        "(JPEG): every map over the radiograph, each at most 384 px, two to a row, most faithful first, where "
        'its "box" says (viridis colours that fade where the map is low, so the film shows through): the '
        "brighter and yellower a region, the more the map puts there (for Grad-CAM, more evidence for the "
        "explained class), relative to this image's strongest region.")
    def explain(self, image: FileData, explained_class: str = PREDICTED) -> tuple[str, FileData]:
        analysis = self.analysed(image, explained_class)
        settings = self.settings
        overlays = DisplayedMaps.of(analysis.explanation, settings.api_map_max_side).overlays(
            DEFAULT_OPACITY, settings.colormap, blend=settings.blend)
        order = [standing.name for standing in self.service.standings if standing.name in overlays]
        sheet, boxes = map_sheet([overlays[name] for name in order])
        encoded = image_bytes(sheet.convert("RGB"), format=settings.api_map_format.upper(),
                              quality=settings.api_map_quality)
        files = write_files({MAPS_IMAGE: encoded})
        record = {**analysis.record(), "maps_image": MAPS_IMAGE}
        for name, box in zip(order, boxes):
            record["maps"][name]["box"] = box
        return json.dumps(record), _file(files[MAPS_IMAGE])

    @trim_heap_after
    @described(
        "Does a chest radiograph's decision hold under acquisition changes? The decision and the calibrated "
        "probability of the image under each of the 26 changes of the shortcut stress suite (framing, film "
        "shape, burned-in text, devices, exposure, processing, detector), seeded so that an image always gets "
        "the same answer. A decision that holds is not thereby correct; a change that flips it names a shortcut"
        " the model may be using on this image. About 27 forward passes: several seconds on a CPU.",
        'First, JSON text. "sentence": the answer in one sentence. "decision", "refer", "refer_reason", '
        '"probability" and "threshold" of the unchanged image; "held" of "changes" keep the answer; "flipped": the names of the '
        'changes after which the image is decided as the other class; "referred": those that move a decided '
        'image into the referral band (a person should read it), which is no flip; "decided": for a referred '
        'image, those that move it out of the band; "outcomes": for each change its "name", "group", '
        '"description", "probability", "decision", "flipped" and "referred"; "withheld": true when nothing was '
        'checked because the image is not a chest radiograph, and "withheld_reason" says why; "figure", the '
        "file name of the figure that follows (null when withheld). Then that figure (PNG): the probability "
        "under each change against the threshold.")
    def robustness(self, image: FileData) -> tuple[str, FileData | None]:
        check = self.robustness_check(image)
        figure = None if check.withheld else "robustness.png"
        files = write_files({figure: robustness_figure_png(check)}) if figure else {}
        return json.dumps({**check.record(), "figure": figure}), _file(files.get(figure))

    @trim_heap_after
    @described(
        "How faithful each explanation map is for this one chest radiograph: the deletion and insertion curves "
        "of every map and of the random maps of the same grid it is judged against. Removing (deletion) or "
        "revealing (insertion) the pixels in the order a faithful map ranks them makes the explained class's "
        "log-odds fall or rise faster than for a random map. About 110 forward passes: several seconds on a "
        "CPU.",
        'First, JSON text: "explained_class", "fill" and, for each map and random map, its "deletion" and '
        '"insertion" curve ("log_odds" of the explained class at each share of pixels changed, and its "area": '
        'lower for deletion and higher for insertion is more faithful); "figure", the file name of the figure '
        "that follows. Then that figure (PNG) of the curves.")
    def faithfulness_curves(self, image: FileData, explained_class: str = PREDICTED) -> tuple[str, FileData]:
        curves = self.image_curves(image, explained_class)
        files = write_files({"faithfulness.png": curves_figure_png(curves)})
        return json.dumps({**curves.record(), "figure": "faithfulness.png"}), _file(files["faithfulness.png"])

    @trim_heap_after
    @described(
        "The downloads of one chest radiograph's analysis: a self-contained HTML report (the image, the "
        "decision and probabilities, every map with its verdict, the similar training films, the model and the "
        "date; it prints on two A4 pages) and the raw maps at the image's own resolution. A research demo, not "
        "a medical device.",
        'First, JSON text: the record explain gives, and "files", the file names of what follows. Then the '
        "report (HTML) and the raw maps (.npz: one float16 array per map, at the image's resolution).")
    def report(self, image: FileData, explained_class: str = PREDICTED, opacity: float = DEFAULT_OPACITY,
               robustness: bool = False) -> tuple[str, FileData, FileData]:
        analysis = self.analysed(image, explained_class)
        check = self.robustness_check(image) if robustness else None
        record, files = self.report_files(analysis, image, opacity, check)
        return json.dumps(record), _file(files["report.html"]), _file(files["maps.npz"])


def write_files(contents: dict[str, bytes]) -> dict[str, str]:
    """Each named content written into a folder of its own inside Gradio's upload folder, which serves
    them and whose cache sweep deletes them; {name: path}."""
    folder = Path(gr.utils.get_upload_folder()) / f"pneumolens-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    return {name: str(folder / name) for name in contents}


def _file(path: str | None) -> FileData | None:
    return None if path is None else FileData(path=path, orig_name=Path(path).name)


def add_endpoints(api: ProgramApi, wrap=lambda function: function) -> None:
    """The endpoints, inside the Blocks being built, each function through `wrap` (`spaces.GPU` on
    ZeroGPU). All are queued: the model's group runs one at a time, /predict as many as a batch holds."""
    def wrapped(endpoint):
        function = wrap(endpoint)
        # gr.api reads the signature and the docstring (the MCP tool's description) of what it is given.
        return function if function is endpoint else functools.update_wrapper(function, endpoint)

    on_model = dict(concurrency_limit=1, concurrency_id="model")
    gr.api(wrapped(api.predict), api_name="predict", concurrency_limit=api.settings.predict_batch_size,
           concurrency_id="predict")
    for endpoint in (api.explain, api.robustness, api.faithfulness_curves, api.report):
        gr.api(wrapped(endpoint), api_name=endpoint.__name__, **on_model)
