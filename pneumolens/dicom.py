"""DICOM radiographs as a reading-room viewer opens them: every common compression decoded, the depth kept
until display, then the file's own VOI LUT or window (or another one a person chooses), MONOCHROME1 inverted.

Anything refused is refused in words: the element that is malformed, or the compression that could not be
decoded and why; never a Python exception's text (docs/safety.md, benchmarks/dicom_fuzz.py).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import dicom_codecs
from .errors import PneumoLensError

DICOM_MAGIC_OFFSET = 128
DICOM_HEADER_BYTES = DICOM_MAGIC_OFFSET + 4  # what `is_dicom` reads: the preamble and 'DICM'
# A 16-bit 5000x5000 radiograph is 50 MB; a data set that inflates to more is not a radiograph.
MAX_INFLATED_BYTES = 128 * 2**20
INFLATE_STEP = 2**20

dicom_codecs.register()


def is_dicom(header: bytes) -> bool:
    """True for a DICOM Part 10 file: 128 bytes of preamble, then 'DICM'."""
    return header[DICOM_MAGIC_OFFSET:DICOM_HEADER_BYTES] == b"DICM"


def read_dicom(data: bytes, max_pixels: int) -> Image.Image:
    """Decode a DICOM file as a viewer shows it at first (`read_film(...).display()`). Raises
    `PneumoLensError`."""
    return read_film(data, max_pixels).display()


@dataclass(frozen=True)
class Window:
    """A VOI window (DICOM PS3.3 C.11.2.1.2, linear): values at `centre` show mid-grey, and `width`
    values span black to white."""
    centre: float
    width: float
    name: str

    def label(self) -> str:
        return f"{self.name} (level {self.centre:g}, width {self.width:g})"


@dataclass
class DicomFilm:
    """One frame of a DICOM film, its depth kept: `values` after the modality LUT (rows x columns, float32),
    or 8-bit RGB for a colour secondary capture; the file's own windows; what the header says of it."""
    values: np.ndarray
    inverted: bool  # MONOCHROME1: the lowest values are white
    windows: list[Window]
    voi_lut: np.ndarray | None  # the display the file stores as a VOI LUT, applied (8-bit), where it has one
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def colour(self) -> bool:
        return self.values.ndim == 3

    def default_window_name(self) -> str:
        """What the first display uses: the stored VOI LUT, else the file's first window, else the full range."""
        if self.colour:
            return "as stored (colour)"
        if self.voi_lut is not None:
            return "the file's VOI LUT"
        return self.windows[0].label() if self.windows else "full range"

    def display(self, window: Window | None = None) -> Image.Image:
        """The film as 8-bit grey (RGB for colour): through `window`, else as the file says it is shown."""
        if self.colour:
            return Image.fromarray(_stretch(self.values.astype(np.float32))).convert("RGB")
        if window is None and self.voi_lut is not None:
            grey = self.voi_lut
        else:
            window = window or (self.windows[0] if self.windows else None)
            grey = _stretch(self.values) if window is None else windowed(self.values, window)
        return Image.fromarray(255 - grey if self.inverted else grey, mode="L")

    def full_range(self) -> Window:
        low, high = float(self.values.min()), float(self.values.max())
        return Window(round((low + high) / 2, 1), max(round(high - low, 1), 1.0), "Full range")

    def lung_window(self) -> Window:
        """A window for the lungs. CT: Hounsfield units, level -600, width 1500. A radiograph's values have
        no fixed unit, so its lung window is read from the film itself: within the central 80 % of the frame,
        from the 2nd to the 70th percentile counted from the dark side, so that aerated lung fills the grey
        scale and mediastinum and bone saturate."""
        if self.fields.get("Modality") == "CT":
            return Window(-600.0, 1500.0, "Lung")
        rows, columns = self.values.shape
        centre = self.values[rows // 10: rows - rows // 10, columns // 10: columns - columns // 10]
        brightness = -centre if self.inverted else centre
        low, high = np.percentile(brightness, [2, 70])
        if self.inverted:
            low, high = -high, -low
        return Window(round(float(low + high) / 2, 1), max(round(float(high - low), 1), 1.0), "Lung")

    def presets(self) -> list[Window]:
        """The windows a person may pick: the file's own, a lung window, the full range."""
        return [] if self.colour else [*self.windows, self.lung_window(), self.full_range()]


def windowed(values: np.ndarray, window: Window) -> np.ndarray:
    """`values` through a linear window, as 8-bit grey (DICOM's formula, PS3.3 C.11.2.1.2.1)."""
    width = max(float(window.width), 1.0)
    scaled = (values - (window.centre - 0.5)) / max(width - 1.0, 1.0) + 0.5
    return np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def read_film(data: bytes, max_pixels: int) -> DicomFilm:
    """Decode one frame of a DICOM file, keeping its depth until display: the modality LUT applied, the
    VOI LUT or windows kept beside it, MONOCHROME1 noted; the first frame of a multi-frame file. Raises
    `PneumoLensError` naming the problem.

    Nothing large is inflated or decoded before it is checked: a deflated data set is inflated once,
    in bounded steps, to see that it stays under `MAX_INFLATED_BYTES`; Rows x Columns x Frames x
    Samples must stay under `max_pixels`; a compressed frame must describe the size the header says;
    only the first frame is decoded.
    """
    dataset, syntax = _dataset(data)
    try:
        _check_pixel_data_present(dataset)
        image = pixel_module(dataset)
        _check_dimensions(image, max_pixels)
        pixels = _first_frame(dataset, syntax, image)
        return _film(pixels, dataset, syntax, image)
    except PneumoLensError:
        raise
    except Exception as err:  # the last guard: a damage no check above names (the fuzz benchmark counts these)
        raise PneumoLensError(UNNAMED_DAMAGE) from err


UNNAMED_DAMAGE = "The DICOM file is damaged in a way this server cannot name more precisely; it could not be read."


def _check_pixel_data_present(dataset) -> None:
    if "PixelData" in dataset:
        return
    sop_class = dicom_codecs.syntax_name(dataset.file_meta.get("MediaStorageSOPClassUID", ""))
    # Tags only: reading the values of a damaged header could fail here.
    if "Image" in sop_class or any(tag.group == 0x0028 for tag in dataset.keys()):
        raise PneumoLensError("The DICOM file has no pixel data, though its header describes an image: "
                              "is the file complete?")
    raise PneumoLensError("The DICOM file has no pixel data (is it a report or a structured document?).")


def _dataset(data: bytes):
    import pydicom

    try:
        meta, data_set_offset = _file_meta(data)
    except Exception as err:  # pydicom raises several types for a damaged meta header
        raise PneumoLensError("The DICOM file meta header (group 0002) is damaged or incomplete; "
                              "is the file complete?") from err
    syntax = meta.get("TransferSyntaxUID")
    if not syntax:
        raise PneumoLensError("The DICOM file meta header has no Transfer Syntax UID (0002,0010): the file "
                              "does not say how its pixels are encoded.")
    if syntax not in dicom_codecs.SUPPORTED_SYNTAXES:
        raise PneumoLensError(f"The DICOM file uses the transfer syntax {dicom_codecs.syntax_name(syntax)[:80]}, "
                              "which this server does not decode (it decodes uncompressed, deflate, RLE, JPEG, "
                              "JPEG Lossless, JPEG-LS and JPEG 2000).")
    if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        _check_inflated_size(data[data_set_offset:])
    try:
        return pydicom.dcmread(io.BytesIO(data)), syntax
    except Exception as err:  # pydicom raises several types for a damaged data set
        raise PneumoLensError("The DICOM header could not be read: "
                              f"{_where_it_breaks(data, syntax, data_set_offset)}") from err


@dataclass(frozen=True)
class PixelModule:
    """The Image Pixel module's values (PS3.3 C.7.6.3), each checked."""
    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str


PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT",
                "PALETTE COLOR")


