"""Acquisition changes that must not change a diagnosis: framing, burned-in text, exposure, detector and codec.

Each function takes a PIL image and returns a new one of the same size and mode; what it varies is in its
arguments, and any randomness comes from a `random.Random` passed in. Training augmentation
(`augmentation.py`) draws these arguments at random, the stress suite (`stress.py`) fixes them, so the
model is trained and tested on the same kinds of change.
"""

from __future__ import annotations

import io
import random
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

# What radiographs carry burned in: laterality markers, acquisition times and dates, positioning notes
# and device or accession codes. `random_marking` composes strings of these kinds.
LATERALITY_MARKERS = ("R", "L", "RT", "LT")
POSITION_NOTES = ("AP", "PA", "SUPINE", "ERECT", "PORTABLE", "AP SUPINE", "SEMI-ERECT")


def zoom(image: Image.Image, area: float, centre: tuple[float, float] = (0.5, 0.5), aspect: float = 1.0) -> Image.Image:
    """Crop a window of `area` (fraction of the frame) and `aspect` (w/h relative to the frame) around
    `centre` (fractions of width and height; kept inside the frame), and resize it to the full frame."""
    width, height = image.size
    crop_width = min(width, width * np.sqrt(area * aspect))
    crop_height = min(height, height * np.sqrt(area / aspect))
    left = np.clip(centre[0] * width - crop_width / 2, 0, width - crop_width)
    top = np.clip(centre[1] * height - crop_height / 2, 0, height - crop_height)
    box = (left, top, left + crop_width, top + crop_height)
    return image.resize(image.size, Image.Resampling.BICUBIC, box=box)


def letterbox(image: Image.Image, scale_x: float, scale_y: float, offset: tuple[float, float] = (0.5, 0.5),
              fill: int = 0) -> Image.Image:
    """Shrink the image to (`scale_x`, `scale_y`) of the frame and place it at `offset` (fractions of the
    free space) on a uniform background of grey level `fill`: a film digitised with a border."""
    width, height = image.size
    inner = image.resize((max(1, round(width * scale_x)), max(1, round(height * scale_y))), Image.Resampling.BICUBIC)
    canvas = Image.new(image.mode, image.size, _grey(image.mode, fill))
    canvas.paste(inner, (round((width - inner.width) * offset[0]), round((height - inner.height) * offset[1])))
    return canvas


def shift(image: Image.Image, dx: float, dy: float, fill: int = 0) -> Image.Image:
    """Translate by (`dx`, `dy`) fractions of the frame; uncovered parts get grey level `fill`."""
    width, height = image.size
    return image.transform(image.size, Image.Transform.AFFINE, (1, 0, -dx * width, 0, 1, -dy * height),
                           Image.Resampling.BILINEAR, fillcolor=_grey(image.mode, fill))


def rotate(image: Image.Image, degrees: float, fill: int = 0) -> Image.Image:
    return image.rotate(degrees, Image.Resampling.BILINEAR, fillcolor=_grey(image.mode, fill))


def burn_text(image: Image.Image, text: str, position: tuple[float, float], height: float, grey: int,
              boxed: bool = False) -> Image.Image:
    """Draw `text` with its top-left corner at `position` (fractions of the frame, kept inside it), its
    letters `height` (fraction of the frame height) tall, in grey level `grey`; `boxed` frames it, as
    lead markers often are."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    font = _font(max(6, round(height * image.height)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = np.clip(position[0] * image.width, 0, max(0, image.width - (right - left) - 2)) - left
    y = np.clip(position[1] * image.height, 0, max(0, image.height - (bottom - top) - 2)) - top
    colour = _grey(image.mode, grey)
    draw.text((x, y), text, fill=colour, font=font)
    if boxed:
        draw.rectangle((x + left - 2, y + top - 2, x + right + 2, y + bottom + 2), outline=colour,
                       width=max(1, round(height * image.height / 10)))
    return out


def gamma(image: Image.Image, value: float) -> Image.Image:
    """Gamma curve: values > 1 darken the mid-tones, < 1 brighten them."""
    table = [round(255 * (level / 255) ** value) for level in range(256)] * len(image.getbands())
    return image.point(table)


def contrast(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(factor)


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def blur(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def sharpen(image: Image.Image, percent: int = 150) -> Image.Image:
    return image.filter(ImageFilter.UnsharpMask(radius=2, percent=percent, threshold=2))


def noise(image: Image.Image, sigma: float, rng: random.Random) -> Image.Image:
    """Additive Gaussian noise of `sigma` grey levels (quantum noise of a low-dose exposure), the same
    in every channel so that a grey image stays grey."""
    generator = np.random.default_rng(rng.getrandbits(32))
    pixels = np.asarray(image, dtype=np.float32)
    grain = generator.normal(0.0, sigma, pixels.shape[:2]).astype(np.float32)
    if pixels.ndim == 3:
        grain = grain[..., None]
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8), mode=image.mode)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert(image.mode)


def down_up(image: Image.Image, factor: float) -> Image.Image:
    """Down-sample to `factor` of the size and back: a low-resolution detector or a thumbnail upload."""
    small = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(small, Image.Resampling.BILINEAR).resize(image.size, Image.Resampling.BICUBIC)


def random_marking(rng: random.Random) -> tuple[str, bool]:
    """(text, boxed): a laterality marker, a time stamp, a date, a position note or a device code."""
    kind = rng.randrange(5)
    if kind == 0:
        return rng.choice(LATERALITY_MARKERS), rng.random() < 0.5
    if kind == 1:
        return timestamp(rng), False
    if kind == 2:
        return f"{rng.randrange(1, 29):02d}/{rng.randrange(1, 13):02d}/{rng.randrange(1995, 2026)}", False
    if kind == 3:
        return rng.choice(POSITION_NOTES), False
    letters = "".join(rng.choice("ABCDEFGHKMNPRSTXZ") for _ in range(rng.randrange(1, 4)))
    return f"{letters}-{rng.randrange(10, 99999)}", False


def timestamp(rng: random.Random) -> str:
    return f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont:
    # Pillow's bundled font, so the text looks the same on every machine (no system fonts needed).
    return ImageFont.load_default(size=size)


def _grey(mode: str, level: int):
    level = int(np.clip(level, 0, 255))
    bands = Image.getmodebands(mode)
    return level if bands == 1 else (level,) * bands
