"""Pictures made of pictures with PIL: an overlay with its colour scale drawn below it (explain.py's PNGs), and
every map on one sheet (what a program or an agent receives)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .explain.overlay import COLORMAP, DEFAULT_BLEND, palette
from .presentation import FILM_GREY, low_end, scale_meaning


def with_scale(image: Image.Image, method: str, explained_label: str, colormap: str = COLORMAP,
               blend: str = DEFAULT_BLEND) -> Image.Image:
    """An overlay with its colour scale drawn below it: the bar from low to high and what high means, so
    that a saved PNG explains itself."""
    font_size = max(12, image.width // 60)
    font = ImageFont.load_default(size=font_size)
    words = f"high: {scale_meaning(method, explained_label)}"
    lines = _wrapped(words, font, image.width - 2 * font_size)
    bar_height, gap = font_size, font_size // 2
    strip = Image.new("RGB", (image.width, gap + bar_height + gap + len(lines) * (font_size + 4) + gap), "white")
    draw = ImageDraw.Draw(strip)
    low_width = draw.textlength(low_end(blend), font=font)
    bar_left, bar_right = int(font_size + low_width + gap), int(min(image.width * 0.6, image.width - 4 * font_size))
    levels = np.linspace(0, 255, max(1, bar_right - bar_left)).astype(np.uint8)
    bar = Image.fromarray(np.repeat(levels[None, :], bar_height, axis=0))
    coverage = bar.copy() if blend == "value" else None  # the colour fades to the film's grey, as on the map
    bar.putpalette(palette(colormap))
    if coverage is not None:
        bar = Image.composite(bar.convert("RGB"), Image.new("RGB", bar.size, FILM_GREY), coverage)
    strip.paste(bar.convert("RGB"), (bar_left, gap))
    draw.rectangle((bar_left - 1, gap - 1, bar_right, gap + bar_height), outline="#888")
    draw.text((font_size, gap), low_end(blend), fill="#333", font=font)
    draw.text((bar_right + gap, gap), "high", fill="#333", font=font)
    for row, line in enumerate(lines):
        draw.text((font_size, 2 * gap + bar_height + row * (font_size + 4)), line, fill="#333", font=font)
    framed = Image.new("RGB", (image.width, image.height + strip.height), "white")
    framed.paste(image.convert("RGB"), (0, 0))
    framed.paste(strip, (0, image.height))
    return framed


def _wrapped(text: str, font, width: float) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return [*lines, line] if line else lines


def map_sheet(images: list[Image.Image], columns: int = 2, gap: int = 4) -> tuple[Image.Image, list[list[int]]]:
    """`images` (the same size) on one white sheet, `columns` to a row, in order; the sheet and each image's
    box on it, [left, top, right, bottom]. One file for every map: a client downloads it once."""
    width, height = images[0].size
    rows = -(-len(images) // columns)
    across = min(columns, len(images))
    sheet = Image.new("RGB", (across * width + (across - 1) * gap, rows * height + (rows - 1) * gap), "white")
    boxes = []
    for index, image in enumerate(images):
        left, top = (index % columns) * (width + gap), (index // columns) * (height + gap)
        sheet.paste(image.convert("RGB"), (left, top))
        boxes.append([left, top, left + width, top + height])
    return sheet, boxes