def pixel_module(dataset) -> PixelModule:
    """The pixel module's values, or `PneumoLensError` naming the element that is missing or malformed."""
    rows, columns = _number(dataset, "Rows"), _number(dataset, "Columns")
    bits_allocated, bits_stored = _number(dataset, "BitsAllocated"), _number(dataset, "BitsStored")
    samples = _number(dataset, "SamplesPerPixel", default=1)
    frames = _number(dataset, "NumberOfFrames", default=1) or 1
    _number(dataset, "PixelRepresentation", default=0)
    photometric = str(_value(dataset, "PhotometricInterpretation", default="MONOCHROME2")).strip()
    if rows < 1 or columns < 1:
        raise PneumoLensError(f"The DICOM header says the image is {columns}x{rows} pixels: Rows (0028,0010) and "
                              "Columns (0028,0011) must both be positive.")
    if bits_allocated not in (1, 8, 16, 32) or not 1 <= bits_stored <= bits_allocated:
        raise PneumoLensError(f"The DICOM header's Bits Allocated (0028,0100) {bits_allocated} and Bits Stored "
                              f"(0028,0101) {bits_stored} do not describe a pixel (Bits Stored must lie between 1 "
                              "and Bits Allocated, which is 1, 8, 16 or 32).")
    if samples not in (1, 3):
        raise PneumoLensError(f"The DICOM header's Samples per Pixel (0028,0002) is {samples}; a film has 1 "
                              "(grey) or 3 (colour).")
    if photometric not in PHOTOMETRICS:
        raise PneumoLensError(f"The DICOM header's Photometric Interpretation (0028,0004) '{photometric[:32]}' "
                              "is not one this server knows.")
    if frames < 1:
        raise PneumoLensError(f"The DICOM header's Number of Frames (0028,0008) is {frames}.")
    return PixelModule(rows, columns, frames, samples, bits_allocated, bits_stored, photometric)


