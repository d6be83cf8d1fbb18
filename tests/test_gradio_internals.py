"""The app's patches of Gradio's internals: each checked at start-up, failing loudly where one is gone."""

import asyncio

import gradio
import gradio.mcp
import gradio.queueing
import pytest

import app
from pneumolens.modeling import ModelSource
from pneumolens.service import PneumoLensService
from pneumolens.serving import gradio_internals
from pneumolens.serving.gradio_internals import PATCHES, GradioInternalsMissing
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tiny_service(tiny_trained_dirs):
    return PneumoLensService(ModelSource(str(tiny_trained_dirs["dinov2"])))


def test_every_patched_internal_is_in_the_pinned_gradio(tiny_service):
    demo = app.build_demo(tiny_service)  # checks, then patches
    gradio_internals.check(demo)
    assert all(patch.works_around for patch in PATCHES)
    # The URL guard sits on the page's upload and on every endpoint's inputs.
    guarded = [block for block in demo.blocks.values()
               if getattr(block, "async_move_resource_to_block_cache", None).__name__ == "guarded"]
    assert len(guarded) >= 1 + 5
    # No component of Gradio's is subclassed, so Gradio writes no type stub anywhere in the tree.
    assert not list(REPO.glob("*.pyi")) and not list((REPO / "pneumolens").rglob("*.pyi"))


@pytest.mark.parametrize("owner, attribute, named", [
    (gradio.mcp.GradioMCPServer, "_execute_tool_without_progress", "MCP answers of several outputs"),
    (gradio.queueing.Queue, "push", "fair queue"),
])
def test_a_missing_internal_stops_the_app_at_start_up_naming_it_and_its_reason(tiny_service, monkeypatch, owner,
                                                                                attribute, named):
    monkeypatch.delattr(owner, attribute)
    with pytest.raises(GradioInternalsMissing) as missing:
        app.build_demo(tiny_service)
    message = str(missing.value)
    assert f"{owner.__name__}.{attribute} (the {named} patch, for" in message
    assert f"gradio {gradio.__version__}" in message and "gradio_internals.py" in message


def test_an_agent_gets_each_output_of_a_queued_tool():
    class Job:
        def __init__(self, answer):
            self.answer = answer

        def result(self):
            return self.answer

    gradio_internals._hand_on_each_mcp_output()
    server = gradio.mcp.GradioMCPServer.__new__(gradio.mcp.GradioMCPServer)
    assert asyncio.run(server._execute_tool_without_progress(Job(("{}", {"path": "a.webp"})))) == \
        ["{}", {"path": "a.webp"}]
    assert asyncio.run(server._execute_tool_without_progress(Job("{}"))) == ["{}"]
    gradio_internals._hand_on_each_mcp_output()  # installed once, however many apps are built
    assert gradio.mcp.GradioMCPServer._execute_tool_without_progress.hands_on_each_output


@pytest.mark.parametrize("answer", [[("{}", {"path": "a.webp"})], ["{}", {"path": "a.webp"}], ("{}", {"path": "a.webp"})],
                         ids=["gradio-6.31-wrapped", "fixed-gradio-list", "fixed-gradio-tuple"])
def test_the_mcp_patch_hands_on_each_output_in_either_shape(answer):
    """Gradio 6.31 wraps a queued tool's tuple as one output; when Gradio fixes that, the patched path still
    answers one item per output instead of failing."""
    assert gradio_internals.outputs_of(answer) == ["{}", {"path": "a.webp"}]
    assert gradio_internals.outputs_of(["{}"]) == ["{}"]
    with pytest.raises(gradio_internals.GradioInternalsMissing, match="update the 'MCP answers of several outputs'"):
        gradio_internals.outputs_of("{}")
