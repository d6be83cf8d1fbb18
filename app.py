"""PneumoLens: the Gradio demo, its API and the Hugging Face Space entry point.

    python app.py                      # serves MODEL_ID, or the bundled model
    MODEL_ID=you/your-model python app.py
    PNEUMOLENS_CASES=DIR python app.py # with a case set for the read-first mode (/?mode=quiz, docs/teaching.md)

This file is the configuration, the page's layout and its wiring. The programs' API (gradio_client and MCP
alike: /predict, /explain, /robustness, /faithfulness_curves, /report, each answering its JSON record first)
is `pneumolens.serving.api`; the page's handlers are `pneumolens.serving.page`; every patch of Gradio's
internals is `pneumolens.serving.gradio_internals`. MCP tools are at /gradio_api/mcp/ unless
GRADIO_MCP_SERVER=false. Every environment variable the server reads is in `pneumolens.serving.settings`
(docs/app.md#settings).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from pneumolens import fair_queue, presentation
from pneumolens.device import gpu_call
from pneumolens.errors import PneumoLensError
from pneumolens.explain import METHODS, TITLES
from pneumolens.explain.overlay import DEFAULT_OPACITY
from pneumolens.service import PneumoLensService
from pneumolens.serving import gradio_internals
from pneumolens.serving.api import PREDICTED, ProgramApi, add_endpoints
from pneumolens.serving.page import ANALYSIS_OUTPUTS, PageHandlers, no_downloads
from pneumolens.serving.quiz import QuizHandlers
from pneumolens.serving.settings import ServingSettings
from pneumolens.serving.uploads import MAX_FILE_BYTES
from pneumolens.similar import SHOWN
from pneumolens.teaching import NOT_SURE, CaseSet

logger = logging.getLogger("app")

REPO = Path(__file__).resolve().parent
EXAMPLES = sorted(str(p) for p in (REPO / "examples").glob("*.jpeg"))
TITLE = "PneumoLens: explainable pneumonia detection on chest X-rays"
# The page at 1440x900 shows the decision, the probabilities and every map after Analyse without
# scrolling (the browser test's screenshot): these heights are what keeps it so.
PREVIEW_HEIGHT = 230
MAP_HEIGHT = 135
LARGE_HEIGHT = 470  # the large view: a 1.3 MP radiograph shows about 600 px wide at 1440x900
# After Analyse, bring the decision into view where it is not (a phone: it sits below the upload column).
SHOW_DECISION = """() => { const d = [...document.querySelectorAll("#quiz, #decision")].find(e => e.offsetParent);
  if (!d) return;  // in read-first mode the film to read (then the comparison) comes first
  const r = d.getBoundingClientRect();
  if (r.top < 0 || r.top > window.innerHeight * 0.4) window.scrollBy(0, r.top - 8); }"""
# The same before the analysis starts, passing its inputs through unchanged (a js step's return values are
# the inputs the handler gets).
SHOW_DECISION_FIRST = "(...inputs) => { (" + SHOW_DECISION + ")(); return inputs; }"
# What a browser session may hold on the server: what redraws its last analysis (model-input maps and a
# display-size JPEG, about 150 KB), kept for 15 minutes after the last use and for at most 200 sessions
# (the oldest go first; benchmarks/soak.py measures what a session costs the server in all).
SESSION_TIME_TO_LIVE_S = 15 * 60
SESSION_CAPACITY = 200
WINDOW_NOTE = ("<small>The window changes what you see, not what the model was given: it reads the film as the "
               "file shows it. Zoom the large view with the wheel or a pinch, drag to pan; its button resets.</small>")
# Requests waiting in the queue (running ones not counted): per browser session or MCP agent, per network
# address (a classroom behind one school address), in all (docs/safety.md says why these numbers).
QUEUE_LIMITS = fair_queue.QueueLimits()


def build_demo(service: PneumoLensService, settings: ServingSettings | None = None,
               queue_limits: fair_queue.QueueLimits = QUEUE_LIMITS, cases: CaseSet | None = None,
               delete_cache: tuple[int, int] | None = None) -> gr.Blocks:
    """The Blocks app around one loaded model: the programs' endpoints, and the page laid out and wired to
    its handlers; `cases` is the read-first mode's case set (PNEUMOLENS_CASES), if any. Temporary files are
    deleted as `settings` say, or as `delete_cache` says where given."""
    settings = settings or ServingSettings.from_environment()
    api = ProgramApi(service, settings)
    handlers = PageHandlers(api)
    quiz = QuizHandlers(handlers, cases)
    # The whole width of the window: at 1440 pixels the large view gets 600 of them.
    with gr.Blocks(title=TITLE, delete_cache=delete_cache or settings.delete_cache, fill_width=True) as demo:
        add_endpoints(api, wrap=gpu_call)  # first, so that they hold their names; `spaces.GPU` on ZeroGPU
        page = page_components(service, handlers.method_of, cases)
        wire_events(page, handlers, quiz)
        wire_quiz(demo, page, quiz)
    demo.queue(max_size=queue_limits.queue_size)
    gradio_internals.install(demo, queue_limits, file_inputs=[page.upload])
    return demo


def page_components(service: PneumoLensService, method_of: dict[str, str], cases: CaseSet | None = None
                    ) -> SimpleNamespace:
    """The page's components, laid out inside the Blocks being built; returned by name for the wiring."""
    gr.Markdown(f"## {TITLE}\n{presentation.disclaimer_markdown()}", elem_id="header")
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            # No file_types filter: DICOM files often have no extension; the content decides.
            upload = gr.File(label="Chest X-ray: JPEG, PNG (8 or 16-bit) or DICOM", type="filepath", height=110)
            shown = gr.Image(label="Preview (as decoded)", type="pil", format="jpeg", interactive=False,
                             height=PREVIEW_HEIGHT, elem_id="preview")
            details = gr.Markdown(elem_id="preview-details")
            with gr.Row():
                explained_class = gr.Dropdown([PREDICTED, *service.labels], value=PREDICTED,
                                              label="Explain the class", min_width=120)
                opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity", min_width=120)
            run = gr.Button("Analyse", variant="primary")
            with gr.Row(elem_id="quiz-controls"):
                quiz_on = gr.Checkbox(label="Read it yourself first", elem_id="quiz-switch", min_width=150)
                next_case = gr.Button("Next case", visible=cases is not None, elem_id="next-case", size="sm",
                                      min_width=100)
            gr.Examples(EXAMPLES, inputs=upload, label="Examples (official validation images, CC BY 4.0)")
        with gr.Column(scale=7, min_width=340):
            with gr.Column(visible=False, elem_id="quiz") as quiz:  # read-first: the film, then the student's read
                quiz_film = gr.Image(label="Read this film first: what do you see?", type="pil", format="jpeg",
                                     interactive=False, height=LARGE_HEIGHT, elem_id="quiz-film")
                with gr.Row(visible=False, elem_id="quiz-reads") as reads:
                    read_buttons = {label: gr.Button(label, elem_id=f"read-{label.lower()}") for label in service.labels}
                    read_buttons[NOT_SURE] = gr.Button("Not sure", elem_id="read-not-sure")
                quiz_result = gr.Markdown(elem_id="quiz-result")
            with gr.Column(visible=False, elem_id="tally") as tally_box:
                tally = gr.Markdown(elem_id="tally-text")
                with gr.Row(equal_height=True):
                    again = gr.Dropdown([], label="See again a case where you and the model differed", visible=False,
                                        elem_id="see-again", min_width=200, scale=2)
                    reads_csv = gr.DownloadButton("Your reads (.csv)", elem_id="reads-csv", size="sm", min_width=150,
                                                  scale=1)
            with gr.Column(elem_id="answers") as answers:  # everything the model says: held back in read-first mode
                decision = gr.Markdown(elem_id="decision")
                warning = gr.Markdown(elem_id="ood-warning")
                with gr.Row():
                    with gr.Column(scale=6, min_width=340):
                        large = gr.ImageSlider(label="One map, large: the radiograph | the map over it (drag)",
                                               type="pil", format="jpeg", max_height=LARGE_HEIGHT,
                                               interactive=False, elem_id="large-view")
                        large_title = gr.Radio(list(method_of), value=next(iter(method_of)), show_label=False,
                                               elem_id="large-choice")
                        with gr.Row(elem_id="window-controls"):  # a DICOM's window / level: for DICOM uploads only
                            choice = gr.Dropdown([], label="Window", visible=False, elem_id="window-choice",
                                                 min_width=170, scale=2)
                            level = gr.Slider(label="Level", visible=False, elem_id="window-level", min_width=130, scale=1)
                            width = gr.Slider(label="Width", visible=False, elem_id="window-width", min_width=130, scale=1)
                        window_note = gr.Markdown(WINDOW_NOTE, visible=False, elem_id="window-note")
                    with gr.Column(scale=4, min_width=340):  # every map, most faithful first, with its verdict
                        maps, captions = map_grid(service.standings)
                with gr.Column(elem_id="similar-films"):  # filled after the analysis, from its record
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
                    record = gr.JSON(show_label=False)
    with gr.Column(elem_id="more-answers") as more_answers:  # they tell the answer too: held back with it
        with gr.Accordion("How faithful are these maps for this image?", open=False):
            gr.Markdown(presentation.CURVES_INTRODUCTION)
            make_curves = gr.Button("Measure on this image", elem_id="make-curves")
            curves = gr.Image(label="Faithfulness on this image", type="pil", format="png", elem_id="curves")
        with gr.Accordion("Does this decision hold? The image under each acquisition change", open=False):
            gr.Markdown(presentation.ROBUSTNESS_INTRODUCTION)
            check_robustness = gr.Button("Check this image", elem_id="check-robustness")
            robustness_sentence = gr.Markdown(elem_id="robustness-sentence")
            robustness_figure = gr.Image(label="The probability under each change", type="pil", format="png",
                                         elem_id="robustness-figure")
    with gr.Accordion("About the model", open=False):
        gr.Markdown(presentation.model_summary(service))
    displayed = gr.State(time_to_live=SESSION_TIME_TO_LIVE_S)
    film = gr.State(time_to_live=SESSION_TIME_TO_LIVE_S)  # a DICOM's values at display size, for other windows
    window = gr.State(time_to_live=SESSION_TIME_TO_LIVE_S)  # the window a person chose; None: the file's own
    checked = gr.State(time_to_live=SESSION_TIME_TO_LIVE_S)  # the robustness check of the current upload
    held = gr.State(time_to_live=SESSION_TIME_TO_LIVE_S)  # read-first: the analysis, until the student's read
    session = gr.State(time_to_live=SESSION_TIME_TO_LIVE_S)  # read-first: the case order and the reads
    case = gr.State(time_to_live=SESSION_TIME_TO_LIVE_S)  # the case last served, with its label
    # Every component above, by the name it has here, for the wiring.
    return SimpleNamespace(**{name: value for name, value in locals().items()
                              if name not in ("service", "method_of", "cases")})