def _value(dataset, keyword: str, default=None):
    """An element's value, read (pydicom reads lazily), or `PneumoLensError` naming the element."""
    try:
        value = dataset.get(keyword)
    except Exception as err:  # a value that does not parse as its VR
        raise PneumoLensError(f"The DICOM header's {_element_name(keyword)} element is malformed: its value "
                              "cannot be read as the type the standard gives it.") from err
    return default if value is None or value == "" else value


def _number(dataset, keyword: str, default=None) -> int:
    value = _value(dataset, keyword, default)
    if value is None:
        raise PneumoLensError(f"The DICOM header has no {_element_name(keyword)} element, which every image needs.")
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise PneumoLensError(f"The DICOM header's {_element_name(keyword)} element is malformed: "
                              f"'{str(value)[:24]}' is not a whole number.") from err


def _element_name(keyword_or_tag) -> str:
    """'Bits Allocated (0028,0100)': an element as the standard names it, with its tag."""
    from pydicom.datadict import dictionary_description, tag_for_keyword
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(keyword_or_tag) if isinstance(keyword_or_tag, str) else keyword_or_tag)
    try:
        description = dictionary_description(tag)
    except KeyError:
        description = "private element" if tag.is_private else "unknown element"
    return f"{description} ({tag.group:04X},{tag.element:04X})"


def _first_frame(dataset, syntax, image: PixelModule) -> np.ndarray:
    if syntax in dicom_codecs.NATIVE_SYNTAXES:
        _check_native_length(dataset, image)
    else:
        frame = _first_encapsulated_frame(dataset, syntax, image)
        dicom_codecs.check_codestream(frame, syntax, image.rows, image.columns, image.samples)
    try:
        dataset.pixel_array_options(index=0)  # decode the frame we use, not all of them
        pixels = dataset.pixel_array
    except Exception as err:  # every decoder failed: damaged data, or a feature none of them has
        raise PneumoLensError(_undecodable(syntax)) from err
    if pixels.ndim == 3 and image.samples == 1:
        pixels = pixels[0]  # a decoder that returned every frame after all
    return pixels


