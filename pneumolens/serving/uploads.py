"""What the server accepts as an image, and how a failed request answers: in words, for the page,
gradio_client and MCP alike."""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from urllib.parse import unquote

import gradio as gr

from pneumolens.errors import PneumoLensError
from pneumolens.memory import trim_soon

logger = logging.getLogger(__name__)

# The largest clinical radiograph files are ~20 MB (uncompressed 16-bit DICOM). Gradio caps uploads; the
# app checks files itself too, since a data: URI sent to an MCP tool never passes through an upload.
MAX_FILE_BYTES = 25 * 1024 * 1024
UPLOADED_FILE_ROUTE = "/gradio_api/file="
URLS_REFUSED = "Only uploaded files are accepted: this app does not fetch URLs."


class RequestError(gr.Error):
    """What a request did wrong (or what failed), in words. Gradio's MCP layer makes `str(error)` the
    tool's error text, which gr.Error quotes."""

    def __str__(self) -> str:
        return str(self.message)


def uploaded_file(url_or_file_path):
    """`url_or_file_path` itself, or the uploaded file that a link to this server's file route names (what
    an MCP agent's `upload_file_to_gradio` gives); any other URL is refused, unfetched."""
    if url_or_file_path is None or "://" not in str(url_or_file_path):
        return url_or_file_path
    _, route, encoded = str(url_or_file_path).partition(UPLOADED_FILE_ROUTE)
    if route:
        path = Path(unquote(encoded)).resolve()
        if Path(gr.utils.get_upload_folder()).resolve() in path.parents and path.is_file():
            return str(path)
    raise RequestError(URLS_REFUSED)


def checked_path(file) -> str:
    """The path of an uploaded file (a path, or Gradio's file data as a dict), checked: present, a file
    in the server's hands, at most MAX_FILE_BYTES."""
    if isinstance(file, dict):
        file = file.get("path")
    if not file:
        raise RequestError("Please upload a chest X-ray image or DICOM file first.")
    path = str(file)
    if "://" in path or not Path(path).is_file():
        raise RequestError("Only uploaded files are accepted.")
    size = Path(path).stat().st_size
    if size > MAX_FILE_BYTES:
        raise RequestError(f"The file is too large: {size / 2**20:.1f} MB, at most {MAX_FILE_BYTES / 2**20:.0f} MB "
                           "are accepted.")
    return path


@contextlib.contextmanager
def errors_as_request_errors():
    """Around a model call: bad input becomes a `RequestError` naming the problem, any other failure one that
    says the analysis failed (logged), and the server keeps serving."""
    try:
        yield
    except RequestError:
        raise
    except PneumoLensError as err:
        raise RequestError(str(err)) from err
    except Exception as err:  # a bug must not take the server down; log it, tell the user plainly
        logger.exception("Analysis failed")
        raise RequestError(f"The analysis failed ({type(err).__name__}). Please try another image.") from err


def trim_heap_after(function):
    """`function`, after which the freed heap is handed back: an analysis frees hundreds of MB."""
    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            trim_soon()
    return call
