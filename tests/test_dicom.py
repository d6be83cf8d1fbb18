"""DICOM films as hospitals export them: every common transfer syntax decoded to the same pixels as its
uncompressed twin, the depth kept until display, windows a person can choose, and what cannot be read
refused by name."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import uid
from pydicom.data import get_testdata_file

from pneumolens.dicom import Window, read_film
from pneumolens.errors import PneumoLensError
from pneumolens.images import ImageDecodeError, describe_file, load_image
from tests.dicom_films import NEAR, SYNTAXES, film_dicom, twelve_bit

PYDICOM_SAMPLES = Path(pydicom.data.__file__).parent / "test_files"
MAX_PIXELS = 50_000_000
# What a refusal must never show: a Python exception's class name or its raw text.
EXCEPTION_TEXT = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)*(?:Error|Exception)\b|Traceback|invalid literal|"
                            r"object has no attribute|NoneType")
# The pydicom samples that are damaged on purpose (pydicom's own tests say so), each refused by name.
DAMAGED_SAMPLES = {
    "JPEG2000-embedded-sequence-delimiter.dcm": "JPEG 2000 Image Compression pixel data describes a",
    "MR_truncated.dcm": "fewer than one 64x64 frame",
    "badVR.dcm": r"Number of Frames \(0028,0008\) element is malformed: '1A'",
    "nested_priv_SQ.dcm": r"no Rows \(0028,0010\) element",
    "meta_missing_tsyntax.dcm": r"no Transfer Syntax UID \(0002,0010\)",
}
# The syntaxes of the issue that every image-bearing sample of must decode.
COMMON_SYNTAXES = {uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian,
                   uid.DeflatedExplicitVRLittleEndian, uid.RLELossless, uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit,
                   uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEGLSNearLossless, uid.JPEG2000Lossless, uid.JPEG2000}
# Compressed samples and their uncompressed twins (same pixels), as pydicom ships them.
TWINS = [("MR_small_RLE.dcm", "MR_small.dcm"), ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
         ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"), ("MR_small_implicit.dcm", "MR_small.dcm"),
         ("MR_small_bigendian.dcm", "MR_small.dcm"), ("liver_expb_1frame.dcm", "liver_1frame.dcm"),
         ("rtdose_rle_1frame.dcm", "rtdose_1frame.dcm"), ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm"),
         ("JPEG-lossy.dcm", "JPGExtended.dcm")]


def _image_bearing_samples() -> dict[str, uid.UID]:
    samples = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(PYDICOM_SAMPLES.glob("*.dcm")):
            try:
                dataset = pydicom.dcmread(path, stop_before_pixels=False)
            except Exception:  # pydicom's samples of files that are not DICOM Part 10
                continue
            if "PixelData" in dataset:
                samples[path.name] = dataset.file_meta.get("TransferSyntaxUID")
    return samples


SAMPLES = _image_bearing_samples()


def _film(name: str):
    return read_film(Path(get_testdata_file(name)).read_bytes(), MAX_PIXELS)


def test_the_samples_cover_every_common_syntax():
    assert COMMON_SYNTAXES <= set(SAMPLES.values())
    assert set(DAMAGED_SAMPLES) <= set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_image_bearing_pydicom_sample_decodes_or_is_refused_by_name(name):
    path = PYDICOM_SAMPLES / name
    if name in DAMAGED_SAMPLES:
        with pytest.raises(ImageDecodeError, match=DAMAGED_SAMPLES[name]) as caught:
            load_image(str(path))
        assert not EXCEPTION_TEXT.search(str(caught.value))
        return
    image = load_image(str(path))
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    assert image.mode == "RGB" and image.size == (dataset.Columns, dataset.Rows)


@pytest.mark.parametrize("compressed, twin", TWINS, ids=[pair[0] for pair in TWINS])
def test_compressed_samples_decode_to_their_uncompressed_twins_pixels(compressed, twin):
    assert np.array_equal(_film(compressed).values, _film(twin).values)


def test_twelve_bit_jpeg_extended_matches_pydicoms_reference_values():
    values = _film("JPGExtended.dcm").values
    assert values.shape == (1024, 256) and values[420, 140] == 244 and values[230, 120] == 95


def test_jpeg_ls_near_lossless_samples_stay_within_their_bound():
    reference = _film("SC_rgb_rle.dcm").values.astype(int)
    for name in ("SC_rgb_jls_lossy_line.dcm", "SC_rgb_jls_lossy_sample.dcm"):
        difference = np.abs(_film(name).values.astype(int) - reference)
        assert 0 < difference.max() <= 2  # the samples' NEAR is 2


@pytest.fixture(scope="module")
def chest_film(real_images) -> np.ndarray:
    """A real radiograph, small (pydicom's RLE encoder is Python), over 12 bits."""
    grey = Image.open(real_images["PNEUMONIA"][0]).convert("L")
    return twelve_bit(np.asarray(grey.resize((256, 200), Image.BILINEAR)))


@pytest.mark.parametrize("syntax_name", sorted(SYNTAXES))
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_a_real_film_in_every_syntax_decodes_as_its_uncompressed_twin(chest_film, syntax_name, photometric):
    _, lossless = SYNTAXES[syntax_name]
    film = read_film(film_dicom(chest_film, syntax_name, photometric), MAX_PIXELS)
    difference = np.abs(film.values - chest_film)
    if lossless:
        assert difference.max() == 0
    elif syntax_name == "jpeg-ls-near-lossless":
        assert 0 < difference.max() <= NEAR
    else:
        assert difference.mean() < 40  # of 4096 levels: lossy, yet the same film
    assert film.inverted == (photometric == "MONOCHROME1")
    displayed = np.asarray(film.display(), dtype=int)
    twin = np.asarray(read_film(film_dicom(chest_film, "explicit", photometric), MAX_PIXELS).display(), dtype=int)
    assert np.abs(displayed - twin).mean() < (0.01 if lossless else 3)


def test_depth_is_kept_until_the_window_is_chosen(chest_film):
    film = read_film(film_dicom(chest_film, "jpeg-lossless-sv1", window=(2048, 4096)), MAX_PIXELS)
    assert film.values.dtype == np.float32 and len(np.unique(film.values)) > 256
    narrow = np.asarray(film.display(Window(1000, 400, "narrow")))
    wide = np.asarray(film.display())
    assert (narrow == 255).mean() > (wide == 255).mean() + 0.3  # a narrow window saturates most of a chest
    assert film.fields["Window"] == "File window 1 (level 2048, width 4096)"


def test_lung_window_spreads_the_dark_side_of_the_film(chest_film):
    for photometric, values in (("MONOCHROME2", chest_film), ("MONOCHROME1", 4095 - chest_film)):
        film = read_film(film_dicom(values, "explicit", photometric), MAX_PIXELS)
        shown = np.asarray(film.display(film.lung_window()), dtype=float)[20:-20, 25:-25]
        full = np.asarray(film.display(film.full_range()), dtype=float)[20:-20, 25:-25]
        # The dark side of the film (between its 2nd and 70th percentile) spans the whole grey scale, about
        # twice the greys it gets at the full range; the bright side saturates.
        low, high = np.percentile(full, [2, 70])
        dark = (full >= low) & (full <= high)
        assert np.ptp(shown[dark]) > 1.5 * np.ptp(full[dark]) and np.ptp(shown[dark]) >= 250
        assert (shown == 255).mean() > 0.2
        assert [window.name for window in film.presets()] == ["Lung", "Full range"]


def test_ct_lung_window_is_in_hounsfield_units():
    ct = _film("CT_small.dcm")
    assert ct.lung_window() == Window(-600.0, 1500.0, "Lung")


def test_preview_says_what_was_read(tmp_path, chest_film):
    path = tmp_path / "IM0001"
    path.write_bytes(film_dicom(chest_film, "jpeg-ls-lossless", "MONOCHROME1", window=(2000, 3000)))
    fields = describe_file(path)
    assert fields["Transfer syntax"] == "JPEG-LS Lossless Image Compression"
    assert fields["Modality"] == "CR" and fields["PhotometricInterpretation"] == "MONOCHROME1"
    assert fields["BitsStored"] == "12" and fields["Pixel spacing"] == "0.143 x 0.143 mm at the detector"
    assert fields["Window"] == "File window 1 (level 2000, width 3000)"
    assert "Frame" not in fields
    multi = _film("SC_rgb_rle_2frame.dcm").fields
    assert multi["Frame"] == "1 of 2 (the first is analysed)"


def _dataset(data: bytes):
    return pydicom.dcmread(io.BytesIO(data))


def _saved(dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def test_an_unsupported_syntax_is_named():
    dataset = _dataset(film_dicom(np.zeros((8, 8)), "explicit"))
    dataset.file_meta.TransferSyntaxUID = uid.MPEG2MPML
    dataset.PixelData = pydicom.encaps.encapsulate([bytes(64)])
    with pytest.raises(ImageDecodeError, match="MPEG2 Main Profile / Main Level, which this server does not decode"):
        load_image(_saved(dataset))


def test_a_codestream_that_claims_another_size_is_refused_before_decoding(chest_film):
    dataset = _dataset(film_dicom(chest_film, "jpeg-2000-lossless"))
    dataset.Rows = 100
    with pytest.raises(ImageDecodeError, match="describes a 256x200 image, but the DICOM header says 256x100"):
        load_image(_saved(dataset))


def test_a_damaged_codestream_names_the_compression_and_the_decoders_tried(chest_film):
    data = bytearray(film_dicom(chest_film, "jpeg-lossless-sv1"))
    start = data.index(b"\xff\xda")  # the start of scan: damage the entropy-coded data after it
    data[start + 20:start + 4000] = bytes(3980)
    data = bytes(data[:start + 4000]) + b"\xff\xd9" + bytes(data[-8:])
    try:
        load_image(data)
    except ImageDecodeError as refusal:
        message = str(refusal)
        assert "JPEG Lossless" in message and not EXCEPTION_TEXT.search(message)
    # A decoder may also return an image from a damaged stream: either way, no exception escapes.


def test_a_malformed_element_is_named():
    dataset = _dataset(film_dicom(np.zeros((8, 8)), "explicit"))
    dataset["BitsStored"].value = 20
    with pytest.raises(ImageDecodeError, match=r"Bits Stored \(0028,0101\) 20"):
        load_image(_saved(dataset))


def test_a_header_cut_short_is_named_by_the_element_before_the_break():
    data = film_dicom(np.zeros((8, 8)), "explicit")
    position = data.index(b"\x28\x00\x10\x00")  # Rows (0028,0010), explicit little endian
    for cut in (position + 5, len(data) - 40):  # inside Rows; inside the pixel data
        with pytest.raises(ImageDecodeError) as caught:
            load_image(data[:cut])
        message = str(caught.value)
        assert "is the file complete?" in message and not EXCEPTION_TEXT.search(message)


def test_pydicom_errors_never_reach_the_message():
    with pytest.raises(PneumoLensError) as caught:
        read_film(Path(get_testdata_file("badVR.dcm")).read_bytes(), MAX_PIXELS)
    assert not EXCEPTION_TEXT.search(str(caught.value))


def test_seeded_mutations_end_in_an_image_or_a_refusal_in_words(chest_film):
    """A small slice of benchmarks/dicom_fuzz.py (which runs 1,200 cases, each in a worker process) in-process:
    every case ends in an image or a refusal that names the problem."""
    from pneumolens.dicom import UNNAMED_DAMAGE
    from tests.dicom_films import MUTATIONS, fuzz_cases, seed_films

    outcomes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, kind, data in fuzz_cases(seed_films(chest_film[::2, ::2] // 16), 8 * len(MUTATIONS), seed=1):
            try:
                load_image(data)
                outcomes[name] = "image"
            except ImageDecodeError as refusal:
                assert not EXCEPTION_TEXT.search(str(refusal)), (name, str(refusal))
                outcomes[name] = "unnamed" if str(refusal) == UNNAMED_DAMAGE else "refusal"
    counts = {outcome: list(outcomes.values()).count(outcome) for outcome in ("image", "refusal", "unnamed")}
    assert counts["image"] > 10 and counts["refusal"] > 40 and counts["unnamed"] <= 2, counts


def test_gdcm_is_never_a_decoder():
    """GDCM ends the process on a damaged JPEG 2000 frame (an uncaught C++ exception): it must not be tried,
    installed or not."""
    from pydicom.pixels.decoders.base import get_decoder

    from pneumolens.dicom_codecs import SUPPORTED_SYNTAXES

    for syntax in SUPPORTED_SYNTAXES:
        decoder = get_decoder(syntax)
        assert "gdcm" not in decoder._available and "gdcm" not in decoder._unavailable
    assert "imagecodecs" in get_decoder(uid.JPEGLossless)._available


def test_pydicom_internals_are_checked_by_name():
    from pneumolens.dicom_codecs import A_DECODER, check_pydicom

    check_pydicom()  # the pinned pydicom has every one
    with pytest.raises(PneumoLensError, match=r"lacks .*pydicom.filereader._gone, a pydicom Decoder._also_gone\. Pin"):
        check_pydicom((("pydicom.filereader", "_gone"), (A_DECODER, "_also_gone"), ("pydicom.filereader", "read_preamble")))
