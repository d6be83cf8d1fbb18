"""Figures drawn without a display, written as PNG bytes or files: the one way every plot of the project
is saved. Light on purpose (matplotlib only, imported when first drawn): the evaluation and training
processes import it too."""

from __future__ import annotations

import io

from PIL import Image


def pyplot():
    """matplotlib's pyplot, drawing to files only: servers and scripts have no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(figure) -> bytes:
    """`figure` as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    save_figure(figure, buffer, format="png")
    return buffer.getvalue()


def save_figure(figure, path, **options) -> None:
    """`figure` written to `path` (a file name or a binary file); the figure is closed."""
    figure.savefig(path, **options)
    pyplot().close(figure)


def png_image(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def image_bytes(image: Image.Image, **save_options) -> bytes:
    """`image` encoded as `save_options` say (PIL's `format`, `quality`, ...)."""
    buffer = io.BytesIO()
    image.save(buffer, **save_options)
    return buffer.getvalue()
