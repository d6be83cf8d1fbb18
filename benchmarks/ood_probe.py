#!/usr/bin/env python
"""Out-of-distribution scores of things that are not radiographs, and of radiographs under acquisition changes.

    python benchmarks/ood_probe.py [--model_name_or_path DIR] [--radiographs DIR]

Prints the detector's threshold, then the score and verdict of two photos (scikit-learn's sample
images), uniform noise, a line drawing, a black and a grey-ramp image, and the range of scores and
the number flagged for the radiographs in --radiographs (default: the 16 official validation images at
full resolution), unchanged and under each stress-suite change.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pneumolens import cli  # noqa: E402
from pneumolens.images import load_image  # noqa: E402
from pneumolens.modeling import BUNDLED_MODEL, ModelSource  # noqa: E402
from pneumolens.service import PneumoLensService  # noqa: E402
from pneumolens.stress import STRESS_SUITE  # noqa: E402

SHARED = REPO.parent / "shared"


def not_radiographs() -> dict[str, Image.Image]:
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(0)
    drawing = Image.new("RGB", (224, 224), "white")
    for offset in range(10, 200, 30):
        drawing.paste((0, 0, 0), (offset, 20, offset + 4, 200))
    return {
        "photo (china.jpg)": Image.fromarray(load_sample_image("china.jpg")),
        "photo (flower.jpg)": Image.fromarray(load_sample_image("flower.jpg")),
        "uniform noise": Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)),
        "line drawing": drawing,
        "black": Image.new("RGB", (224, 224)),
        "grey ramp": Image.fromarray(np.tile(np.linspace(0, 255, 224), (224, 1)).astype(np.uint8)).convert("RGB"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_option(parser, cli.MODEL, default=str(BUNDLED_MODEL))
    parser.add_argument("--radiographs", default=str(SHARED / "data" / "chest_xray_val_original"))
    args = parser.parse_args()
    service = PneumoLensService(ModelSource(args.model_name_or_path))
    if service.ood_detector is None:
        raise SystemExit(f"{args.model_name_or_path} has no out-of-distribution detector")
    print(f"threshold {service.ood_detector.threshold:.1f}")
    for name, image in not_radiographs().items():
        verdict = service.predict(image)["out_of_distribution"]
        print(f"{name:22s} score {verdict['score']:7.1f}  flagged {verdict['flagged']}")
    radiographs = [load_image(path) for path in sorted(Path(args.radiographs).rglob("*.jpeg"))]
    for change in (None, *STRESS_SUITE):
        images = radiographs if change is None else [change(image, 0, i) for i, image in enumerate(radiographs)]
        verdicts = [service.predict(image)["out_of_distribution"] for image in images]
        scores = [v["score"] for v in verdicts]
        print(f"{'radiographs ' + (change.name if change else 'unchanged'):34s} scores {min(scores):6.1f}-"
              f"{max(scores):6.1f}  flagged {sum(v['flagged'] for v in verdicts)}/{len(verdicts)}")


if __name__ == "__main__":
    main()