def map_grid(standings) -> tuple[dict, dict]:
    """Each map's image and caption, two to a row, most faithful first; {method: component} each."""
    maps, captions = {}, {}
    for row in [standings[i:i + 2] for i in range(0, len(standings), 2)]:
        with gr.Row():
            for standing in row:
                with gr.Column(min_width=165):
                    maps[standing.name] = gr.Image(label=TITLES[standing.name], type="pil", format="jpeg",
                                                   height=MAP_HEIGHT, elem_id=f"map-{standing.name}",
                                                   elem_classes="map-image")
                    captions[standing.name] = gr.Markdown(presentation.ranked_caption(standings, standing),
                                                          elem_id=f"caption-{standing.name}", elem_classes="map-caption")
    return maps, captions


def by_component(handler, components: dict[str, gr.components.Component]):
    """`handler`, whose answer is a dict by name, answering {component: value} for Gradio instead."""
    @functools.wraps(handler)
    def answer(*args):
        return {components[name]: value for name, value in handler(*args).items()}
    return answer


def component_names(page: SimpleNamespace) -> dict:
    """The page's components by the names the handlers answer with: their own, and `map_rollout`,
    `caption_rollout`, ... for the maps and their captions."""
    return {**{name: value for name, value in vars(page).items() if isinstance(value, gr.blocks.Block)},
            **{f"map_{m}": page.maps[m] for m in METHODS}, **{f"caption_{m}": page.captions[m] for m in METHODS}}