def _undecodable(syntax) -> str:
    name = dicom_codecs.syntax_name(syntax)
    if syntax in dicom_codecs.NATIVE_SYNTAXES:
        return (f"The {name} pixel data could not be read as its header describes it (Rows, Columns, Bits "
                "Allocated, Samples per Pixel): the file is damaged.")
    decoders = dicom_codecs.decoder_names(syntax)
    tried = f"by any installed decoder ({', '.join(decoders)})" if decoders else "(no decoder for it is installed)"
    return f"The {name} pixel data could not be decoded {tried}: the compressed data is damaged or uses a " \
           "feature they lack."


def _first_encapsulated_frame(dataset, syntax, image: PixelModule) -> bytes:
    from pydicom.encaps import generate_frames

    try:
        return next(generate_frames(dataset.PixelData, number_of_frames=image.frames))
    except Exception as err:  # a broken item or offset table
        raise PneumoLensError(f"The {dicom_codecs.syntax_name(syntax)} pixel data is not encapsulated as the "
                              "standard requires (its items or offset table are damaged): the file is truncated "
                              "or corrupt.") from err


def _check_native_length(dataset, image: PixelModule) -> None:
    # The first frame; YBR_FULL_422 stores two samples a pixel, not three.
    samples = 2 if image.photometric == "YBR_FULL_422" else image.samples
    needed = (image.rows * image.columns * samples * image.bits_allocated + 7) // 8
    held = len(dataset.PixelData)
    if held < needed:
        raise PneumoLensError(f"The DICOM pixel data holds {held:,} bytes, fewer than one {image.columns}x"
                              f"{image.rows} frame of {image.bits_allocated}-bit samples needs ({needed:,}): is the "
                              "file complete? (Else Rows, Columns or Bits Allocated are wrong.)")


def _film(pixels: np.ndarray, dataset, syntax, image: PixelModule) -> DicomFilm:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    fields = described_fields(dataset, syntax, image)
    if pixels.ndim == 3:  # colour DICOM (secondary capture): RGB as is
        film = DicomFilm(pixels, False, [], None, fields)
    else:
        try:
            values = apply_modality_lut(pixels, dataset).astype(np.float32)
            voi_lut = None
            if "VOILUTSequence" in dataset:
                voi_lut = _stretch(apply_voi_lut(values, dataset).astype(np.float32))
        except Exception as err:  # a Rescale or LUT element that does not parse
            raise PneumoLensError("The DICOM header's Modality LUT or VOI LUT elements (Rescale Slope and "
                                  "Intercept, LUT sequences) are malformed.") from err
        if not np.isfinite(values).all():
            raise PneumoLensError("The DICOM header's Rescale Slope (0028,1053) or Intercept (0028,1052) makes "
                                  "the pixel values infinite or undefined.")
        film = DicomFilm(values, image.photometric == "MONOCHROME1", file_windows(dataset), voi_lut, fields)
    film.fields["Window"] = film.default_window_name()
    return film


def file_windows(dataset) -> list[Window]:
    """The windows the file stores (Window Center and Width may hold several), named by their explanation
    where the file gives one. Malformed or non-positive ones are left out: the film still opens."""
    try:
        centres, widths = dataset.get("WindowCenter"), dataset.get("WindowWidth")
        explanations = dataset.get("WindowCenterWidthExplanation")
    except Exception:  # a window that does not parse: the film opens at its full range
        return []
    if centres is None or widths is None:
        return []
    explanations = _as_list(explanations) if explanations else []
    windows = []
    for index, (centre, width) in enumerate(zip(_as_list(centres), _as_list(widths))):
        try:
            centre, width = float(centre), float(width)
        except (TypeError, ValueError):
            continue
        if width >= 1 and np.isfinite(centre) and np.isfinite(width):
            explained = index < len(explanations) and str(explanations[index]).strip()
            windows.append(Window(centre, width, str(explanations[index]).strip()[:40] if explained
                                  else f"File window {index + 1}"))
    return windows


