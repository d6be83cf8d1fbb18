"""Training augmentation that makes framing, film shape, burned-in text, devices, exposure and image
processing uninformative.

In the Kermany data the two classes differ in how they were acquired: PNEUMONIA films are more often
framed tightly on the chest, come from wider films (squashed harder into the square), are less sharp
and carry other markings than NORMAL ones. A model can read that instead of the lungs (measured:
zooming NORMAL test images to their central 65 % turned 88 % of them into PNEUMONIA). Showing every
framing, shape, marking, device and exposure with both labels removes the signal.

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
    # Film shape, for the images that are not zoomed (a zoom already varies the aspect).
    p_stretch: float = 0.3
    stretch_aspect: tuple[float, float] = (0.75, 1.33)
    p_letterbox: float = 0.15
    p_shift: float = 0.15
    p_rotate: float = 0.3
    p_text: float = 0.5
    p_devices: float = 0.25
    p_photometric: float = 0.8
    p_heel: float = 0.25
    p_processing: float = 0.25
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
        if rng.random() < self.p_devices:
            image = self._devices(image, rng)
        if rng.random() < self.p_photometric:
            image = self._photometric(image, rng)
        if rng.random() < self.p_processing:
            image = self._processing(image, rng)
        return self._detector(image, rng)

    def describe(self) -> str:
        """The recipe in words, from the fields, for the model card (share of images in brackets)."""
        def share(p: float) -> str:
            return f"({p * 100:.0f} %)"

        low, high = self.zoom_area
        return (f"zoom/crop to {low * 100:.0f}-{high * 100:.0f} % of the area, aspect {self.zoom_aspect[0]}-"
                f"{self.zoom_aspect[1]}, off-centre {share(self.p_zoom)}; otherwise the film's aspect changed "
                f"{self.stretch_aspect[0]}-{self.stretch_aspect[1]} {share(self.p_stretch)}; borders {share(self.p_letterbox)}; "
                f"shifts up to ±15 % {share(self.p_shift)}; rotation up to ±10° {share(self.p_rotate)}; 1-3 burned-in "
                f"markings (laterality, times, dates, codes) {share(self.p_text)}; ECG leads and wires or a tube "
                f"{share(self.p_devices)}; gamma 0.55-1.8, contrast and brightness ±30-40 % {share(self.p_photometric)}, "
                f"with an exposure gradient up to 30 % {share(self.p_photometric * self.p_heel)}; histogram "
                f"equalisation or large-scale contrast enhancement {share(self.p_processing)}; blur or sharpening "
                f"{share(self.p_blur_or_sharpen)}; "
                f"noise {share(self.p_noise)}; down-up sampling {share(self.p_down_up)}; JPEG q20-80 {share(self.p_jpeg)}")

    def _framing(self, image, rng):
        fill = rng.choice((0, 0, rng.randint(0, 80), 255))
        if rng.random() < self.p_zoom:
            area = rng.uniform(*self.zoom_area)
            aspect = float(np.exp(rng.uniform(*np.log(self.zoom_aspect))))
            image = acq.zoom(image, area, (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)), aspect)
        elif rng.random() < self.p_stretch / max(1e-6, 1 - self.p_zoom):
            aspect = float(np.exp(rng.uniform(*np.log(self.stretch_aspect))))
            image = acq.stretch(image, aspect, rng.uniform(0.35, 0.65))
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
    def _devices(image, rng):
        if rng.random() < 0.7:
            image = acq.leads(image, rng.randint(1, 4), rng, rng.randint(150, 255))
        if rng.random() < 0.4:
            image = acq.tube(image, rng, rng.randint(150, 255))
        return image

    def _photometric(self, image, rng):
        image = acq.gamma(image, float(np.exp(rng.uniform(np.log(0.55), np.log(1.8)))))
        image = acq.contrast(image, rng.uniform(0.6, 1.4))
        image = acq.brightness(image, rng.uniform(0.7, 1.3))
        if rng.random() < self.p_heel:
            image = acq.exposure_gradient(image, rng.uniform(0.05, 0.3), rng.uniform(0, 360))
        return image

    @staticmethod
    def _processing(image, rng):
        if rng.random() < 0.3:
            return acq.equalize(image)
        return acq.local_contrast(image, rng.uniform(6, 30), rng.randint(40, 150))

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
