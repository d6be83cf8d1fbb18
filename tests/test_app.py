"""The Gradio app, called the way programs call it (gradio_client against the app launched here), and the
page's handlers as plain functions."""

import io
import os
import json
import shutil
import threading
import time
import uuid
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
import explain as explain_cli
from pneumolens.data import image_sources, load_image_dataset
from pneumolens.explain import METHODS, REGISTRY
from pneumolens.explain.faithfulness import RANDOM, FaithfulnessReport, FaithfulnessSettings, ImageRecord
from pneumolens.explain.standing import FAITHFULNESS_FILE
from pneumolens.images import load_image
from pneumolens.presentation import percent
from pneumolens.modeling import TRANSFORMER, ModelSource, load_image_processor, load_model, load_model_and_processor
from pneumolens.ood import fit_for_model
from pneumolens.stress import stress_change
from pneumolens.service import PneumoLensService
from pneumolens.serving.displayed import display_size
from pneumolens.serving import gradio_internals
from pneumolens.serving.api import PREDICTED, ProgramApi
from pneumolens.serving.page import PageHandlers
from pneumolens.serving.settings import ServingSettings
from pneumolens.serving.uploads import RequestError
from tests.test_images import _dicom, _png_header_only

SETTINGS = ServingSettings()


@pytest.fixture(scope="module")
def model_with_ood(tiny_trained_dirs, real_imagefolder, tmp_path_factory):
    """The tiny DINOv2 classifier with an out-of-distribution detector fitted on real radiographs."""
    directory = tmp_path_factory.mktemp("served") / "model"
    shutil.copytree(tiny_trained_dirs["dinov2"], directory)
    source = ModelSource(str(directory))
    model, processor = load_model_and_processor(source)
    data = load_image_dataset(str(real_imagefolder))
    fit_for_model(model, processor, reduced(data["train"], 128), reduced(data["validation"], 128)).save(directory)
    return directory


def reduced(split, side: int) -> list[Image.Image]:
    """The split's radiographs at most `side` pixels on a side: the processor shrinks them anyway, and the
    detector's acquisition changes on films of 2,000 px were most of a fixture's time."""
    images = [load_image(source) for source in image_sources(split)]
    for image in images:
        image.thumbnail((side, side))
    return images


@pytest.fixture(scope="module")
def client(model_with_ood):
    demo = app.build_demo(PneumoLensService(ModelSource(str(model_with_ood))))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    yield Client(url, verbose=False)
    demo.close()


def explained(client, upload, explained_class: str = app.PREDICTED) -> tuple[dict, dict]:
    """/explain's answer as a client reads it: the record, and each map cut from the one image of them by the
    box the record gives it (None for a map the architecture cannot give)."""
    record_text, sheet = client.predict(upload, explained_class, api_name="/explain")
    record = json.loads(record_text)
    assert Path(sheet).name == record["maps_image"] == "maps.jpeg"
    sheet = Image.open(sheet)
    return record, {method: sheet.crop(record["maps"][method]["box"]) if method in record["maps"] else None
                    for method in METHODS}


def predicted(client, upload) -> dict:
    return json.loads(client.predict(upload, api_name="/predict"))


def page_for(service: PneumoLensService, **settings) -> PageHandlers:
    return PageHandlers(ProgramApi(service, ServingSettings(**settings)))


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return handle_file(str(path))


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_api_lists_the_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    # The page's own events are private: one endpoint per operation.
    assert set(endpoints) == {"/predict", "/explain", "/robustness", "/faithfulness_curves", "/report"}
    assert all(list(endpoint["returns"])[0] is not None for endpoint in endpoints.values())


