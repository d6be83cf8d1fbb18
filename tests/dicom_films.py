"""DICOM films written in each transfer syntax a hospital archive exports, from a grey array: what the
DICOM tests and benchmarks/dicom_fuzz.py decode. Encoders: imagecodecs (JPEG Lossless, 12-bit JPEG
Extended, JPEG-LS, JPEG 2000), pydicom (RLE, deflate, big endian)."""

from __future__ import annotations

import io

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

# name: (transfer syntax, lossless). The JPEG Lossless ones carry their predictor (selection value).
SYNTAXES = {
    "explicit": (uid.ExplicitVRLittleEndian, True),
    "implicit": (uid.ImplicitVRLittleEndian, True),
    "big-endian": (uid.ExplicitVRBigEndian, True),
    "deflate": (uid.DeflatedExplicitVRLittleEndian, True),
    "rle": (uid.RLELossless, True),
    "jpeg-lossless-sv1": (uid.JPEGLosslessSV1, True),
    **{f"jpeg-lossless-p{predictor}": (uid.JPEGLossless, True) for predictor in range(2, 8)},
    "jpeg-extended-12bit": (uid.JPEGExtended12Bit, False),
    "jpeg-ls-lossless": (uid.JPEGLSLossless, True),
    "jpeg-ls-near-lossless": (uid.JPEGLSNearLossless, False),
    "jpeg-2000-lossless": (uid.JPEG2000Lossless, True),
    "jpeg-2000": (uid.JPEG2000, False),
}
NEAR = 2  # the JPEG-LS near-lossless bound: no sample moves by more


def film_dicom(pixels: np.ndarray, syntax_name: str, photometric: str = "MONOCHROME2", bits_stored: int = 12,
               window: tuple[float, float] | None = None, pixel_spacing=(0.143, 0.143)) -> bytes:
    """A CR film of unsigned `pixels` (rows x columns, < 2**bits_stored) in the named syntax."""
    syntax, _ = SYNTAXES[syntax_name]
    pixels = np.ascontiguousarray(pixels.astype(np.uint16))
    dataset = _header(pixels.shape, syntax, photometric, bits_stored, window, pixel_spacing)
    if syntax in (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian):
        dataset.PixelData = pixels.tobytes()
    elif syntax == uid.ExplicitVRBigEndian:
        dataset.PixelData = pixels.astype(">u2").tobytes()
    elif syntax == uid.RLELossless:  # pydicom's own encoder, in Python: keep these films small
        dataset.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
        dataset.PixelData = pixels.tobytes()
        dataset.compress(uid.RLELossless, encoding_plugin="pydicom")
    else:
        dataset.PixelData = encapsulate([_codestream(pixels, syntax_name, bits_stored)])
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _codestream(pixels: np.ndarray, syntax_name: str, bits_stored: int) -> bytes:
    import imagecodecs

    if syntax_name.startswith("jpeg-lossless"):
        predictor = 1 if syntax_name.endswith("sv1") else int(syntax_name[-1])
        return imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=predictor, bitspersample=bits_stored)
    if syntax_name == "jpeg-extended-12bit":
        return imagecodecs.jpeg8_encode(pixels, level=95, bitspersample=12)
    if syntax_name.startswith("jpeg-ls"):
        return imagecodecs.jpegls_encode(pixels, level=NEAR if "near" in syntax_name else 0)
    if syntax_name == "jpeg-2000-lossless":
        return imagecodecs.jpeg2k_encode(pixels, level=0, codecformat="J2K", bitspersample=bits_stored)
    return imagecodecs.jpeg2k_encode(pixels, level=40, codecformat="J2K", bitspersample=bits_stored)


def _header(shape, syntax, photometric, bits_stored, window, pixel_spacing) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    meta.TransferSyntaxUID = syntax
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.BodyPartExamined, dataset.ViewPosition = "CR", "CHEST", "PA"
    dataset.Rows, dataset.Columns = shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = \
        16, bits_stored, bits_stored - 1, 0
    if window:
        dataset.WindowCenter, dataset.WindowWidth = window
    if pixel_spacing:
        dataset.ImagerPixelSpacing = list(pixel_spacing)
    return dataset


def twelve_bit(grey: np.ndarray) -> np.ndarray:
    """An 8-bit film spread over 12 bits, with the low bits filled so that lossless coders have work."""
    rng = np.random.default_rng(0)
    return grey.astype(np.uint16) * 16 + rng.integers(0, 16, grey.shape, dtype=np.uint16)
