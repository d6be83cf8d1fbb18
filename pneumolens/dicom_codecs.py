"""The decoders of compressed DICOM pixel data, and what a compressed frame says of itself.

pydicom decodes compressed films through plugins, all permissively licensed here: OpenJPEG
(`pylibjpeg-openjpeg`, MIT/BSD) and Pillow for JPEG 2000; CharLS (`pyjpegls`, MIT/BSD) for JPEG-LS;
Pillow for 8-bit JPEG; pydicom itself for RLE and deflate. For JPEG Lossless and 12-bit JPEG Extended,
pydicom offers only GDCM and the GPL `pylibjpeg-libjpeg`, so `register` adds a plugin of its own:
libjpeg-turbo through `imagecodecs` (BSD). GDCM is taken off every decoder, installed or not: on a
damaged JPEG 2000 frame it ends the whole process (an uncaught C++ exception, found by
benchmarks/dicom_fuzz.py), and a server must outlive any upload.

Before any decoder runs, `check_codestream` reads the frame's own header (JPEG SOF, JPEG-LS SOF55,
JPEG 2000 SIZ): a damaged or hostile stream that claims more pixels or other components than the DICOM
header would otherwise reach the decoder.
"""

from __future__ import annotations

import importlib.util
import struct

import numpy as np
from pydicom import uid

from .errors import PneumoLensError

# The transfer syntaxes a film may arrive in that this server decodes (the tests decode each).
NATIVE_SYNTAXES = (uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian,
                   uid.DeflatedExplicitVRLittleEndian)
JPEG_SYNTAXES = (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1)
JPEG_LS_SYNTAXES = (uid.JPEGLSLossless, uid.JPEGLSNearLossless)
JPEG_2000_SYNTAXES = (uid.JPEG2000Lossless, uid.JPEG2000, uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K)
SUPPORTED_SYNTAXES = (*NATIVE_SYNTAXES, *JPEG_SYNTAXES, *JPEG_LS_SYNTAXES, *JPEG_2000_SYNTAXES, uid.RLELossless)

PLUGIN_LABEL = "imagecodecs"
# pydicom's plugin interface: what the plugin needs, per syntax it may decode.
DECODER_DEPENDENCIES = {syntax: ("imagecodecs",) for syntax in
                        (uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1)}
UNSAFE_PLUGINS = ("gdcm",)

_JPEG_SOI = b"\xff\xd8"
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "


# pydicom's private parts this package relies on (pydicom 3.0, as pinned), as (owner, attribute): checked
# before they are used, so that an upgrade that moves one stops the import with its name instead of failing
# on the first film.
A_DECODER = "a pydicom Decoder"
PYDICOM_INTERNALS = (("pydicom.filereader", "_read_file_meta_info"), ("pydicom.filereader", "read_preamble"),
                     ("pydicom.filereader", "data_element_generator"), ("pydicom.pixels.utils", "_get_jpg_parameters"),
                     ("pydicom.pixels.decoders.base", "get_decoder"), (A_DECODER, "_available"),
                     (A_DECODER, "_unavailable"), (A_DECODER, "add_plugin"), (A_DECODER, "remove_plugin"))


def check_pydicom(internals=PYDICOM_INTERNALS) -> None:
    """Raise `PneumoLensError` naming every internal of `internals` that the installed pydicom lacks."""
    import pydicom

    missing = [f"{owner}.{name}" for owner, name in internals if not hasattr(_owner(owner), name)]
    if missing:
        raise PneumoLensError(f"pydicom {pydicom.__version__} lacks what pneumolens/dicom.py and dicom_codecs.py use: "
                              f"{', '.join(missing)}. Pin the pydicom of requirements.txt, or update them.")


def _owner(name: str):
    if name == A_DECODER:  # its plugin tables are set on each instance
        from pydicom.pixels.decoders.base import get_decoder

        return get_decoder(uid.JPEG2000)
    return importlib.import_module(name)


def register() -> None:
    """Add the imagecodecs plugin to pydicom's JPEG Lossless and JPEG Extended decoders, and take GDCM off
    every decoder; once."""
    from pydicom.pixels.decoders.base import get_decoder

    check_pydicom()

    for syntax in SUPPORTED_SYNTAXES:
        decoder = get_decoder(syntax)
        for label in UNSAFE_PLUGINS:
            if label in decoder._available or label in decoder._unavailable:
                decoder.remove_plugin(label)
        if syntax in DECODER_DEPENDENCIES and PLUGIN_LABEL not in decoder._available \
                and PLUGIN_LABEL not in decoder._unavailable:
            decoder.add_plugin(PLUGIN_LABEL, (__name__, "decode_frame"))


