"""DICOM radiographs to 8-bit grayscale images, the way a viewer would display them."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .errors import PneumoLensError

DICOM_MAGIC_OFFSET = 128


def is_dicom(header: bytes) -> bool:
    """True for a DICOM Part 10 file: 128 bytes of preamble, then 'DICM'."""
    return header[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM"


def read_dicom(data: bytes, max_pixels: int) -> Image.Image:
    """Decode a DICOM file: modality LUT, then the VOI LUT or window (else the full range), MONOCHROME1
    inverted so bone is white; the first frame of a multi-frame file. Raises `PneumoLensError`."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except Exception as err:  # pydicom raises several types for a damaged file
        raise PneumoLensError(f"The DICOM file could not be read ({err}).") from err
    if "PixelData" not in dataset:
        raise PneumoLensError("The DICOM file has no pixel data (is it a report or a structured document?).")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    if rows * columns > max_pixels:
        raise PneumoLensError(f"The DICOM image is too large: {columns}x{rows} pixels, at most {max_pixels:,} are accepted.")
    try:
        pixels = dataset.pixel_array
    except Exception as err:  # missing decoder for a compressed transfer syntax, truncated data
        raise PneumoLensError(f"The DICOM pixel data could not be decoded ({err}).") from err
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if pixels.ndim == 3:  # colour DICOM (secondary capture): RGB as is
        return Image.fromarray(_stretch(pixels.astype(np.float64))).convert("RGB")
    values = apply_modality_lut(pixels, dataset).astype(np.float64)
    if "WindowCenter" in dataset or "VOILUTSequence" in dataset:
        values = apply_voi_lut(values, dataset).astype(np.float64)
    if dataset.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        values = values.max() - values
    return Image.fromarray(_stretch(values), mode="L")


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)
