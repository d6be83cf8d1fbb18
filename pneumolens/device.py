"""Where the model runs when serving: CUDA when there is one (a GPU Space, a workstation, ZeroGPU), Apple's
MPS where it works, the CPU otherwise, or the device the server's settings name (`PNEUMOLENS_DEVICE`).

Float32 everywhere: the maps and decisions must be the CPU's (the GPU checks compare them at 1e-4), and
a reduced precision would be a measured choice, not a default.

ZeroGPU (Hugging Face's shared GPUs): the model is moved to CUDA at start-up, as ZeroGPU expects, and
every function that runs the model is wrapped in `spaces.GPU`, which attaches a GPU for the call. The
`spaces` package is imported only where it is installed; elsewhere `gpu_call` returns the function as is.
"""

from __future__ import annotations

import logging
import os

import torch

from .errors import PneumoLensError

logger = logging.getLogger(__name__)

DEVICE_VARIABLE = "PNEUMOLENS_DEVICE"
ZERO_GPU_VARIABLE = "SPACES_ZERO_GPU"  # set by Hugging Face on ZeroGPU Spaces


def on_zero_gpu(environ=os.environ) -> bool:
    return bool(environ.get(ZERO_GPU_VARIABLE))


def serving_device(requested: str | None = None, environ=os.environ) -> torch.device:
    """The device `requested` names (checked: the machine must have it), else CUDA (on ZeroGPU, always),
    MPS or the CPU, the first that is there."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise PneumoLensError(f"{DEVICE_VARIABLE}={requested!r} is not a device (e.g. cpu, cuda, cuda:1, mps).") from None
        if not _available(device):
            raise PneumoLensError(f"{DEVICE_VARIABLE}={requested!r}, but this machine has no {device.type} device.")
        return device
    if on_zero_gpu(environ) or torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_works():
        return torch.device("mps")
    return torch.device("cpu")


def _available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    if device.type == "mps":
        return _mps_works()
    return device.type == "cpu"


def _mps_works() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available() and backend.is_built())


def gpu_call(function):
    """`spaces.GPU(function)` where the `spaces` package is installed (it attaches a ZeroGPU for each call
    on a ZeroGPU Space and does nothing elsewhere), else `function` unchanged."""
    try:
        import spaces
    except ImportError:
        return function
    logger.info("Running %s under spaces.GPU", getattr(function, "__name__", function))
    return spaces.GPU(function)