def is_available(syntax: str) -> bool:
    """pydicom's plugin interface: whether this plugin can decode `syntax` here."""
    return syntax in DECODER_DEPENDENCIES and importlib.util.find_spec("imagecodecs") is not None


def decode_frame(src: bytes, runner) -> bytes:
    """pydicom's plugin interface: one JPEG Lossless or JPEG Extended frame as native-endian samples, colour
    interleaved. Lossy colour is left to Pillow (a NotImplementedError passes it on): its colour transform is
    Pillow's to get right."""
    import imagecodecs

    if runner.samples_per_pixel != 1 and runner.transfer_syntax == uid.JPEGExtended12Bit:
        raise NotImplementedError("the imagecodecs plugin decodes grey JPEG Extended frames only")
    frame = imagecodecs.jpeg8_decode(src, colorspace="RGB" if runner.samples_per_pixel == 3 else None)
    expected = (runner.rows, runner.columns) + ((3,) if runner.samples_per_pixel == 3 else ())
    if frame.shape != expected:
        raise ValueError(f"the frame decodes to {frame.shape}, not {expected}")
    runner.set_option("bits_allocated", 8 if frame.dtype == np.uint8 else 16)
    runner.set_option("planar_configuration", 0)
    return frame.tobytes()


def decoder_names(syntax: str) -> list[str]:
    """The plugins that could decode `syntax` here (none for a syntax pydicom cannot decode)."""
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return sorted(get_decoder(syntax)._available)
    except NotImplementedError:
        return []


def check_codestream(frame: bytes, syntax: str, rows: int, columns: int, samples: int) -> None:
    """Refuse a compressed frame whose own header is unreadable or names another size or number of
    components than the DICOM header's Rows x Columns x Samples per Pixel. Raises `PneumoLensError`
    naming the compression."""
    name = syntax_name(syntax)
    if syntax in JPEG_2000_SYNTAXES:
        shape = _j2k_shape(frame)
    elif syntax in (*JPEG_SYNTAXES, *JPEG_LS_SYNTAXES):
        shape = _jpeg_shape(frame)
    else:
        return
    if shape is None:
        raise PneumoLensError(f"The {name} pixel data does not start with a valid {_family(syntax)} header: "
                              "the compressed data is damaged.")
    if shape[:2] != (rows, columns):
        raise PneumoLensError(f"The {name} pixel data describes a {shape[1]}x{shape[0]} image, but the DICOM "
                              f"header says {columns}x{rows}: the compressed data is damaged.")
    if shape[2] != samples:
        raise PneumoLensError(f"The {name} pixel data holds {shape[2]} component(s) a pixel, but the DICOM header's "
                              f"Samples per Pixel (0028,0002) says {samples}: the file is damaged.")


def syntax_name(syntax: str) -> str:
    """A transfer syntax as people name it ('JPEG Lossless, Non-Hierarchical, ...'), or its UID."""
    name = uid.UID(str(syntax)).name
    return name or str(syntax)


def _family(syntax: str) -> str:
    if syntax in JPEG_2000_SYNTAXES:
        return "JPEG 2000"
    return "JPEG-LS" if syntax in JPEG_LS_SYNTAXES else "JPEG"


def _jpeg_shape(frame: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) in a JPEG or JPEG-LS frame header (SOFn or SOF55)."""
    from pydicom.pixels.utils import _get_jpg_parameters

    if not frame.startswith(_JPEG_SOI):
        return None
    parameters = _get_jpg_parameters(frame)
    if not {"height", "width", "components"} <= set(parameters):
        return None
    return parameters["height"], parameters["width"], parameters["components"]


def _j2k_shape(frame: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) of the image area in a JPEG 2000 codestream's SIZ segment
    (ISO/IEC 15444-1 A.5.1)."""
    offset = _jp2_codestream_offset(frame) if frame.startswith(_JP2_SIGNATURE) else 0
    if offset is None or frame[offset:offset + 4] != _J2K_SOC_SIZ or len(frame) < offset + 42:
        return None
    width, height, x_origin, y_origin = struct.unpack(">IIII", frame[offset + 8:offset + 24])
    components, = struct.unpack(">H", frame[offset + 40:offset + 42])
    if width <= x_origin or height <= y_origin:
        return None
    return height - y_origin, width - x_origin, components


def _jp2_codestream_offset(frame: bytes) -> int | None:
    """Where the codestream starts inside a JP2 file (some writers wrap it, against the standard)."""
    offset = 0
    while offset + 8 <= len(frame):
        length, kind = struct.unpack(">I4s", frame[offset:offset + 8])
        if kind == b"jp2c":
            return offset + 8
        if length < 8:
            return None
        offset += length
    return None
