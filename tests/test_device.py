"""Where the model serves: the choice of device (availability faked only for the choice itself) and the
ZeroGPU wrapper, applied where the `spaces` package is importable and absent elsewhere."""

import json
import sys
import types

import pytest
import torch
from gradio_client import Client, handle_file

import app
from tests.test_app import explained
from pneumolens import device as device_module
from pneumolens.presentation import model_summary
from pneumolens.device import DEVICE_VARIABLE, ZERO_GPU_VARIABLE, gpu_call, serving_device
from pneumolens.errors import PneumoLensError
from pneumolens.modeling import ModelSource
from pneumolens.service import PneumoLensService
from pneumolens.serving.settings import ServingSettings


@pytest.fixture
def machine(monkeypatch):
    """Fake which accelerators the machine has, for `serving_device` only."""
    def have(cuda=False, mps=False, cuda_count=1):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count if cuda else 0)
        monkeypatch.setattr(device_module, "_mps_works", lambda: mps)
    return have


def test_cuda_first_then_mps_then_the_cpu(machine):
    machine(cuda=True, mps=True)
    assert serving_device(None, {}) == torch.device("cuda")
    machine(cuda=False, mps=True)
    assert serving_device(None, {}) == torch.device("mps")
    machine()
    assert serving_device(None, {}) == torch.device("cpu")


def test_the_settings_name_the_device_and_a_missing_one_is_refused(machine):
    machine(cuda=True, cuda_count=2)
    assert serving_device("cpu", {}) == torch.device("cpu")
    assert serving_device("cuda:1", {}) == torch.device("cuda:1")
    with pytest.raises(PneumoLensError, match="no cuda device"):
        serving_device("cuda:2", {})
    machine()
    with pytest.raises(PneumoLensError, match="PNEUMOLENS_DEVICE='cuda', but this machine has no cuda"):
        serving_device(ServingSettings.from_environment({DEVICE_VARIABLE: "cuda"}).device, {})
    with pytest.raises(PneumoLensError, match="is not a device"):
        serving_device("gpu please", {})


def test_zero_gpu_loads_the_model_for_cuda_at_start_up(machine):
    machine()  # ZeroGPU attaches the GPU per call: at start-up CUDA may not report itself yet
    assert serving_device(None, {ZERO_GPU_VARIABLE: "true"}) == torch.device("cuda")


def test_without_spaces_the_handlers_are_unchanged():
    assert "spaces" not in sys.modules  # not installed here
    function = lambda: 1  # noqa: E731
    assert gpu_call(function) is function


def test_with_spaces_every_model_handler_runs_under_spaces_gpu(tiny_trained_dirs, monkeypatch):
    wrapped, calls = [], []

    def gpu(function):
        wrapped.append(function.__name__)

        def on_gpu(*args, **kwargs):
            calls.append(function.__name__)
            return function(*args, **kwargs)
        return on_gpu

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    monkeypatch.setenv(ZERO_GPU_VARIABLE, "true")
    # no GPU here: the wrapper is what is tested
    service = PneumoLensService(ModelSource(str(tiny_trained_dirs["dinov2"])), device="cpu")
    assert service.device == torch.device("cpu") and "served on `cpu`" in model_summary(service)
    demo = app.build_demo(service)
    # The API's endpoints (gradio_client's and MCP's) and the page's handlers that run the model.
    assert sorted(wrapped) == ["analysis", "explain", "faithfulness_curves", "faithfulness_figure", "predict",
                               "report", "report", "robustness", "robustness"]
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        client = Client(url, verbose=False)
        label = json.loads(client.predict(handle_file(app.EXAMPLES[0]), api_name="/predict"))["decision"]
        _, maps = explained(client, handle_file(app.EXAMPLES[0]))
    finally:
        demo.close()
    assert calls == ["predict", "explain"]
    assert label in service.labels  # answered by the handler run under the wrapper
    assert maps["gradcam"] is not None
