"""DICOM films written in each transfer syntax a hospital archive exports, from a grey array: what the
DICOM tests and benchmarks/dicom_fuzz.py decode. Encoders: imagecodecs (JPEG Lossless, 12-bit JPEG
Extended, JPEG-LS, JPEG 2000), pydicom (RLE, deflate, big endian)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
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
    # The same film, the same UID: a seeded fuzz run mutates the same bytes each time.
    instance = uid.generate_uid(entropy_srcs=[syntax_name, photometric, str(int(pixels.sum())), str(pixels.shape)])
    dataset = _header(pixels.shape, syntax, photometric, bits_stored, window, pixel_spacing, instance)
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


def _header(shape, syntax, photometric, bits_stored, window, pixel_spacing, instance) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = instance
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


# ---------------------------------------------------------------------------------------------------------------
# Seeded mutations of real DICOM files: what the fuzz test and benchmarks/dicom_fuzz.py feed `load_image`.

ABSURD_NUMBERS = (0, 1, 3, 7, 33, 255, 4097, 32767, 65535)
VR_CODES = (b"US", b"SS", b"UL", b"OB", b"OW", b"SQ", b"UN", b"IS", b"DS", b"CS", b"AT", b"FD", b"XX", b"\x00\x00")
MUTATIONS = ("truncate", "header-bytes", "pixel-bytes", "element-length", "element-vr", "absurd-size",
             "absurd-bits", "absurd-frames", "photometric", "transfer-syntax", "pixel-data-cut", "append-junk")


def mutated(seed_file: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One mutation of `seed_file` (a valid DICOM Part 10 file) of the named kind."""
    data = bytearray(seed_file)
    pixel_start = _pixel_data_offset(seed_file)
    if kind == "truncate":
        return bytes(data[:int(rng.integers(132, len(data)))])
    if kind in ("header-bytes", "pixel-bytes"):
        low, high = (132, pixel_start) if kind == "header-bytes" else (pixel_start, len(data))
        for position in rng.integers(low, max(high, low + 1), int(rng.integers(1, 9))):
            if position < len(data):
                data[position] = int(rng.integers(0, 256))
        return bytes(data)
    if kind in ("element-length", "element-vr"):
        return _mutated_element(data, kind, rng, pixel_start)
    if kind == "pixel-data-cut":  # the pixel data's own length kept, its bytes cut short
        return bytes(data[:pixel_start + int(rng.integers(0, max(1, len(data) - pixel_start)))])
    if kind == "append-junk":
        return bytes(data) + rng.bytes(int(rng.integers(1, 4096)))
    return _mutated_header(seed_file, kind, rng)


def _mutated_header(seed_file: bytes, kind: str, rng: np.random.Generator) -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(seed_file))
    if kind == "absurd-size":
        dataset.Rows, dataset.Columns = (int(rng.choice(ABSURD_NUMBERS)) for _ in range(2))
    elif kind == "absurd-bits":
        dataset.BitsAllocated = int(rng.choice((0, 1, 8, 12, 16, 32, 64)))
        dataset.BitsStored = int(rng.choice((0, 1, 7, 8, 12, 16, 17, 33)))
        dataset.HighBit = int(rng.integers(0, 40))
    elif kind == "absurd-frames":
        dataset.NumberOfFrames = str(int(rng.choice((0, 2, 3, 1000, 99999999))))
        dataset.SamplesPerPixel = int(rng.choice((1, 3, 4)))
    elif kind == "photometric":
        dataset.PhotometricInterpretation = str(rng.choice(("RGB", "YBR_FULL_422", "PALETTE COLOR", "HSV", "")))
    elif kind == "transfer-syntax":  # the data set's bytes as they were: only the meta header lies
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        others = [syntax for syntax, _ in SYNTAXES.values() if syntax != dataset.file_meta.TransferSyntaxUID]
        dataset.file_meta.TransferSyntaxUID = others[int(rng.integers(len(others)))]
        meta = DicomBytesIO()
        write_file_meta_info(meta, dataset.file_meta, enforce_standard=True)
        return seed_file[:132] + meta.getvalue() + seed_file[_meta_end(seed_file):]
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _mutated_element(data: bytearray, kind: str, rng: np.random.Generator, pixel_start: int) -> bytes:
    """Overwrite a random explicit-VR element's VR code or length field (found by its VR bytes)."""
    candidates = [offset for offset in range(132, min(pixel_start, len(data)) - 8)
                  if bytes(data[offset + 4:offset + 6]) in VR_CODES[:12]]
    if not candidates:
        return bytes(data)
    offset = candidates[int(rng.integers(len(candidates)))]
    if kind == "element-vr":
        data[offset + 4:offset + 6] = VR_CODES[int(rng.integers(len(VR_CODES)))]
    else:
        length = int(rng.choice((0, 1, 0xFFFF, 0xFFFFFFFF, int(rng.integers(0, 2**32)))))
        data[offset + 6:offset + 8] = (length & 0xFFFF).to_bytes(2, "little")
    return bytes(data)


def _pixel_data_offset(data: bytes) -> int:
    """Where the (7FE0,0010) Pixel Data element starts (little endian), else the end."""
    position = data.rfind(b"\xe0\x7f\x10\x00")
    return position if position > 0 else len(data)


def _meta_end(data: bytes) -> int:
    """The end of the file meta information: its group length (0002,0000) UL follows the preamble."""
    return 132 + 12 + int.from_bytes(data[140:144], "little")


def fuzz_cases(seed_files: dict[str, bytes], count: int, seed: int = 0):
    """`count` (name, bytes) mutations, each kind in turn over the seed files, seeded."""
    rng = np.random.default_rng(seed)
    names = sorted(seed_files)
    for index in range(count):
        kind = MUTATIONS[index % len(MUTATIONS)]
        name = names[(index // len(MUTATIONS)) % len(names)]
        yield f"{index:05d} {kind} of {name}", kind, mutated(seed_files[name], kind, rng)


def seed_films(grey: np.ndarray) -> dict[str, bytes]:
    """A small film in every syntax of `SYNTAXES` (MONOCHROME2), one MONOCHROME1, and pydicom's 12-bit JPEG
    Extended, lossless JPEG colour and JPEG 2000 samples: what the mutations start from."""
    from pydicom.data import get_testdata_file

    films = {name: film_dicom(twelve_bit(grey), name) for name in SYNTAXES}
    films["monochrome1"] = film_dicom(4095 - twelve_bit(grey), "jpeg-lossless-sv1", "MONOCHROME1")
    for sample in ("JPGExtended.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        with open(get_testdata_file(sample), "rb") as file:
            films[sample] = file.read()
    return films
