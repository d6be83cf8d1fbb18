"""Decoding of user images into RGB PIL images: the one way every entry point reads a picture.

Radiographs arrive as DICOM files or as 8- or 16-bit grayscale, RGB, RGBA, palette or CMYK images,
sometimes with an EXIF orientation; uploads can be truncated, empty, animated or decompression bombs. All of that is settled
here, so the model only ever sees an upright 8-bit RGB image.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .dicom import DICOM_HEADER_BYTES, is_dicom, read_dicom, read_film
from .errors import PneumoLensError

logger = logging.getLogger(__name__)

# A 4096x4096 radiograph is larger than any clinical detector; anything beyond this many pixels is
# refused before it is decoded (a few-KB PNG can declare 30000x30000 pixels).
MAX_IMAGE_PIXELS = 50_000_000

# The picture formats we document (besides DICOM). Pillow would otherwise try every decoder it has
# (EPS through Ghostscript, PSD, FITS, ...), each one more parser exposed to uploads.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")
# File names of those formats, and of DICOM, which `load_image` decodes too (by content: a DICOM file
# needs no extension, but a folder is searched by these).
PICTURE_SUFFIXES = (".jpeg", ".jpg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_SUFFIXES = (*PICTURE_SUFFIXES, ".dcm")

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


class ImageDecodeError(PneumoLensError):
    """The input is not a readable image."""


def load_image(source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Return `source` as an upright 8-bit RGB image, or raise `ImageDecodeError` naming the problem."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        image = _open(source, max_pixels)
    _check_size(image, max_pixels)
    if getattr(image, "n_frames", 1) > 1:
        logger.info("Image has %d frames; using the first.", image.n_frames)
        image.seek(0)
    try:
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise ImageDecodeError(f"The image could not be decoded ({type(err).__name__}); is the file complete?") from err


def describe_file(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> dict[str, str]:
    """What a person may want to know about an uploaded file that `load_image` accepted: its format and
    size, and for DICOM what the header says of the film (`dicom.described_fields`) and the window shown."""
    data = Path(path).read_bytes()
    if is_dicom(data):
        return {"format": "DICOM", **read_film(data, max_pixels).fields}
    with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
        return {"format": image.format, "mode": image.mode, "size": f"{image.width} x {image.height} px"}


def read_upload_film(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS):
    """The `dicom.DicomFilm` of a DICOM file (depth kept, for choosing windows), None for any other picture;
    `ImageDecodeError` naming the problem."""
    path = Path(path)
    if not is_dicom(_file_bytes(path, DICOM_HEADER_BYTES)):  # a picture is not read whole here
        return None
    try:
        return read_film(path.read_bytes(), max_pixels)
    except PneumoLensError as err:
        raise ImageDecodeError(str(err)) from err


def undecoded_source(image: dict):
    """What `load_image` takes for an undecoded `datasets` image value: its bytes, else its path."""
    return image.get("bytes") or image["path"]


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, rescaling 16-bit and float data by their actual range."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(_stretch_to_uint8(np.asarray(image, dtype=np.float64)), mode="L")
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become black, the background of a radiograph.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _open(source, max_pixels: int) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageDecodeError("The uploaded file is empty.")
        data, name = bytes(source), "The upload"
    else:
        path = Path(source)
        # The file name only: a message must not show where the server keeps its files.
        data, name = _file_bytes(path), path.name
    if is_dicom(data):
        try:
            return read_dicom(data, max_pixels)
        except PneumoLensError as err:
            raise ImageDecodeError(str(err)) from err
    stream = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=IMAGE_FORMATS)
        _check_size(image, max_pixels)
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if isinstance(err, UnidentifiedImageError):
            raise ImageDecodeError(
                f"{name} is not an image in a supported format ({', '.join(IMAGE_FORMATS)} or DICOM).") from err
        raise ImageDecodeError(f"{name} is too large to process safely ({err}).") from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        # Decoders report damaged data in all of these; the message never includes a server path.
        raise ImageDecodeError(f"{name} could not be decoded ({type(err).__name__}); is the file complete?") from err
    return image


def image_files_under(folder: Path) -> list[Path]:
    """The image files (pictures and DICOM, by their suffix) anywhere under `folder`, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _file_bytes(path: Path, limit: int = -1) -> bytes:
    """The file's bytes (its first `limit`, where given), or `ImageDecodeError` for a missing or empty file."""
    if not path.is_file():
        raise ImageDecodeError(f"No such image file: {path.name}")
    if path.stat().st_size == 0:
        raise ImageDecodeError(f"The file is empty: {path.name}")
    with path.open("rb") as file:
        return file.read(limit)


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"The image is too large: {width}x{height} pixels, at most {max_pixels:,} pixels are accepted."
        )
    if width < 1 or height < 1:
        raise ImageDecodeError(f"The image has no pixels ({width}x{height}).")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 2:
        if array.dtype == np.uint8:
            return Image.fromarray(array, mode="L")
        return Image.fromarray(_stretch_to_uint8(array.astype(np.float64)), mode="L")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if array.dtype != np.uint8:
            array = _stretch_to_uint8(array.astype(np.float64))
        return Image.fromarray(array[..., :3])
    raise ImageDecodeError(f"An image array must be HxW or HxWx3/4, not shape {array.shape}.")


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = np.nanmin(values), np.nanmax(values)
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)