# How the page's events queue. All are private: programs use the API's endpoints.
PRIVATE = dict(api_visibility="private")
ON_MODEL = dict(PRIVATE, concurrency_limit=1, concurrency_id="model")
REDRAW = dict(PRIVATE, concurrency_limit=2, concurrency_id="redraw")  # never waits for the model
AT_ONCE = dict(PRIVATE, concurrency_limit=None)


def drawn_inputs(page: SimpleNamespace) -> list:
    """What the maps and the large view are drawn from: the session's maps, opacity, chosen map and window."""
    return [page.displayed, page.opacity, page.large_title, page.film, page.window]


def then_the_views(event, page: SimpleNamespace, handlers: PageHandlers, named: dict) -> None:
    """After an answer appears (an analysis, or a read-first reveal): the large view, the decision brought
    into view, then the similar films."""
    event.success(handlers.large_view, drawn_inputs(page), page.large, **REDRAW).then(
        None, js=SHOW_DECISION).then(by_component(handlers.similar_row, named), page.record,
                                     [page.similar_text, page.similar_gallery], **REDRAW)


def wire_events(page: SimpleNamespace, handlers: PageHandlers, quiz: QuizHandlers) -> None:
    """Each event of the page to its handler, inside the Blocks being built."""
    named = component_names(page)

    def outputs(*names):
        return [named[name] for name in names]

    page.upload.change(by_component(handlers.preview, named), page.upload,
                       outputs("shown", "details", "downloads", "film", "window", "choice", "level", "width",
                               "window_note"), **dict(PRIVATE, concurrency_limit=2, concurrency_id="preview"))
    drawn = drawn_inputs(page)
    redraw_maps = (by_component(handlers.redraw, named), drawn, outputs(*(f"map_{m}" for m in METHODS), "large"))
    page.choice.input(by_component(handlers.window_preset, named), [page.film, page.choice],
                      outputs("window", "shown", "level", "width"), **REDRAW).then(*redraw_maps, **REDRAW)
    for slider in (page.level, page.width):
        slider.release(by_component(handlers.window_from_sliders, named), [page.film, page.level, page.width],
                       outputs("window", "shown", "choice"), **REDRAW).then(*redraw_maps, **REDRAW)
    page.upload.change(lambda: ("", None), None, outputs("robustness_sentence", "robustness_figure"), **AT_ONCE)
    page.explained_class.change(no_downloads, None, page.downloads, **AT_ONCE)
    # The decision comes into view at once: while the analysis waits, its queue position shows there.
    # In read-first mode the analysis is held on the server (quiz.analysis) until the student's read.
    then_the_views(page.run.click(by_component(gpu_call(quiz.analysis), named),
                                  [page.upload, page.explained_class, page.opacity, page.film, page.window,
                                   page.quiz_on], outputs(*ANALYSIS_OUTPUTS, *QUIZ_HOLD_OUTPUTS),
                                  js=SHOW_DECISION_FIRST, **ON_MODEL), page, handlers, named)
    page.make_curves.click(gpu_call(handlers.faithfulness_figure), [page.upload, page.explained_class], page.curves,
                           **ON_MODEL)
    page.check_robustness.click(by_component(gpu_call(handlers.robustness), named), page.upload,
                                outputs("robustness_sentence", "robustness_figure", "checked"), api_name="page_robustness",
                                **ON_MODEL)
    page.make_report.click(gpu_call(handlers.report), [page.upload, page.explained_class, page.opacity, page.checked],
                           page.downloads, api_name="page_report", **ON_MODEL).success(
        lambda: gr.update(visible=True), None, page.downloads, **AT_ONCE)
    page.opacity.release(*redraw_maps, **REDRAW)
    page.large_title.change(handlers.large_view, drawn, page.large, **REDRAW)


