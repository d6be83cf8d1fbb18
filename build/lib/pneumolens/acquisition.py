"""Acquisition changes that must not change a diagnosis: framing, aspect, burned-in text, devices on the
patient, exposure, image processing, detector and codec.

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
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

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


def stretch(image: Image.Image, aspect: float, centre: float = 0.5) -> Image.Image:
    """Change the anatomy's width-to-height ratio by `aspect` (> 1 wider, < 1 taller) without a border:
    keep the full height and `1 / aspect` of the width (or the full width and `aspect` of the height)
    and resize that window to the frame.

    The Kermany images were stretched to squares from films of different shapes (the official NORMAL
    validation films are 1.1-1.4 times as wide as high, the PNEUMONIA ones 1.25-1.75), so how squashed
    a chest looks says something about the film's shape, not about the lungs.
    """
    width, height = image.size
    if aspect >= 1:
        left = (width - width / aspect) * centre
        box = (left, 0, left + width / aspect, height)
    else:
        top = (height - height * aspect) * centre
        box = (0, top, width, top + height * aspect)
    return image.resize(image.size, Image.Resampling.BICUBIC, box=box)


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


def equalize(image: Image.Image) -> Image.Image:
    """Histogram equalisation, as some viewers and PACS exports apply it."""
    return ImageOps.equalize(image)


def local_contrast(image: Image.Image, radius: float, percent: int) -> Image.Image:
    """Large-radius unsharp masking: the multi-scale contrast enhancement that vendors' processing
    (MUSICA and the like) applies, which makes lung markings look stronger without changing the film."""
    return image.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=0))


def exposure_gradient(image: Image.Image, strength: float, angle: float) -> Image.Image:
    """Brightness falling off linearly across the frame in direction `angle` (degrees) by up to
    `strength` (fraction) at each end: the anode heel effect, or a patient off the detector's centre."""
    width, height = image.size
    # A row and a column, broadcast: the same values as a full coordinate grid, without building one.
    xs, ys = np.arange(width, dtype=np.float32)[None, :], np.arange(height, dtype=np.float32)[:, None]
    direction = np.deg2rad(angle)
    ramp = ((xs / max(1, width - 1) - 0.5) * np.cos(direction) + (ys / max(1, height - 1) - 0.5) * np.sin(direction))
    gain = 1 + 2 * strength * ramp
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels * (gain[..., None] if pixels.ndim == 3 else gain)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode=image.mode)


def leads(image: Image.Image, count: int, rng: random.Random, grey: int = 235) -> Image.Image:
    """`count` monitoring leads: a round electrode on the chest wall with its wire curving to the edge
    of the frame. Sick children are filmed with ECG leads on far more often than healthy ones, so a
    model can learn the wires instead of the lungs."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    width, height = image.size
    scale = min(width, height)
    colour = _grey(image.mode, grey)
    for _ in range(count):
        x, y = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        radius = rng.uniform(0.025, 0.045) * scale
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour,
                     width=max(1, round(radius / 3)), fill=None if rng.random() < 0.5 else colour)
        draw.line(_wire_to_edge(x, y, width, height, rng), fill=colour, width=max(1, round(scale * 0.008)))
    return out


def tube(image: Image.Image, rng: random.Random, grey: int = 225) -> Image.Image:
    """A tube entering from the top (endotracheal or nasogastric): a thin bright line running down
    the middle of the frame with a gentle curve."""
    out = image.copy()
    width, height = image.size
    x = rng.uniform(0.42, 0.58) * width
    end = rng.uniform(0.35, 0.75) * height
    bend = rng.uniform(-0.06, 0.06) * width
    points = [(x + bend * np.sin(np.pi * t) ** 2, t * end) for t in np.linspace(0, 1, 24)]
    ImageDraw.Draw(out).line(points, fill=_grey(image.mode, grey), width=max(1, round(min(width, height) * 0.012)))
    return out


def _wire_to_edge(x: float, y: float, width: int, height: int, rng: random.Random) -> list[tuple[float, float]]:
    edge = rng.choice(((x, 0.0), (x, height - 1.0), (0.0, y), (width - 1.0, y)))
    bulge = rng.uniform(-0.15, 0.15) * min(width, height)
    points = []
    for t in np.linspace(0, 1, 20):
        px, py = x + (edge[0] - x) * t, y + (edge[1] - y) * t
        sway = bulge * np.sin(np.pi * t)
        points.append((px + sway, py - sway) if edge[0] in (0.0, width - 1.0) else (px + sway, py))
    return points


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
