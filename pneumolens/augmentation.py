"""Training augmentation that makes framing, burned-in text and exposure uninformative.

In the Kermany data the two classes differ in how they were acquired: PNEUMONIA films are more often
framed tightly on the chest and carry other markings than NORMAL ones. A model can read that instead
of the lungs (measured: zooming NORMAL test images to their central 65 % turned 88 % of them into
PNEUMONIA). Showing every framing, marking and exposure with both labels removes the signal.

Each change is drawn independently, so the model also still sees plain, full-frame films.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import acquisition as acq


@dataclass
class ShortcutAugmentation:
    """A PIL-in, PIL-out callable; randomness from `rng` (default: the `random` module, which PyTorch
    seeds differently in each data-loader worker)."""

    # Down to 30 % of the area (55 % of each side), the stress suite's strongest zoom, so that the zooms
    # a department might produce (65-80 % of each side) lie well inside what the model has seen.
    zoom_area: tuple[float, float] = (0.3, 1.0)
    zoom_aspect: tuple[float, float] = (0.75, 1.33)
    p_zoom: float = 0.5
    p_letterbox: float = 0.15
    p_shift: float = 0.15
    p_rotate: float = 0.3
    p_text: float = 0.5
    p_photometric: float = 0.8
    p_blur_or_sharpen: float = 0.25
    p_noise: float = 0.2
    p_jpeg: float = 0.2
    p_down_up: float = 0.15
    rng: random.Random | None = None

    def __call__(self, image: Image.Image) -> Image.Image:
        rng = self.rng or random
        image = self._framing(image, rng)
        if rng.random() < self.p_text:
            for _ in range(rng.randint(1, 3)):
                image = self._marking(image, rng)
        if rng.random() < self.p_photometric:
            image = self._photometric(image, rng)
        return self._detector(image, rng)

    def describe(self) -> str:
        """The recipe in words, from the fields, for the model card (share of images in brackets)."""
        def share(p: float) -> str:
            return f"({p * 100:.0f} %)"

        low, high = self.zoom_area
        return (f"zoom/crop to {low * 100:.0f}-{high * 100:.0f} % of the area, aspect {self.zoom_aspect[0]}-"
                f"{self.zoom_aspect[1]}, off-centre {share(self.p_zoom)}; borders {share(self.p_letterbox)}; "
                f"shifts up to ±15 % {share(self.p_shift)}; rotation up to ±10° {share(self.p_rotate)}; 1-3 burned-in "
                f"markings (laterality, times, dates, codes) {share(self.p_text)}; gamma 0.55-1.8, contrast and "
                f"brightness ±30-40 % {share(self.p_photometric)}; blur or sharpening {share(self.p_blur_or_sharpen)}; "
                f"noise {share(self.p_noise)}; down-up sampling {share(self.p_down_up)}; JPEG q20-80 {share(self.p_jpeg)}")

    def _framing(self, image, rng):
        fill = rng.choice((0, 0, rng.randint(0, 80), 255))
        if rng.random() < self.p_zoom:
            area = rng.uniform(*self.zoom_area)
            aspect = float(np.exp(rng.uniform(*np.log(self.zoom_aspect))))
            image = acq.zoom(image, area, (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)), aspect)
        elif rng.random() < self.p_letterbox / max(1e-6, 1 - self.p_zoom):
            image = acq.letterbox(image, rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95),
                                  (rng.random(), rng.random()), fill)
        if rng.random() < self.p_shift:
            image = acq.shift(image, rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), fill)
        if rng.random() < self.p_rotate:
            image = acq.rotate(image, rng.uniform(-10, 10), fill)
        return image

    @staticmethod
    def _marking(image, rng):
        text, boxed = acq.random_marking(rng)
        # Markers sit mostly near the edges and corners, but anywhere is possible.
        edge = rng.random() < 0.75
        position = (rng.choice((rng.uniform(0, 0.15), rng.uniform(0.7, 1.0))) if edge else rng.random(),
                    rng.choice((rng.uniform(0, 0.15), rng.uniform(0.8, 1.0))) if edge else rng.random())
        grey = rng.choice((rng.randint(170, 255), rng.randint(170, 255), rng.randint(0, 90)))
        return acq.burn_text(image, text, position, rng.uniform(0.04, 0.16), grey, boxed)

    @staticmethod
    def _photometric(image, rng):
        image = acq.gamma(image, float(np.exp(rng.uniform(np.log(0.55), np.log(1.8)))))
        image = acq.contrast(image, rng.uniform(0.6, 1.4))
        return acq.brightness(image, rng.uniform(0.7, 1.3))

    def _detector(self, image, rng):
        if rng.random() < self.p_blur_or_sharpen:
            image = acq.blur(image, rng.uniform(0.4, 1.6)) if rng.random() < 0.6 else acq.sharpen(image, rng.randint(80, 250))
        if rng.random() < self.p_noise:
            image = acq.noise(image, rng.uniform(2, 14), rng)
        if rng.random() < self.p_down_up:
            image = acq.down_up(image, rng.uniform(0.3, 0.7))
        if rng.random() < self.p_jpeg:
            image = acq.jpeg(image, rng.randint(20, 80))
        return image