QUIZ_HOLD_OUTPUTS = ("held", "answers", "more_answers", "quiz", "quiz_film", "reads", "quiz_result", "downloads",
                     "large", "similar_text", "similar_gallery")
QUIZ_REVEAL_OUTPUTS = ("held", "session", "answers", "more_answers", "quiz", "quiz_film", "reads", "quiz_result",
                       "tally", "tally_box", "again", "reads_csv")


def wire_quiz(demo: gr.Blocks, page: SimpleNamespace, quiz: QuizHandlers) -> None:
    """The read-first mode's events: the switch (and /?mode=quiz), the student's read, the cases."""
    named = component_names(page)

    def outputs(*names):
        return [named[name] for name in names]

    demo.load(quiz_from_address, None, page.quiz_on, **AT_ONCE)
    then_the_views(page.quiz_on.change(by_component(quiz.switched, named), [page.quiz_on, page.held],
                                       outputs(*ANALYSIS_OUTPUTS, "held", "answers", "more_answers", "quiz"),
                                       **AT_ONCE), page, quiz.page, named)
    page.upload.change(by_component(quiz.uploaded, named), page.quiz_on,
                       outputs("held", "answers", "more_answers", "quiz"), **AT_ONCE)
    for read, button in page.read_buttons.items():
        then_the_views(button.click(by_component(functools.partial(quiz.reveal, student=read), named),
                                    [page.held, page.session, page.case],
                                    outputs(*ANALYSIS_OUTPUTS, *QUIZ_REVEAL_OUTPUTS), **AT_ONCE), page, quiz.page, named)
    page.next_case.click(by_component(quiz.next_case, named), page.session,
                         outputs("upload", "case", "session", "quiz_result", "reads"), **AT_ONCE)
    page.again.input(by_component(quiz.see_again, named), [page.session, page.again],
                     outputs("upload", "case", "quiz_result", "reads"), **AT_ONCE)


