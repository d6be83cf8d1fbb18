import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pneumolens.images import ImageDecodeError, load_image


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares width x height pixels: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_grayscale_jpeg_becomes_rgb_with_equal_channels(real_images):
    image = load_image(real_images["NORMAL"][0])
    assert image.mode == "RGB"
    pixels = np.asarray(image)
    assert np.abs(pixels[..., 0].astype(int) - pixels[..., 2]).max() <= 2


def test_16_bit_png_is_rescaled_by_its_range():
    ramp = np.linspace(1000, 5000, 64 * 64).reshape(64, 64).astype(np.uint16)
    image = load_image(_encoded(Image.fromarray(ramp), "PNG"))
    pixels = np.asarray(image)[..., 0]
    assert image.mode == "RGB" and pixels.min() == 0 and pixels.max() == 255
    assert np.all(np.diff(pixels.ravel().astype(int)) >= 0)


def test_rgba_composites_on_black():
    rgba = Image.new("RGBA", (8, 8), (200, 100, 50, 0))
    rgba.putpixel((0, 0), (200, 100, 50, 255))
    pixels = np.asarray(load_image(rgba))
    assert tuple(pixels[0, 0]) == (200, 100, 50) and tuple(pixels[4, 4]) == (0, 0, 0)


def test_cmyk_jpeg_is_converted():
    cmyk = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # no ink: white
    image = load_image(_encoded(cmyk, "JPEG"))
    assert image.mode == "RGB" and np.asarray(image).mean() > 240


