#!/usr/bin/env python
"""Is a film decided the same as a DICOM in every syntax as it is as the JPEG it came from?

    python -m benchmarks.dicom_decisions [--data_dir ../shared/data/chest_xray/val]

Each validation film (grey, spread over 12 bits as a detector's film is) is written in every transfer syntax of
tests/dicom_films.py and as MONOCHROME1, decoded by `load_image` as /predict decodes it, and predicted by the
bundled model (or MODEL_ID) in batches; each answer (decision, referral, probability) is compared with the
answer for the source JPEG. Lossless syntaxes should agree exactly; lossy ones (12-bit JPEG Extended at
quality 95, JPEG 2000 at 40 dB, JPEG-LS near-lossless 2) may move a probability a little.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.served_app import REPO  # noqa: E402
from pneumolens.images import load_image  # noqa: E402
from pneumolens.service import PneumoLensService  # noqa: E402
from tests.dicom_films import SYNTAXES, film_dicom, twelve_bit  # noqa: E402

VARIANTS = [*((name, "MONOCHROME2") for name in SYNTAXES), ("jpeg-lossless-sv1", "MONOCHROME1")]


def answer(record: dict) -> tuple:
    return record["decision"], bool(record.get("refer")), record["probabilities"]["PNEUMONIA"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "chest_xray" / "val"))
    arguments = parser.parse_args()
    films = sorted(Path(arguments.data_dir).rglob("*.jpeg"))
    service = PneumoLensService()
    started = time.perf_counter()
    sources = [Image.open(path).convert("RGB") for path in films]
    reference = [answer(r) for r in service.predict_many(sources)]
    print(f"{len(films)} films, {len(VARIANTS)} DICOM variants each; the source JPEGs: "
          f"{sum(label == 'PNEUMONIA' for label, _, _ in reference)} PNEUMONIA, {sum(refer for _, refer, _ in reference)} referred")
    print(f"{'variant':36s} {'decoded':>8s} {'same decision':>14s} {'same referral':>14s} {'max |dP|':>9s}")
    for name, photometric in VARIANTS:
        images = []
        for source in sources:
            grey = twelve_bit(np.asarray(source.convert("L")))
            values = 4095 - grey if photometric == "MONOCHROME1" else grey
            images.append(load_image(film_dicom(values, name, photometric)))
        answers = [answer(r) for r in service.predict_many(images)]
        same_label = sum(a[0] == b[0] for a, b in zip(answers, reference))
        same_refer = sum(a[1] == b[1] for a, b in zip(answers, reference))
        moved = max(abs(a[2] - b[2]) for a, b in zip(answers, reference))
        print(f"{name + ' ' + photometric:36s} {len(images):8d} {same_label:11d}/{len(films)} "
              f"{same_refer:11d}/{len(films)} {moved:9.4f}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