def _as_list(value) -> list:
    from pydicom.multival import MultiValue

    return list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]


# Header fields shown beside a preview: how the image was made and encoded, nothing that names a patient,
# a person, a place or a date.
DESCRIBED_FIELDS = ("Modality", "BodyPartExamined", "ViewPosition", "PhotometricInterpretation", "BitsStored",
                    "Rows", "Columns")


def described_fields(dataset, syntax, image: PixelModule) -> dict[str, str]:
    """What the preview lists of a film: `DESCRIBED_FIELDS`, the transfer syntax by name, the pixel spacing
    where the file has one, and which frame is analysed (the window used is added by `_film`)."""
    fields = {}
    for name in DESCRIBED_FIELDS:
        try:
            value = dataset.get(name)
        except Exception:  # a descriptive field that does not parse is left out, not refused
            continue
        if value not in (None, ""):
            fields[name] = str(value)[:64]
    fields["Transfer syntax"] = dicom_codecs.syntax_name(syntax)
    spacing = _pixel_spacing(dataset)
    if spacing:
        fields["Pixel spacing"] = spacing
    if image.frames > 1:
        fields["Frame"] = f"1 of {image.frames} (the first is analysed)"
    return fields


def _pixel_spacing(dataset) -> str | None:
    for keyword, where in (("PixelSpacing", ""), ("ImagerPixelSpacing", " at the detector")):
        try:
            value = dataset.get(keyword)
            if value is not None and len(value) == 2:
                return f"{float(value[0]):g} x {float(value[1]):g} mm{where}"
        except Exception:  # malformed spacing: not shown
            continue
    return None


def _where_it_breaks(data: bytes, syntax, offset: int) -> str:
    """Where a data set stops parsing (after which element), for a person to name in a bug report."""
    from pydicom.filereader import data_element_generator

    if syntax == dicom_codecs.uid.DeflatedExplicitVRLittleEndian:
        return "the deflated data set is damaged."
    stream = io.BytesIO(data)
    stream.seek(offset)
    last = None
    try:
        for element in data_element_generator(stream, syntax.is_implicit_VR, syntax.is_little_endian):
            last = element.tag
    except Exception:  # the break we are looking for
        pass
    if last is None:
        return "its first element is malformed, or the file ends inside it (is the file complete?)."
    return f"the element after {_element_name(last)} is malformed, or the file ends inside it (is the file complete?)."


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
        try:
            chunk = inflater.decompress(pending, INFLATE_STEP)
        except zlib.error as err:
            raise PneumoLensError("The DICOM file says its data set is deflated, but it is not valid deflate data: "
                                  "the file is damaged, or its Transfer Syntax UID (0002,0010) is wrong.") from err
        total += len(chunk)
        if total > MAX_INFLATED_BYTES:
            raise PneumoLensError(
                f"The deflated DICOM file expands to more than {MAX_INFLATED_BYTES // 2**20} MB; it is refused.")
        pending = inflater.unconsumed_tail
        if not chunk and not pending:
            break


def _check_dimensions(image, max_pixels: int) -> None:
    rows, columns, frames, samples = image.rows, image.columns, image.frames, image.samples
    if rows * columns * frames * samples > max_pixels:
        raise PneumoLensError(
            f"The DICOM image is too large: {columns}x{rows} pixels x {frames} frame(s) x {samples} sample(s); "
            f"at most {max_pixels:,} values are accepted.")


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * np.float32(255.0 / (high - low))).astype(np.uint8)
