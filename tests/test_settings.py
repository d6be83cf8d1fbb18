"""The server's settings: one object, read from the environment once; every variable in one table, the
same table in docs/app.md, and no module below the serving layer reading any of them."""

import re
from pathlib import Path

import pytest

import app
from pneumolens.errors import PneumoLensError
from pneumolens.modeling import BUNDLED_MODEL
from pneumolens.serving.settings import VARIABLES, ServingSettings

REPO = Path(__file__).resolve().parent.parent


def test_every_variable_sets_its_field_and_an_unset_or_empty_one_keeps_the_default():
    environ = {"MODEL_ID": "someone/model", "MODEL_REVISION": "abc123", "PNEUMOLENS_DEVICE": "cpu",
               "PNEUMOLENS_TRAINING_FILMS": "/films", "PNEUMOLENS_CASES": "/cases", "PNEUMOLENS_COLORMAP": "jet",
               "PNEUMOLENS_OVERLAY": "even", "PNEUMOLENS_PREDICT_BATCH": "3", "PNEUMOLENS_CACHE_MAX_AGE_S": "60",
               "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_MCP_SERVER": "off"}
    assert set(environ) == {variable for variable, _, _ in VARIABLES}
    settings = ServingSettings.from_environment(environ)
    assert (settings.model_id, settings.model_revision, settings.device) == ("someone/model", "abc123", "cpu")
    assert (settings.training_films, settings.cases, settings.colormap, settings.blend) == ("/films", "/cases", "jet", "even")
    assert (settings.predict_batch_size, settings.cache_max_age_s, settings.delete_cache) == (3, 60, (20, 60))
    assert (settings.server_name, settings.mcp_server) == ("0.0.0.0", False)
    assert settings.model_source().name_or_path == "someone/model" and settings.model_source().revision == "abc123"
    default = ServingSettings.from_environment({"MODEL_ID": "", "GRADIO_MCP_SERVER": " "})
    assert default == ServingSettings() and default.mcp_server and default.delete_cache == (300, 900)
    assert default.model_source().name_or_path == str(BUNDLED_MODEL)


@pytest.mark.parametrize("environ, message", [
    ({"PNEUMOLENS_PREDICT_BATCH": "eight"}, "PNEUMOLENS_PREDICT_BATCH='eight' is not a whole number"),
    ({"PNEUMOLENS_PREDICT_BATCH": "0"}, "PNEUMOLENS_PREDICT_BATCH=0: use 1 or more"),
    ({"PNEUMOLENS_CACHE_MAX_AGE_S": "0"}, "PNEUMOLENS_CACHE_MAX_AGE_S=0: use 1 or more seconds"),
    ({"PNEUMOLENS_OVERLAY": "loud"}, "PNEUMOLENS_OVERLAY=loud: use one of value, even"),
])
def test_a_bad_value_is_refused_in_words_that_name_the_variable(environ, message):
    with pytest.raises(PneumoLensError, match=re.escape(message)):
        ServingSettings.from_environment(environ)


def test_the_launch_follows_the_settings():
    options = app.launch_options(ServingSettings(server_name="0.0.0.0", mcp_server=False))
    assert (options["server_name"], options["mcp_server"]) == ("0.0.0.0", False)
    assert app.launch_options(ServingSettings(colormap="jet"))["css"] != app.launch_options(ServingSettings())["css"]


def test_docs_app_lists_every_variable_in_its_settings_table():
    text = (REPO / "docs" / "app.md").read_text()
    section = text[text.index("## Settings"):]
    section = section[:section.index("\n## ", 1)]
    listed = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))
    assert {variable for variable, _, _ in VARIABLES} <= listed


def test_no_module_below_the_serving_layer_reads_a_server_variable():
    # The command line's default model (MODEL_ID, MODEL_REVISION) is the one other reader, for explain.py and
    # `python -m pneumolens`; the server takes its model from the settings.
    readers = {}
    for path in [REPO / "app.py", *sorted((REPO / "pneumolens").rglob("*.py"))]:
        code = path.read_text()
        for variable, _, _ in VARIABLES:
            if re.search(rf"""(environ(\.get)?|getenv)\(?\[?\s*["']{variable}["']""", code):
                readers.setdefault(variable, []).append(path.relative_to(REPO).as_posix())
    assert readers == {"MODEL_ID": ["pneumolens/modeling.py"], "MODEL_REVISION": ["pneumolens/modeling.py"]}
