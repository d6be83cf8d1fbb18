"""The decoders of compressed DICOM pixel data, and what a compressed frame says of itself.

pydicom decodes compressed films through plugins. Those it knows are found by themselves: GDCM
(`python-gdcm`, BSD) for JPEG Lossless, JPEG-LS, JPEG 2000 and RLE; `pylibjpeg-openjpeg` (MIT) and
Pillow for JPEG 2000; `pyjpegls` (MIT) for JPEG-LS; Pillow for 8-bit JPEG. None that pydicom offers
decodes 12-bit JPEG Extended without a GPL library (`pylibjpeg-libjpeg`), so `register` adds one
more plugin, libjpeg-turbo through `imagecodecs` (BSD), for that syntax only.

Before any decoder runs, `check_codestream` reads the frame's own header (JPEG SOF, JPEG-LS SOF55,
JPEG 2000 SIZ): a damaged or hostile stream that claims far more pixels than the DICOM header would
otherwise make the decoder allocate them.
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
DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("imagecodecs",)}

_JPEG_SOI = b"\xff\xd8"
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "


def register() -> None:
    """Add the 12-bit JPEG Extended plugin to pydicom's decoder for that syntax, once."""
    from pydicom.pixels.decoders.base import get_decoder

    decoder = get_decoder(uid.JPEGExtended12Bit)
    if PLUGIN_LABEL not in decoder._available and PLUGIN_LABEL not in decoder._unavailable:
        decoder.add_plugin(PLUGIN_LABEL, (__name__, "decode_frame"))


def is_available(syntax: str) -> bool:
    """pydicom's plugin interface: whether this plugin can decode `syntax` here."""
    return syntax in DECODER_DEPENDENCIES and importlib.util.find_spec("imagecodecs") is not None


def decode_frame(src: bytes, runner) -> bytes:
    """pydicom's plugin interface: one grey JPEG Extended frame (8 or 12 bits) as native-endian samples.
    Colour frames are left to the other plugins (a NotImplementedError passes them on)."""
    import imagecodecs

    if runner.samples_per_pixel != 1:
        raise NotImplementedError("the imagecodecs plugin decodes grey frames only")
    frame = imagecodecs.jpeg8_decode(src)
    runner.set_option("bits_allocated", 8 if frame.dtype == np.uint8 else 16)
    return frame.tobytes()


def decoder_names(syntax: str) -> list[str]:
    """The plugins that could decode `syntax` here (none for a syntax pydicom cannot decode)."""
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return sorted(get_decoder(syntax)._available)
    except NotImplementedError:
        return []


def check_codestream(frame: bytes, syntax: str, rows: int, columns: int) -> None:
    """Refuse a compressed frame whose own header is unreadable or names another size than the DICOM
    header's Rows x Columns. Raises `PneumoLensError` naming the compression."""
    name = syntax_name(syntax)
    if syntax in JPEG_2000_SYNTAXES:
        size = _j2k_size(frame)
    elif syntax in (*JPEG_SYNTAXES, *JPEG_LS_SYNTAXES):
        size = _jpeg_size(frame)
    else:
        return
    if size is None:
        raise PneumoLensError(f"The {name} pixel data does not start with a valid {_family(syntax)} header: "
                              "the compressed data is damaged.")
    if size != (rows, columns):
        raise PneumoLensError(f"The {name} pixel data describes a {size[1]}x{size[0]} image, but the DICOM header "
                              f"says {columns}x{rows}: the compressed data is damaged.")


def syntax_name(syntax: str) -> str:
    """A transfer syntax as people name it ('JPEG Lossless, Non-Hierarchical, ...'), or its UID."""
    name = uid.UID(str(syntax)).name
    return name or str(syntax)


def _family(syntax: str) -> str:
    if syntax in JPEG_2000_SYNTAXES:
        return "JPEG 2000"
    return "JPEG-LS" if syntax in JPEG_LS_SYNTAXES else "JPEG"


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    from pydicom.pixels.utils import _get_jpg_parameters

    if not frame.startswith(_JPEG_SOI):
        return None
    parameters = _get_jpg_parameters(frame)
    if "height" not in parameters or "width" not in parameters:
        return None
    return parameters["height"], parameters["width"]


def _j2k_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) of the image area in a JPEG 2000 codestream's SIZ segment (ISO/IEC 15444-1 A.5.1)."""
    offset = _jp2_codestream_offset(frame) if frame.startswith(_JP2_SIGNATURE) else 0
    if offset is None or frame[offset:offset + 4] != _J2K_SOC_SIZ or len(frame) < offset + 24:
        return None
    width, height, x_origin, y_origin = struct.unpack(">IIII", frame[offset + 8:offset + 24])
    if width <= x_origin or height <= y_origin:
        return None
    return height - y_origin, width - x_origin


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
