"""DICOM radiographs to 8-bit grayscale images, the way a viewer would display them."""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

from .errors import PneumoLensError

DICOM_MAGIC_OFFSET = 128
# A 16-bit 5000x5000 radiograph is 50 MB; a data set that inflates to more is not a radiograph.
MAX_INFLATED_BYTES = 128 * 2**20
INFLATE_STEP = 2**20


def is_dicom(header: bytes) -> bool:
    """True for a DICOM Part 10 file: 128 bytes of preamble, then 'DICM'."""
    return header[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM"


def read_dicom(data: bytes, max_pixels: int) -> Image.Image:
    """Decode a DICOM file: modality LUT, then the VOI LUT or window (else the full range), MONOCHROME1
    inverted so bone is white; the first frame of a multi-frame file. Raises `PneumoLensError`.

    Nothing large is inflated or decoded before it is checked: a deflated data set is inflated once,
    in bounded steps, to see that it stays under `MAX_INFLATED_BYTES`; Rows x Columns x Frames x
    Samples must stay under `max_pixels`; only the first frame is decoded.
    """
    import pydicom

    try:
        meta, data_set_offset = _file_meta(data)
        if meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
            _check_inflated_size(data[data_set_offset:])
        dataset = pydicom.dcmread(io.BytesIO(data))
    except PneumoLensError:
        raise
    except Exception as err:  # pydicom raises several types for a damaged file
        raise PneumoLensError(f"The DICOM file could not be read ({type(err).__name__}: {err}).") from err
    if "PixelData" not in dataset:
        raise PneumoLensError("The DICOM file has no pixel data (is it a report or a structured document?).")
    _check_dimensions(dataset, max_pixels)
    try:
        dataset.pixel_array_options(index=0)  # decode the frame we use, not all of them
        pixels = dataset.pixel_array
    except Exception as err:  # missing decoder for a compressed transfer syntax, truncated data
        raise PneumoLensError(f"The DICOM pixel data could not be decoded ({type(err).__name__}).") from err
    if pixels.ndim == 3 and int(dataset.get("SamplesPerPixel", 1) or 1) == 1:
        pixels = pixels[0]  # a decoder that returned every frame after all
    return _display_image(pixels, dataset)


# Header fields shown beside a preview: how the image was made, nothing that names a patient, a
# person, a place or a date.
DESCRIBED_FIELDS = ("Modality", "BodyPartExamined", "ViewPosition", "PhotometricInterpretation", "BitsStored",
                    "Rows", "Columns", "NumberOfFrames")


def header_fields(data: bytes) -> dict[str, str]:
    """The `DESCRIBED_FIELDS` present in a DICOM file's header (pixel data not read). Call it only on a
    file that `read_dicom` accepted, which has already bounded a deflated data set's size."""
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=list(DESCRIBED_FIELDS))
    return {name: str(dataset.get(name)) for name in DESCRIBED_FIELDS if dataset.get(name) not in (None, "")}


def _display_image(pixels: np.ndarray, dataset) -> Image.Image:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if pixels.ndim == 3:  # colour DICOM (secondary capture): RGB as is
        return Image.fromarray(_stretch(pixels.astype(np.float32))).convert("RGB")
    values = apply_modality_lut(pixels, dataset).astype(np.float32)
    if "WindowCenter" in dataset or "VOILUTSequence" in dataset:
        values = apply_voi_lut(values, dataset).astype(np.float32)
    if dataset.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        values = values.max() - values
    return Image.fromarray(_stretch(values), mode="L")


def _file_meta(data: bytes):
    """The file meta information and the offset of the data set after it, read without touching the
    data set itself."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    stream = io.BytesIO(data)
    read_preamble(stream, False)
    return _read_file_meta_info(stream), stream.tell()


def _check_inflated_size(deflated: bytes) -> None:
    """Inflate a deflated data set in bounded steps, keeping nothing, and refuse it if it grows past
    `MAX_INFLATED_BYTES`: a few MB of deflated zeros can stand for gigabytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, total = deflated, 0
    while pending:
        chunk = inflater.decompress(pending, INFLATE_STEP)
        total += len(chunk)
        if total > MAX_INFLATED_BYTES:
            raise PneumoLensError(
                f"The deflated DICOM file expands to more than {MAX_INFLATED_BYTES // 2**20} MB; it is refused.")
        pending = inflater.unconsumed_tail
        if not chunk and not pending:
            break


def _check_dimensions(dataset, max_pixels: int) -> None:
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if rows * columns * frames * samples > max_pixels:
        raise PneumoLensError(
            f"The DICOM image is too large: {columns}x{rows} pixels x {frames} frame(s) x {samples} sample(s); "
            f"at most {max_pixels:,} values are accepted.")


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * np.float32(255.0 / (high - low))).astype(np.uint8)
