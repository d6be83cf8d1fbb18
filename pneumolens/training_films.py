"""Where the pictures of similar training films come from, when they are at hand at all.

The index a model ships with (`pneumolens.similar`) holds film ids and numbers, never an image. A server
shows the films themselves only when the training images are at hand:

- a local data folder (imagefolder layout, `<folder>/train/<CLASS>/<file>`), named by the app's
  PNEUMOLENS_TRAINING_FILMS or `explain.py --training_films`;
- on a Hugging Face Space, the Hub data set the index names (or PNEUMOLENS_TRAINING_FILMS=<dataset id>),
  loaded on first use in the background and cached by `datasets`.

Without either, the row shows each film's label and similarity only, and says why.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from PIL import Image

from .errors import PneumoLensError
from .images import load_image

logger = logging.getLogger(__name__)

SETTING = "PNEUMOLENS_TRAINING_FILMS"
THUMBNAIL_SIDE = 320  # larger than the 224-px films of the bundled data set, smaller than a full radiograph
NOT_AT_HAND = ("The training images are not on this server, so the films are listed by label and similarity "
               f"only (set {SETTING} to a local copy of the data set to see them).")


class FolderFilms:
    """Films read from a local imagefolder copy of the training data."""

    def __init__(self, folder: str | Path, split: str = "train"):
        self.root = (Path(folder) / split).resolve()

    def image(self, film_id: str) -> Image.Image | None:
        path = (self.root / film_id).resolve()
        # An id is a class folder and a file name; one that climbs out of the folder is not a film.
        if self.root not in path.parents or not path.is_file():
            return None
        return thumbnail(load_image(str(path)))


class HubFilms:
    """Films of a Hub data set, loaded in the background on first use (a Space's disk keeps the cache)."""

    def __init__(self, name: str, split: str = "train"):
        self.name, self.split = name, split
        self._rows: dict[str, int] | None = None
        self._films = None
        self._loading = threading.Lock()

    def image(self, film_id: str) -> Image.Image | None:
        if self._films is None:
            if self._loading.acquire(blocking=False):  # one loader; requests meanwhile get no pictures
                threading.Thread(target=self._load, daemon=True).start()
            return None
        row = self._rows.get(film_id)
        if row is None and film_id.startswith("row-"):
            row = int(film_id[4:])
        if row is None:
            return None
        image = self._films[row]["image"]
        return thumbnail(load_image(image["bytes"] or image["path"]))

    def _load(self) -> None:
        from .data import load_image_dataset
        from .similar import film_ids

        try:
            films = load_image_dataset(self.name)[self.split]
            self._rows = {film: row for row, film in enumerate(film_ids(films))}
            self._films = films.with_format(None)
        except Exception:  # offline, gone, renamed: the row keeps showing labels only
            logger.exception("Could not load the training films of %s", self.name)


def thumbnail(image: Image.Image) -> Image.Image:
    image = image.convert("L")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return image


def training_films(setting: str | None = None, indexed_data: str | None = None):
    """The source `setting` (PNEUMOLENS_TRAINING_FILMS, in the server's settings) names: a folder, or a Hub
    data set id; on a Space without a setting, the Hub data set the index was built from. None: no pictures."""
    if setting and Path(setting).is_dir():
        if not (Path(setting) / "train").is_dir():
            raise PneumoLensError(f"{SETTING}={setting} has no train/ folder of class folders.")
        return FolderFilms(setting)
    if setting and (setting.startswith((".", "/", "~")) or setting.count("/") != 1):
        raise PneumoLensError(f"{SETTING}={setting}: no such folder (and not a Hub data set id).")
    if setting:
        return HubFilms(setting)
    if os.environ.get("SPACE_ID") and indexed_data and "/" in indexed_data:
        return HubFilms(indexed_data)
    return None