def test_exif_orientation_is_applied():
    wide = Image.new("L", (40, 20), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = load_image(_encoded(wide, "JPEG", exif=exif))
    assert image.size == (20, 40)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("L", (10, 10), value) for value in (10, 250)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    image = load_image(buffer.getvalue())
    assert image.size == (10, 10) and np.asarray(image).mean() < 50


@pytest.mark.parametrize("size", [(1, 1), (10, 3000), (3000, 10)])
def test_extreme_aspect_ratios_decode(size):
    assert load_image(Image.new("L", size, 128)).size == size


@pytest.mark.parametrize("payload, message", [
    (b"", "empty"),
    (b"%PDF-1.4 this is not an image", "not an image"),
    (_png_header_only(30000, 30000), "too large"),
    (_png_header_only(9000, 9000), "too large: 9000x9000 pixels"),
])
def test_bad_bytes_get_a_clear_error(payload, message):
    with pytest.raises(ImageDecodeError, match=message):
        load_image(payload)


def test_truncated_jpeg_gets_a_clear_error(real_images):
    data = real_images["PNEUMONIA"][0].read_bytes()
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        load_image(data[: len(data) // 3])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageDecodeError, match="No such image file: .*missing.png"):
        load_image(tmp_path / "missing.png")


def test_arrays_of_other_shapes_are_refused():
    with pytest.raises(ImageDecodeError, match="shape"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))


def _dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", window=None, with_pixels=True) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CR"
    if with_pixels:
        dataset.Rows, dataset.Columns = pixels.shape
        dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
        dataset.PixelData = pixels.astype(np.uint16).tobytes()
        if window:
            dataset.WindowCenter, dataset.WindowWidth = window
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_dicom_monochrome1_is_inverted_and_windowed():
    ramp = np.tile(np.linspace(0, 4000, 64), (32, 1))
    monochrome2 = np.asarray(load_image(_dicom(ramp)))[..., 0]
    monochrome1 = np.asarray(load_image(_dicom(ramp, "MONOCHROME1")))[..., 0]
    assert monochrome2[0, 0] == 0 and monochrome2[0, -1] == 255
    assert monochrome1[0, 0] == 255 and monochrome1[0, -1] == 0
    # A window of 1000 +/- 500 saturates everything above 1500: most of the ramp is white.
    windowed = np.asarray(load_image(_dicom(ramp, window=(1000, 1000))))[..., 0]
    assert windowed[0, 0] == 0 and (windowed[0] == 255).mean() > 0.6


def test_dicom_without_pixel_data_is_named():
    with pytest.raises(ImageDecodeError, match="no pixel data"):
        load_image(_dicom(np.zeros((4, 4)), with_pixels=False))


def test_dicom_from_a_real_radiograph_keeps_its_size(real_images):
    pixels = np.asarray(Image.open(real_images["NORMAL"][0]).convert("L"), dtype=np.float64) * 16
    image = load_image(_dicom(pixels))
    assert image.size == (pixels.shape[1], pixels.shape[0]) and image.mode == "RGB"


def _deflated_dicom_bomb(inflated_zeros: int) -> bytes:
    """A valid 64x64 Deflated Explicit VR Little Endian DICOM plus a private element of zeros, written
    in a streaming way so the test itself never holds the inflated bytes."""
    import zlib

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    plain = _dicom(np.tile(np.linspace(0, 4000, 64), (64, 1)))
    from pydicom import dcmread

    dataset = dcmread(io.BytesIO(plain))
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, dataset)
    # A private element (7FE1,1010) OB after the pixel data, the last element of the data set.
    header = (0x7FE1).to_bytes(2, "little") + (0x1010).to_bytes(2, "little") + b"OB\0\0" \
        + inflated_zeros.to_bytes(4, "little")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = [compressor.compress(body.getvalue() + header)]
    zeros = bytes(2**20)
    for _ in range(inflated_zeros // len(zeros)):
        deflated.append(compressor.compress(zeros))
    deflated.append(compressor.flush())
    meta = DicomBytesIO()
    write_file_meta_info(meta, dataset.file_meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + meta.getvalue() + b"".join(deflated)


def test_deflated_dicom_bomb_is_refused_before_it_is_inflated():
    import resource
    import time

    bomb = _deflated_dicom_bomb(512 * 2**20)
    assert len(bomb) < 2 * 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="expands to more than"):
        load_image(bomb)
    peak_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert peak_growth_mb < 100 and time.perf_counter() - started < 30


def test_small_deflated_dicom_still_reads():
    image = load_image(_deflated_dicom_bomb(2**20))
    assert image.size == (64, 64) and np.asarray(image)[0, -1, 0] == 255


def test_dicom_frames_count_against_the_pixel_cap_and_only_the_first_frame_is_decoded():
    from pydicom import dcmread

    dataset = dcmread(io.BytesIO(_dicom(np.zeros((32, 32)))))
    frames = np.stack([np.full((32, 32), value, np.uint16) for value in (0, 4000, 2000)])
    frames[0, :, 16:] = 4000  # frame 0: half dark, half bright
    dataset.NumberOfFrames, dataset.PixelData = 3, frames.tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    with pytest.raises(ImageDecodeError, match="32x32 pixels x 3 frame"):
        load_image(buffer.getvalue(), max_pixels=32 * 32 * 2)
    first = np.asarray(load_image(buffer.getvalue()))[..., 0]
    assert first[0, 0] == 0 and first[0, -1] == 255


@pytest.mark.parametrize("payload, message", [
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image in a supported format"),
    (b"8BPS\x00\x01" + bytes(20), "not an image in a supported format"),
    (b"SIMPLE  =                    T" + bytes(50), "not an image in a supported format"),
])
def test_formats_we_do_not_document_are_refused(payload, message):
    with pytest.raises(ImageDecodeError, match=message):
        load_image(payload)


def test_error_messages_do_not_show_server_paths(tmp_path):
    broken = tmp_path / "secret-folder" / "scan.png"
    broken.parent.mkdir()
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    with pytest.raises(ImageDecodeError) as caught:
        load_image(str(broken))
    assert "scan.png" in str(caught.value) and "secret-folder" not in str(caught.value)


def test_a_gif_cut_inside_its_first_frame_is_a_clear_error():
    stub = b"GIF89a\x10\x00\x10\x00\x80\x00\x00" + bytes(6) + b",\x00\x00\x00\x00\x10\x00\x10\x00\x00\x02"
    with pytest.raises(ImageDecodeError, match="could not be decoded|not an image"):
        load_image(stub)