def quiz_from_address(request: gr.Request):
    """Read-first mode from the page's address, so that a teacher shares one link: /?mode=quiz."""
    return request.query_params.get("mode", "") == "quiz"


def launch_options(settings: ServingSettings | None = None) -> dict:
    settings = settings or ServingSettings.from_environment()
    return {"max_file_size": MAX_FILE_BYTES, "server_name": settings.server_name,
            "state_session_capacity": SESSION_CAPACITY, "app_kwargs": {"lifespan": gradio_internals.cache_cleanup},
            "css": presentation.page_css(settings.colormap, settings.blend), "mcp_server": settings.mcp_server}


def service_for(settings: ServingSettings) -> PneumoLensService:
    """The model the settings name, on their device, with their training films' pictures."""
    return PneumoLensService(settings.model_source(), settings.device, settings.training_films)


def main() -> None:
    """`python app.py`: the settings (read from the environment once) and the case set checked first (a bad
    one fails before the model loads), then the model, then the server."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app_settings = ServingSettings.from_environment()  # every variable: pneumolens/serving/settings.py
        cases = CaseSet.from_setting(app_settings.cases)
        app_service = service_for(app_settings)
    except PneumoLensError as error:
        raise SystemExit(f"error: {error}")
    build_demo(app_service, settings=app_settings, cases=cases).launch(**launch_options(app_settings))


if __name__ == "__main__":
    main()
