"""A DICOM film as the page shows it, under a window a person chooses: the film's values kept at display
size, so that a new window redraws without decoding the file again. Windowing changes what a person sees,
never what the model is given (the model always gets the file's own display, `DicomFilm.display()`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .dicom import DicomFilm, Window, windowed

AS_STORED = "As the file shows it"


@dataclass
class FilmView:
    """What a browser session keeps on the server to window its DICOM again: the values at display size as
    16-bit levels (`low + level * step`; exact for films of up to 16 bits), about 2 MB at 1024 pixels plus
    the stored display (1 MB)."""
    levels: np.ndarray  # (height, width) uint16
    low: float
    step: float
    inverted: bool
    presets: dict[str, Window]  # by label, in the order a person picks them
    stored_display: np.ndarray  # 8-bit, how the file shows itself (VOI LUT or first window), at display size
    stored_window: Window  # the file's first window, else its full range: where the sliders start

    @classmethod
    def of(cls, film: DicomFilm, size: tuple[int, int]) -> "FilmView | None":
        """The view of a grey film at `size` (width, height); None for a colour one (nothing to window)."""
        if film.colour:
            return None
        values = np.asarray(Image.fromarray(film.values).resize(size, Image.BILINEAR), dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        step = max((high - low) / 65535, 1.0) if high - low <= 65535 else (high - low) / 65535
        levels = np.round((values - low) / step).astype(np.uint16)
        stored = np.asarray(film.display().resize(size, Image.BILINEAR))
        return cls(levels, low, step, film.inverted, {window.label(): window for window in film.presets()}, stored,
                   film.windows[0] if film.windows else film.full_range())

    @property
    def values(self) -> np.ndarray:
        return self.low + self.levels.astype(np.float32) * np.float32(self.step)

    @property
    def choices(self) -> list[str]:
        return [AS_STORED, *self.presets]

    def window(self, label: str) -> Window | None:
        """The preset of that label; None for the file's own display."""
        return self.presets.get(label)

    def image(self, window: Window | None) -> Image.Image:
        """The film through `window` (None: as the file shows it), 8-bit grey at display size."""
        if window is None:
            return Image.fromarray(self.stored_display)
        grey = windowed(self.values, window)
        return Image.fromarray(255 - grey if self.inverted else grey, mode="L")

    def slider_range(self) -> tuple[float, float]:
        """The levels a window may take: the film's value range, widened by half of it on each side."""
        low, high = self.low, self.low + float(self.levels.max()) * self.step
        margin = max((high - low) / 2, 1.0)
        return round(low - margin), round(high + margin)

    @property
    def nbytes(self) -> int:
        return self.levels.nbytes + self.stored_display.nbytes
