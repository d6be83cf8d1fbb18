"""What the page and the programs draw the maps over, at display size: one analysis's maps, small enough to
live in a browser session on the server, drawn again under another opacity, colormap or window; and the
HTML report made from them."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pneumolens.explain import Explanation
from pneumolens.explain.geometry import scaled_box, to_original
from pneumolens.explain.overlay import COLORMAP, DEFAULT_BLEND, overlay
from pneumolens.figures import image_bytes
from pneumolens.report import html_report
from pneumolens.robustness import RobustnessCheck
from pneumolens.service import Analysis, PneumoLensService
from pneumolens.similar import SHOWN


@dataclass
class DisplayedMaps:
    """What a page's overlays are drawn from, small enough to live in a browser session on the server
    (about 150 KB for a 1024-pixel display): the image at display size as a grey JPEG, and the maps at the
    model's input size, 8-bit PNG (what a colormap shows anyway), with the box of the displayed image
    they cover. They are scaled up each time they are drawn, which costs less than storing them large.
    """

    image_jpeg: bytes
    input_maps_png: dict[str, bytes]
    box: tuple[float, float, float, float]

    @classmethod
    def of(cls, explanation: Explanation, max_side: int) -> "DisplayedMaps":
        image = explanation.image
        size = display_size(image.size, max_side)
        grey = image.convert("L").resize(size, Image.BILINEAR)
        return cls(image_bytes(grey, format="JPEG", quality=92),
                   {method: image_bytes(Image.fromarray(np.round(np.clip(heatmap, 0, 1) * 255).astype(np.uint8)),
                                        format="PNG", compress_level=1)
                    for method, heatmap in explanation.input_maps.items()},
                   scaled_box(explanation.full_box, image.size, size))

    def image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.image_jpeg))

    def maps(self, size: tuple[int, int], methods=None) -> dict[str, np.ndarray]:
        """The maps (or those of `methods`) over the displayed image, (height, width) in [0, 1]."""
        return {method: to_original(np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0, self.box, size)
                for method, data in self.input_maps_png.items() if methods is None or method in methods}

    def overlays(self, opacity: float, colormap: str = COLORMAP, methods=None,
                 blend: str = DEFAULT_BLEND, base: Image.Image | None = None) -> dict:
        """Each map (or each of `methods`) over the displayed image, or over `base`: the same film at the
        displayed size, under another window."""
        base = self.image() if base is None else base
        return {method: overlay(base, heatmap, opacity, colormap, blend)
                for method, heatmap in self.maps(base.size, methods).items()}

    @property
    def nbytes(self) -> int:
        return len(self.image_jpeg) + sum(len(data) for data in self.input_maps_png.values())


def report_html(service: PneumoLensService, analysis: Analysis, opacity: float, file_name: str,
                max_side: int = 1024, colormap: str = COLORMAP, robustness: RobustnessCheck | None = None,
                blend: str = DEFAULT_BLEND) -> str:
    """The self-contained HTML report of `analysis` (`report.html_report`), its maps drawn at `max_side`, with
    the `robustness` check where it was made and the similar training films' pictures where they are at hand.

    Full-resolution overlays of a 2,000-pixel radiograph take seconds to colour and encode, and a browser
    shows them smaller anyway: the maps are scaled from the model-input maps straight to display size.
    """
    displayed = DisplayedMaps.of(analysis.explanation, max_side)
    pictures = [service.film_image(film) for film in analysis.similar["ids"][:SHOWN]] if analysis.similar else []
    return html_report(analysis, displayed.overlays(opacity, colormap, blend=blend), displayed.image(),
                       service.identity, file_name, robustness=robustness, blend=blend, film_pictures=pictures)


def display_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(width, height) scaled down, aspect kept, to fit `max_side`; never enlarged."""
    scale = min(1.0, max_side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