def test_predict_returns_probabilities_of_the_model_labels(client):
    result = predicted(client, handle_file(app.EXAMPLES[0]))
    assert set(result["probabilities"]) == {"NORMAL", "PNEUMONIA"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["decision"] in ("NORMAL", "PNEUMONIA") and 0 < result["threshold"] < 1


def test_explain_returns_the_record_and_every_map_by_name(client):
    example = app.EXAMPLES[0]  # 1776x1416: the API's maps are scaled to fit 384, maps.npz keeps full size
    record, maps = explained(client, handle_file(example))
    size = Image.open(example).size
    assert set(record["maps"]) == set(METHODS) == set(maps)
    for method, image in maps.items():
        shown = image.size
        assert max(shown) == SETTINGS.api_map_max_side and abs(shown[0] / shown[1] - size[0] / size[1]) < 0.01
    assert record["decision"] in ("NORMAL", "PNEUMONIA") and record["explained_class"] == record["decision"]
    assert record["out_of_distribution"]["available"] is True and record["out_of_distribution"]["flagged"] is False
    assert set(record["maps"]) == set(METHODS) and record["maps_unavailable"] == {}


def test_the_page_shows_the_decision_and_every_map_at_display_size(model_with_ood):
    page = page_for(PneumoLensService(ModelSource(str(model_with_ood)))).analysis(app.EXAMPLES[0], app.PREDICTED, 0.5)
    record, size = page["record"], Image.open(app.EXAMPLES[0]).size
    assert f"Decision: {record['decision']}" in page["decision"] and page["warning"] == ""
    for method in METHODS:
        shown = page[f"map_{method}"].size
        assert max(shown) == SETTINGS.display_max_side and abs(shown[0] / shown[1] - size[0] / size[1]) < 0.01
        caption = page[f"caption_{method}"]
        assert "not available" not in caption and "not measured" in caption  # no eval/faithfulness.json here


def test_report_on_demand_gives_the_html_report_full_resolution_maps_and_the_record(client):
    example = app.EXAMPLES[0]
    record, _ = explained(client, handle_file(example))
    answer, *downloads = client.predict(handle_file(example), "predicted class", 0.5, api_name="/report")
    saved = json.loads(answer)
    assert [Path(p).name for p in downloads] == list(saved["files"].values()) == ["report.html", "maps.npz"]
    maps = np.load(downloads[1])
    assert set(maps.files) == set(METHODS) and maps["gradcam"].shape == Image.open(example).size[::-1]
    assert saved["probabilities"] == pytest.approx(record["probabilities"])
    report = open(downloads[0], encoding="utf-8").read()
    assert f"Decision: {record['decision']}" in report and percent(record['threshold']) in report
    assert "Not a medical device" in report and Path(example).name in report
    assert "looks like a chest radiograph" in report  # the OOD verdict of a real radiograph
    # Self-contained: the image and every map are embedded, nothing is fetched.
    assert report.count('src="data:image/jpeg;base64,') == 1 + len(METHODS) and "http" not in report
    assert str(app.REPO) not in report  # the model is named, the server's paths are not


def faithfulness_summary_file(directory: Path) -> None:
    """eval/faithfulness.json as `explain.py faithfulness` writes it, from scores made up so that the
    attribution is the most faithful, then Grad-CAM, then rollout, and saliency is no better than random."""
    rng = np.random.default_rng(0)
    edges = {"attribution": 3.0, "gradcam": 2.0, "rollout": 1.0, "saliency": 0.0, RANDOM: 0.0}
    records = []
    for index in range(30):
        scores = {}
        for name, edge in edges.items():
            noise = rng.normal(0, 0.3, 4)
            scores[name] = {"deletion_blur": -edge + noise[0], "insertion_blur": edge + noise[1],
                            "deletion_mean": -edge + noise[2], "insertion_mean": edge + noise[3]}
        records.append(ImageRecord(f"image-{index}", 1, 1, scores))
    report = FaithfulnessReport(FaithfulnessSettings(road_percentiles=()), records)
    (directory / "eval").mkdir(exist_ok=True)
    (directory / FAITHFULNESS_FILE).write_text(json.dumps(report.to_json(resamples=300)))


def test_maps_are_ordered_by_measured_faithfulness_and_a_failing_method_is_shown_with_its_verdict(
        model_with_ood, tmp_path):
    directory = tmp_path / "vetted"
    shutil.copytree(model_with_ood, directory)
    faithfulness_summary_file(directory)
    service = PneumoLensService(ModelSource(str(directory)))
    demo = app.build_demo(service)
    maps = [c["props"] for c in demo.config["components"] if str(c["props"].get("elem_id", "")).startswith("map-")]
    assert [props["elem_id"] for props in maps] == ["map-attribution", "map-gradcam", "map-rollout", "map-saliency"]
    assert all(props.get("visible", True) is True for props in maps)  # nothing is hidden
    captions = {c["props"]["elem_id"]: c["props"]["value"] for c in demo.config["components"]
                if str(c["props"].get("elem_id", "")).startswith("caption-")}
    assert "✗ failed" in captions["caption-saliency"] and "✓ passed" in captions["caption-attribution"]
    assert set(service.analyse(app.EXAMPLES[0]).explanation.maps) == set(METHODS)  # the failing one too
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        client = Client(url, verbose=False)
        record, maps = explained(client, handle_file(app.EXAMPLES[0]))
        curves_text, curves = client.predict(handle_file(app.EXAMPLES[0]), "predicted class",
                                             api_name="/faithfulness_curves")
    finally:
        demo.close()
    handlers = page_for(service)
    page = handlers.analysis(app.EXAMPLES[0], app.PREDICTED, 0.5)
    on_page = handlers.faithfulness_figure(app.EXAMPLES[0], app.PREDICTED)  # the page's "Measure on this image"
    assert on_page.size == Image.open(curves).size
    assert maps["saliency"] is not None and page["map_saliency"] is not None
    caption = page["caption_saliency"]
    assert "✗ failed" in caption and "did not beat a random per-pixel map on" in caption and "[" in caption
    assert "✓ passed" in page["caption_attribution"] and "1 of 4" in page["caption_attribution"]
    assert "3 of 4" in page["caption_rollout"] and maps["attribution"] is not None
    assert record["maps"]["saliency"]["faithfulness"] == "failed"
    assert record["maps"]["attribution"]["faithfulness"] == "passed"
    assert "block 2 of 2, norm1" in page["caption_gradcam"]  # the settings that made the map
    figure = Image.open(curves)
    assert Path(curves).name == json.loads(curves_text)["figure"] == "faithfulness.png"
    assert figure.width >= 800 and np.asarray(figure).std() > 10  # a drawn figure, not a blank
    measured = json.loads(curves_text)["curves"]
    assert set(METHODS) <= set(measured) and RANDOM in measured
    assert all(len(curve["deletion"]["log_odds"]) == 11 for curve in measured.values())


def varied_inputs(real_images) -> dict[str, bytes]:
    """One radiograph in each format the app takes: what a person or a program uploads."""
    from tests.test_images import _dicom

    grey = Image.open(real_images["PNEUMONIA"][0]).convert("L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    gif = io.BytesIO()
    grey.save(gif, format="GIF", save_all=True, append_images=[Image.new("L", grey.size, 0)])
    ramp16 = (np.asarray(grey, dtype=np.uint16) * 257)
    twelve_bit = np.asarray(grey, dtype=np.float64) * 16
    return {
        "radiograph.jpeg": encoded(grey, "JPEG"),
        "cmyk.jpeg": encoded(grey.convert("CMYK"), "JPEG"),
        "rgba.png": encoded(grey.convert("RGBA"), "PNG"),
        "sixteen-bit.png": encoded(Image.fromarray(ramp16), "PNG"),
        "rotated.jpeg": encoded(grey, "JPEG", exif=exif),
        "animated.gif": gif.getvalue(),
        "monochrome1": _dicom(4095 - twelve_bit, photometric="MONOCHROME1"),
        "monochrome2.dcm": _dicom(twelve_bit),
        "wide.png": encoded(grey.resize((700, 150)), "PNG"),
        "tiny.png": encoded(grey.resize((9, 13)), "PNG"),
    }


def test_every_map_comes_back_for_every_input_format(client, tiny_trained_dirs, real_images, tmp_path):
    convnext = app.build_demo(PneumoLensService(ModelSource(str(tiny_trained_dirs["convnext"]))))
    _, url, _ = convnext.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        for name, data in varied_inputs(real_images).items():
            upload = write(tmp_path, name, data)
            _, transformer = explained(client, upload)
            assert all(transformer[m] is not None for m in METHODS), name
            record, convolutional = explained(Client(url, verbose=False), upload)
            for method in METHODS:
                if REGISTRY[method].architectures == (TRANSFORMER,):
                    assert convolutional[method] is None and method not in record["maps"], (name, method)
                    assert "convolutional" in record["maps_unavailable"][method], (name, method)
                else:
                    assert convolutional[method] is not None, (name, method)
    finally:
        convnext.close()


def test_explaining_the_other_class(client):
    record, _ = explained(client, handle_file(app.EXAMPLES[0]), "NORMAL")
    assert record["explained_class"] == "NORMAL"
    with pytest.raises(AppError, match="The explained class 'LUNG' is not one of this model's classes"):
        explained(client, handle_file(app.EXAMPLES[0]), "LUNG")


def test_preview_shows_the_decoded_upload_and_safe_dicom_fields(model_with_ood, tmp_path, real_images):
    import pydicom

    page = page_for(PneumoLensService(ModelSource(str(model_with_ood))))
    pixels = np.asarray(Image.open(real_images["NORMAL"][0]).convert("L"), dtype=np.float64) * 16
    dataset = pydicom.dcmread(io.BytesIO(_dicom(4095 - pixels, photometric="MONOCHROME1")))
    dataset.PatientName, dataset.PatientID, dataset.BodyPartExamined = "Doe^Jane", "SECRET-123", "CHEST"
    dataset.save_as(tmp_path / "IM0001")
    shown = page.preview(str(tmp_path / "IM0001"))
    image, details, downloads = shown["shown"], shown["details"], shown["downloads"]
    assert image.size == (pixels.shape[1], pixels.shape[0])
    assert downloads["value"] is None and downloads["visible"] is False  # an earlier image's downloads go, box and all
    # MONOCHROME1 is shown inverted, as the model sees it: the preview equals the decoded image.
    assert np.array_equal(np.asarray(image), np.asarray(load_image(str(tmp_path / "IM0001"))))
    assert "DICOM" in details and "Modality CR" in details and "body part CHEST" in details
    assert "transfer syntax Explicit VR Little Endian" in details and "photometric MONOCHROME1" in details
    assert "Doe" not in details and "SECRET" not in details
    assert shown["choice"]["visible"] and shown["choice"]["value"] == "As the file shows it"
    assert [choice.split(" (")[0] for choice in shown["choice"]["choices"]] == [
        "As the file shows it", "Lung", "Full range", "Custom"]
    jpeg = page.preview(app.EXAMPLES[0])
    assert max(jpeg["shown"].size) == SETTINGS.preview_max_side and "JPEG" in jpeg["details"]
    assert "1776 x 1416 px" in jpeg["details"] and jpeg["film"] is None and jpeg["choice"]["visible"] is False
    with pytest.raises(Exception, match="not an image"):
        (tmp_path / "notes.png").write_text("not a picture")
        page.preview(str(tmp_path / "notes.png"))


def test_a_window_changes_what_is_shown_and_never_what_the_model_is_given(model_with_ood, tmp_path, real_images):
    from tests.dicom_films import film_dicom, twelve_bit

    page = page_for(PneumoLensService(ModelSource(str(model_with_ood))))
    grey = np.asarray(Image.open(real_images["PNEUMONIA"][1]).convert("L").resize((400, 320)))
    path = tmp_path / "IM0002"
    path.write_bytes(film_dicom(twelve_bit(grey), "jpeg-2000-lossless", window=(2048, 4096)))
    view = page.preview(str(path))["film"]
    as_stored = page.analysis(str(path), PREDICTED, 0.5, view, None)
    lung = page.window_preset(view, next(label for label in view.choices if label.startswith("Lung")))
    assert (lung["level"]["value"], lung["width"]["value"]) == (lung["window"].centre, lung["window"].width)
    windowed = page.analysis(str(path), PREDICTED, 0.5, view, lung["window"])
    assert windowed["record"]["probabilities"] == as_stored["record"]["probabilities"]  # the model's input is the same
    method = next(iter(page.method_of))
    before = page.redraw(windowed["displayed"], 0.5, method, view, None)["large"][0]
    after = page.redraw(windowed["displayed"], 0.5, method, view, lung["window"])["large"][0]
    assert before.size == after.size
    assert np.abs(np.asarray(after, dtype=int) - np.asarray(before, dtype=int)).mean() > 10  # what a person sees
    custom = page.window_from_sliders(view, 1000, 500)
    assert custom["choice"]["value"].startswith("Custom") and custom["window"].width == 500
    # A session whose film has expired (or a picture that is not a DICOM): the page is left as it is.
    assert all(value == {"__type__": "update"} for value in page.window_preset(None, "Lung").values())


def test_predict_shares_forward_passes_and_a_bad_upload_fails_alone(model_with_ood, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    service = PneumoLensService(ModelSource(str(model_with_ood)))
    batch_sizes, predict_inputs = [], service.predict_inputs

    def recording(inputs):
        batch_sizes.append(len(inputs))
        time.sleep(0.3)  # a slow model, so that requests pile up behind it
        return predict_inputs(inputs)

    service.predict_inputs = recording
    demo = app.build_demo(service, settings=ServingSettings(predict_batch_size=4))  # a session each, one address
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        bad = write(tmp_path, "notes.png", b"a text file, not a picture")
        inputs = [handle_file(example) for example in app.EXAMPLES] * 2 + [bad]
        clients = [Client(url, verbose=False) for _ in inputs]
        with ThreadPoolExecutor(len(inputs)) as pool:
            jobs = [pool.submit(c.predict, upload, api_name="/predict") for c, upload in zip(clients, inputs)]
            results = [job.exception() or job.result() for job in jobs]
    finally:
        demo.close()
    served_batches = list(batch_sizes)
    assert isinstance(results[-1], AppError) and "not an image" in str(results[-1])
    alone = [service.predict(example)["probabilities"] for example in app.EXAMPLES] * 2
    for result, expected in zip(results[:-1], alone, strict=True):
        assert json.loads(result)["probabilities"] == pytest.approx(expected, abs=1e-4)
    # The bad upload never reached the model; the others shared passes of at most 4.
    assert 1 < max(served_batches) <= 4 and sum(served_batches) == len(inputs) - 1


def test_dicom_upload_is_analysed(client, tmp_path, real_images):
    pixels = np.asarray(Image.open(real_images["PNEUMONIA"][0]).convert("L"), dtype=np.float64) * 16
    upload = write(tmp_path, "IM0001", _dicom(4095 - pixels, photometric="MONOCHROME1"))  # no extension
    _, maps = explained(client, upload)
    expected = display_size((pixels.shape[1], pixels.shape[0]), SETTINGS.api_map_max_side)
    assert maps["gradcam"].size == expected


@pytest.mark.parametrize("name, payload, message", [
    ("empty.png", b"", "empty"),
    ("notes.png", b"this is a text file, not an image", "not an image"),
    ("bomb.png", _png_header_only(30000, 30000), "too large"),
    ("report.dcm", _dicom(np.zeros((4, 4)), with_pixels=False), "no pixel data"),
], ids=["empty", "text", "png-bomb", "dicom-without-pixels"])  # by name: the DICOM's bytes carry a fresh UID
def test_bad_uploads_get_a_clear_error_and_the_server_keeps_serving(client, tmp_path, name, payload, message):
    with pytest.raises(AppError, match=message):
        client.predict(write(tmp_path, name, payload), api_name="/predict")
    with pytest.raises(AppError, match=message):
        client.predict(write(tmp_path, name, payload), "predicted class", api_name="/explain")
    assert predicted(client, handle_file(app.EXAMPLES[0]))["decision"] in ("NORMAL", "PNEUMONIA")


def test_truncated_jpeg_is_refused(client, tmp_path):
    data = open(app.EXAMPLES[0], "rb").read()
    with pytest.raises(AppError, match="could not be decoded"):
        client.predict(write(tmp_path, "cut.jpeg", data[: len(data) // 3]), api_name="/predict")


@pytest.mark.parametrize("name, image, save_kwargs", [
    ("scan.gif", None, {}),
    ("cmyk.jpeg", Image.new("CMYK", (64, 64), (0, 0, 0, 40)), {}),
    ("rotated.jpeg", Image.new("L", (80, 40), 90), {"exif": {0x0112: 6}}),
])
def test_unusual_but_valid_images_are_handled(client, tmp_path, real_images, name, image, save_kwargs):
    if name.endswith(".gif"):
        frames = [Image.open(real_images["NORMAL"][0]).convert("L"), Image.new("L", (224, 224), 0)]
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
        data, expected = buffer.getvalue(), (224, 224)
    else:
        exif = Image.Exif()
        for key, value in save_kwargs.get("exif", {}).items():
            exif[key] = value
        data = encoded(image, "JPEG", exif=exif)
        expected = (40, 80) if save_kwargs else image.size
    _, maps = explained(client, write(tmp_path, name, data))
    assert maps["gradcam"].size == display_size(expected, SETTINGS.api_map_max_side)


def test_upload_size_is_capped(client, tmp_path):
    with pytest.raises(Exception, match="(?i)too large|exceeds|413|maximum"):
        client.predict(write(tmp_path, "huge.png", b"\x89PNG" + b"\0" * (26 * 1024 * 1024)), api_name="/predict")


def test_the_server_never_fetches_a_url_it_is_given(client):
    fetched = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            fetched.append(self.path)
            data = open(app.EXAMPLES[0], "rb").read()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/xray.jpeg"
    try:
        with pytest.raises(AppError, match="does not fetch URLs"):
            client.predict({"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}, api_name="/predict")
    finally:
        server.shutdown()
    assert fetched == []


@pytest.mark.parametrize("url", ["https://example.com/xray.jpeg", "http://203.0.113.7/huge.dcm"])
def test_public_urls_are_refused_before_any_download(client, url):
    """Gradio's own loopback guard does not apply to public addresses: the app's refusal must."""
    with pytest.raises(AppError, match="does not fetch URLs"):
        client.predict({"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}, api_name="/explain")
    assert predicted(client, handle_file(app.EXAMPLES[0]))["decision"] in ("NORMAL", "PNEUMONIA")


def test_session_state_holds_a_display_size_image_and_input_size_maps(model_with_ood, tmp_path):
    """What the browser session keeps is a display copy of the image and the 8-bit model-input maps, not
    the full-resolution float maps, and it redraws the same overlays that the analysis showed."""
    demo = app.build_demo(PneumoLensService(ModelSource(str(model_with_ood))))
    page = page_for(PneumoLensService(ModelSource(str(model_with_ood))))
    big = Image.open(app.EXAMPLES[0]).convert("L").resize((3000, 2400))
    big.save(tmp_path / "big.png")
    analysis = page.analysis(str(tmp_path / "big.png"), app.PREDICTED, 0.5)
    displayed = analysis["displayed"]
    assert max(displayed.image().size) == SETTINGS.display_max_side
    assert displayed.nbytes <= 300_000  # full-size float32 maps would be 86 MB, display-size 8-bit ones 3 MB
    shown_maps = [analysis[f"map_{method}"] for method in METHODS]
    redrawn = page.redraw(displayed, 0.5, REGISTRY["gradcam"].title)
    radiograph, large = redrawn["large"]
    for method, shown in zip(METHODS, shown_maps, strict=True):
        assert np.array_equal(np.asarray(redrawn[f"map_{method}"]), np.asarray(shown))
    # The large view: the displayed radiograph against the chosen map over it.
    assert np.array_equal(np.asarray(large), np.asarray(shown_maps[METHODS.index("gradcam")]))
    assert radiograph.size == large.size == displayed.image().size
    state = next(block for block in demo.blocks.values() if block.__class__.__name__ == "State")
    assert state.time_to_live == app.SESSION_TIME_TO_LIVE_S
    assert app.launch_options()["state_session_capacity"] == app.SESSION_CAPACITY


def test_every_event_is_queued(model_with_ood):
    demo = app.build_demo(PneumoLensService(ModelSource(str(model_with_ood))))
    handlers = {fn.name: fn.queue for fn in demo.fns.values()  # Gradio's own, and the page's scrolling script
                if fn.name != "load_example" and fn.fn is not None}
    assert {"analysis", "redraw", "large_view", "preview", "report", "faithfulness_figure", "no_downloads",
            "predict", "explain", "robustness", "faithfulness_curves", "similar_row"} <= set(handlers)
    # MCP answers of several outputs are queued too (gradio_internals hands each output on).
    assert all(handlers.values())


@pytest.mark.slow
def test_the_handlers_answer_as_plain_functions_without_a_server(model_with_ood):
    api = ProgramApi(PneumoLensService(ModelSource(str(model_with_ood))), ServingSettings(predict_batch_size=2))
    image = app.EXAMPLES[0]
    by_predict = json.loads(api.predict(image))
    record_text, sheet = api.explain(image)
    page = PageHandlers(api).analysis(image, app.PREDICTED, 0.5)
    assert by_predict["decision"] == json.loads(record_text)["decision"] == page["record"]["decision"]
    assert page["record"]["probabilities"] == pytest.approx(by_predict["probabilities"], abs=1e-6)
    assert Path(sheet.path).name == "maps.jpeg" and set(json.loads(record_text)["maps"]) == set(METHODS)
    assert all(page[f"map_{m}"].size[0] <= SETTINGS.display_max_side for m in METHODS)
    with pytest.raises(RequestError, match="Only uploaded files are accepted"):  # a path of its own choosing
        api.predicted(str(Path(image).with_name("missing.jpeg")))


def test_uploads_and_downloads_are_deleted_from_the_cache(model_with_ood, tmp_path):
    import gradio

    # Age 6 s: a /report of the tiny model takes about a second, so even a slow machine finds its upload.
    demo = app.build_demo(PneumoLensService(ModelSource(str(model_with_ood))), delete_cache=(1, 6))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        image = tmp_path / f"patient-{uuid.uuid4().hex}.jpeg"  # a name no other test's upload has
        shutil.copy(app.EXAMPLES[0], image)
        client = Client(url, verbose=False, download_files=False)  # answers carry the server's own paths
        _, *files = client.predict(handle_file(str(image)), app.PREDICTED, 0.5, api_name="/report")
        cache = Path(gradio.utils.get_upload_folder()).resolve()
        downloads = [Path(file["path"]).resolve() for file in files]
        uploads = [path for path in cache.rglob(image.name) if path.is_file()]
        served = downloads + uploads
        assert len(uploads) == 1 and all(cache in path.parents and path.is_file() for path in served)
        deadline = time.time() + 45
        while time.time() < deadline and any(path.exists() for path in served):
            time.sleep(0.5)
        assert not [path for path in served if path.exists()]
    finally:
        demo.close()


def test_cache_cleanup_survives_files_added_while_it_runs(tmp_path):
    """Gradio's own sweep iterates the live set and dies when a request adds a file meanwhile."""
    import gradio as gr

    with gr.Blocks() as demo:
        box = gr.File()
    old = []
    for index in range(300):
        path = tmp_path / f"old-{index}"
        path.write_bytes(b"x")
        os.utime(path, (0, 0))
        old.append(str(path))
    box.temp_files.update(old)
    box.keep_in_cache.add(old[0])
    stop = threading.Event()

    def add_files():
        index = 0
        while not stop.is_set():
            box.temp_files.add(str(tmp_path / f"new-{index}"))
            index += 1
            if index % 50 == 0:  # as requests do, now and then; a loop that never yields only slows the sweep
                time.sleep(0.0001)

    adder = threading.Thread(target=add_files)
    adder.start()
    try:
        time.sleep(0.01)
        # ctime cannot be set back, so every file counts as old with a negative age
        deleted = gradio_internals.delete_old_cache_files(demo, age_s=-1)
    finally:
        stop.set()
        adder.join()
    assert deleted == len(old) - 1 and Path(old[0]).exists() and not Path(old[1]).exists()


def test_one_session_cannot_fill_the_queue_and_its_classmates_behind_one_address_are_served(monkeypatch):
    import gradio as gr
    from gradio_client.exceptions import ValidationError

    from pneumolens.fair_queue import QueueLimits

    release = threading.Event()

    def wait(x):
        release.wait(30)
        return x

    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button().click(wait, box, box, api_name="wait", concurrency_limit=1)
    demo.queue(max_size=64)
    gradio_internals.install_fair_queue(demo, QueueLimits(per_session=2, per_address=3, queue_size=64))
    monkeypatch.setenv("SPACE_ID", "example/pneumolens")  # trust X-Forwarded-For, as on a Space
    school = {"X-Forwarded-For": "198.51.100.1"}
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        greedy = Client(url, verbose=False, headers=school)
        jobs = [greedy.submit("first", api_name="/wait")]
        deadline = time.time() + 10
        while time.time() < deadline and not any(demo._queue.active_jobs):
            time.sleep(0.05)
        jobs += [greedy.submit(name, api_name="/wait") for name in ("second", "third")]
        time.sleep(1.0)
        # gradio_client raises the app's words (not its own "Queue is full!").
        with pytest.raises(ValidationError, match="This session already has 2 analyses waiting"):
            greedy.submit("fourth", api_name="/wait").result(timeout=10)
        # The page's client shows the server's detail as it is.
        fn_index = next(i for i, fn in demo.fns.items() if fn.api_name == "wait")
        refused = httpx.post(f"{url}gradio_api/queue/join", headers=school,
                             json={"data": ["fifth"], "fn_index": fn_index, "session_hash": greedy.session_hash})
        assert refused.status_code == 400 and refused.json()["detail"].startswith("This session already has 2")
        # A classmate behind the same address waits and is answered; past the address's limit, one is refused.
        classmate = Client(url, verbose=False, headers=school).submit("classmate", api_name="/wait")
        time.sleep(1.0)
        with pytest.raises(ValidationError, match="Your network already has 3 analyses waiting"):
            Client(url, verbose=False, headers=school).submit("one too many", api_name="/wait").result(timeout=10)
        elsewhere = Client(url, verbose=False, headers={"X-Forwarded-For": "198.51.100.2"}).submit(
            "elsewhere", api_name="/wait")
        time.sleep(0.5)
        release.set()
        assert [job.result(timeout=30) for job in jobs] == ["first", "second", "third"]
        assert classmate.result(timeout=30) == "classmate" and elsewhere.result(timeout=30) == "elsewhere"
    finally:
        release.set()
        demo.close()


@pytest.fixture(scope="module")
def pretrained_model_with_ood(real_imagefolder, tmp_path_factory):
    """DINOv2-small from ../shared with a new 2-class head and a detector fitted on real radiographs.

    The detector reads the middle block, which fine-tuning the head does not change: pretrained features
    are what it sees in a trained model too, and tiny random models have no such features to test on.
    """
    from tests.conftest import SHARED_DATA

    backbone = SHARED_DATA.parent / "models" / "dinov2-small"
    if not backbone.is_dir():
        pytest.skip(f"{backbone} is not there")
    source = ModelSource(str(backbone))
    model = load_model(source, num_labels=2, id2label={0: "NORMAL", 1: "PNEUMONIA"},
                       label2id={"NORMAL": 0, "PNEUMONIA": 1}, positive_label="PNEUMONIA")
    processor = load_image_processor(source)
    directory = tmp_path_factory.mktemp("pretrained") / "model"
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    data = load_image_dataset(str(real_imagefolder))
    fit_for_model(model, processor, reduced(data["train"], 384), reduced(data["validation"], 384)).save(directory)
    return directory


@pytest.mark.slow
def test_out_of_distribution_inputs_are_flagged_and_radiographs_are_not(pretrained_model_with_ood, real_images):
    service = PneumoLensService(ModelSource(str(pretrained_model_with_ood)))
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
    drawing = Image.new("RGB", (224, 224), "white")
    for offset in range(10, 200, 30):
        drawing.paste((0, 0, 0), (offset, 20, offset + 4, 200))
    photo = Image.fromarray(_sample_photo())
    for name, image in (("noise", noise), ("drawing", drawing), ("photo", photo)):
        verdict = service.predict(image)["out_of_distribution"]
        assert verdict["flagged"] and "does not look like" in verdict["warning"], (name, verdict)
    radiographs = real_images["NORMAL"][3:] + real_images["PNEUMONIA"][3:]
    flagged = [service.predict(path)["out_of_distribution"]["flagged"] for path in radiographs]
    assert sum(flagged) <= 1
    # Zoomed, text-marked or re-exposed radiographs are still radiographs (the detector was fitted with
    # acquisition changes).
    for name in ("zoom_centre_55", "text_mixed", "gamma_1.7"):
        change = stress_change(name)
        changed = [change(Image.open(path).convert("RGB"), 0, index) for index, path in enumerate(radiographs)]
        flagged = [service.predict(image)["out_of_distribution"]["flagged"] for image in changed]
        assert sum(flagged) <= 1, name


def test_the_detector_reads_the_features_a_whole_forward_pass_gives(tiny_trained_dirs, real_images):
    import torch

    from pneumolens.modeling import attention_kernel
    from pneumolens.ood import captured_features, image_features
    from pneumolens.preprocessing import pixel_values

    images = real_images["NORMAL"][:3]
    for model_type in ("dinov2", "convnext"):
        model, processor = load_model_and_processor(ModelSource(str(tiny_trained_dirs[model_type])))
        with torch.no_grad(), attention_kernel(model, "sdpa"), captured_features(model) as whole:
            logits = model(pixel_values=pixel_values(processor, images)).logits
        assert logits.shape == (3, 2)  # without `stop` the pass runs to the end
        # Stopped at the middle block: the same features, the same detector.
        np.testing.assert_array_equal(image_features(model, processor, images), whole[0].numpy())


def test_the_fit_ood_command_saves_a_detector_into_the_model_and_its_card(tiny_trained_dirs, real_imagefolder,
                                                                           copy_of):
    from pneumolens import commands
    from pneumolens.ood import OOD_FILE, OODDetector
    from tests.conftest import run_main

    directory = copy_of(tiny_trained_dirs["dinov2"])
    (directory / OOD_FILE).unlink()
    result = run_main(commands.main, "python -m pneumolens", "fit-ood", "--model_name_or_path", directory,
                      "--dataset_name_or_dir", real_imagefolder, "--validation_fraction", "0.25", "--num_train", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    detector = OODDetector.load(ModelSource(str(directory)))
    assert detector is not None and detector.threshold > 0 and f"threshold {detector.threshold:.3f}" in result.stdout
    card = (directory / "README.md").read_text()
    assert "## Out-of-distribution detector" in card and "python -m pneumolens fit-ood --model_name_or_path" in card
    assert "8 training images" in card


def _sample_photo() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")


def test_attention_methods_show_as_not_available_for_convnext(tiny_trained_dirs):
    page = page_for(PneumoLensService(ModelSource(str(tiny_trained_dirs["convnext"])))).analysis(
        app.EXAMPLES[0], app.PREDICTED, 0.5)
    for method in METHODS:
        if REGISTRY[method].architectures == (TRANSFORMER,):
            caption = page[f"caption_{method}"]
            assert page[f"map_{method}"] is None and "not available" in caption and "convolutional" in caption
        else:
            assert page[f"map_{method}"] is not None


# -- no class decision for what is not a chest radiograph (the bundled model and its detector) ----------

@pytest.fixture(scope="module")
def bundled_service():
    from pneumolens.modeling import BUNDLED_MODEL

    return PneumoLensService(ModelSource(str(BUNDLED_MODEL)))


@pytest.mark.slow
def test_no_stress_change_of_the_suite_makes_a_radiograph_look_out_of_distribution(bundled_service):
    from pneumolens.stress import STRESS_SUITE

    for change in STRESS_SUITE:  # one NORMAL and one PNEUMONIA example, under every change
        changed = [change(Image.open(path).convert("RGB"), 0, index) for index, path in enumerate(app.EXAMPLES[::2])]
        results = bundled_service.predict_many(changed)
        assert not any(r["out_of_distribution"]["flagged"] for r in results), change.name
        assert all(r["decision"] in bundled_service.labels for r in results), change.name


def test_a_photo_gets_the_not_a_radiograph_verdict_and_no_class_anywhere(bundled_service, tmp_path, capsys):
    from pneumolens.decision import NOT_A_RADIOGRAPH

    photo = tmp_path / "photo.jpeg"
    Image.fromarray(_sample_photo()).save(photo)
    demo = app.build_demo(bundled_service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        client = Client(url, verbose=False)
        record, _ = explained(client, handle_file(str(photo)))
        by_predict = predicted(client, handle_file(str(photo)))
        by_report, report_file, _ = client.predict(handle_file(str(photo)), app.PREDICTED, 0.5, api_name="/report")
    finally:
        demo.close()
    page = page_for(bundled_service).analysis(str(photo), app.PREDICTED, 0.5)
    assert record["out_of_distribution"]["flagged"] and "no class is decided" in page["warning"]
    # The page: the headline gives the verdict; the probabilities are only small print.
    assert page["decision"].splitlines()[0] == f"### Decision: {NOT_A_RADIOGRAPH}"
    assert record["decision"] == NOT_A_RADIOGRAPH and set(record["probabilities"]) == set(bundled_service.labels)
    # The API keeps the probabilities for those who want them, under the verdict.
    assert by_predict["decision"] == NOT_A_RADIOGRAPH and len(by_predict["probabilities"]) == 2
    assert json.loads(by_report)["decision"] == NOT_A_RADIOGRAPH
    report = open(report_file, encoding="utf-8").read()
    assert f'<h2 id="decision">Decision: {NOT_A_RADIOGRAPH}</h2>' in report
    assert "<table class=muted><tr><th>class</th><th>probability (not meaningful for this image)" in report
    # The command line: explain.py and its batch reports (their `main`, in-process, on the bundled model).
    explain_cli.main([str(photo), "--out", str(tmp_path / "maps")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["decision"] == NOT_A_RADIOGRAPH
    explain_cli.main(["report", str(photo), "--out", str(tmp_path / "reports")])
    summary = (tmp_path / "reports" / "summary.csv").read_text()
    assert f",{NOT_A_RADIOGRAPH}," in summary and ",True," in summary


def test_a_strip_cut_from_a_radiograph_is_not_a_chest_radiograph_by_its_shape(bundled_service, tmp_path):
    from pneumolens.decision import NOT_A_RADIOGRAPH

    film = Image.open(app.EXAMPLES[0]).convert("L")
    film = film.resize((3000, round(3000 * film.height / film.width)))
    strip = film.crop((0, film.height // 2, 3000, film.height // 2 + 10))  # 3000 x 10, lung texture
    path = tmp_path / "strip.png"
    strip.save(path)
    predicted, analysed = bundled_service.predict(str(path)), bundled_service.analyse(str(path))
    for verdict in (predicted["out_of_distribution"], analysed.ood):
        assert verdict["flagged"] and verdict["reason"] == "shape" and "3000 x 10 pixels" in verdict["warning"]
    assert predicted["decision"] == analysed.decision == NOT_A_RADIOGRAPH
    assert analysed.record()["out_of_distribution"]["reason"] == "shape"


def test_every_film_we_hold_has_a_chest_radiographs_shape():
    from tests.conftest import SHARED_DATA
    from pneumolens.film_shape import shape_problem

    films = [*app.EXAMPLES, *(str(p) for p in SHARED_DATA.rglob("*.jpeg"))]
    assert len(films) > (5000 if SHARED_DATA.is_dir() else 3)
    refused = [film for film in films if shape_problem(Image.open(film).size)]
    assert not refused, refused[:5]


def test_the_large_view_shows_a_map_the_architecture_has(tiny_trained_dirs):
    """ConvNeXt has no attention rollout: chosen for the large view, the first map it has is shown instead."""
    page = page_for(PneumoLensService(ModelSource(str(tiny_trained_dirs["convnext"]))))
    displayed = page.analysis(app.EXAMPLES[0], app.PREDICTED, 0.5)["displayed"]
    radiograph, shown = page.large_view(displayed, 0.5, REGISTRY["rollout"].title)
    assert "rollout" not in displayed.input_maps_png and shown.size == radiograph.size == displayed.image().size
