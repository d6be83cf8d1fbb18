#!/usr/bin/env python
"""Time the fused explanation against the separate passes and against the model's own forward+backward.

    python benchmarks/explain_benchmark.py [--model_name_or_path DIR_OR_ID] [--repeats 10]

On the same images, in one run, it times:
  (a) fused:    Explainer.fused_maps - probabilities + every registered method's map, one forward, one backward
  (b) separate: Explainer.separate_maps - a prediction pass, then one pass per method (e.g. a GradCAM call)
  (c) floor:    one eager forward + one backward to the input pixels, nothing else
and prints medians and the ratios a/c (target <= 1.15) and b/a (target >= 2). All three start from the
same preprocessed tensor; the end-to-end call (decode, preprocess, fused; the maps at the image's own
size are made only when read, so they are left out) is timed too and reported separately. The model defaults to the bundled one, else a DINOv2-small
with a new 2-class head from ../shared/models/dinov2-small.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent

import torch  # noqa: E402

from pneumolens import cli  # noqa: E402
from pneumolens.explain import METHODS, Explainer  # noqa: E402
from pneumolens.explain.options import options_for  # noqa: E402
from pneumolens.modeling import BUNDLED_MODEL, ModelSource, load_model_and_processor  # noqa: E402

SHARED = REPO.parent / "shared"


def load(model_arg: str | None):
    if model_arg or BUNDLED_MODEL.is_dir():
        source = ModelSource(model_arg or str(BUNDLED_MODEL))
        return (source, *load_model_and_processor(source))
    source = ModelSource(str(SHARED / "models" / "dinov2-small"))
    return (source, *load_model_and_processor(source, num_labels=2, id2label={0: "NORMAL", 1: "PNEUMONIA"},
                                              label2id={"NORMAL": 0, "PNEUMONIA": 1}))


def images(count: int) -> list[Path]:
    folders = [REPO / "examples", SHARED / "data" / "chest_xray_val_original"]
    found = sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*.jpeg"))
    if not found:
        raise SystemExit("No example images found (examples/ or ../shared/data/chest_xray_val_original).")
    return found[:count]


def floor(model, pixels: torch.Tensor) -> None:
    batch = pixels.detach().requires_grad_(True)
    logits = model(pixel_values=batch).logits
    torch.autograd.grad(logits[0, 1], batch)


def median_seconds(function, inputs, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        for item in inputs:
            start = time.perf_counter()
            function(item)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_option(parser, cli.MODEL, default=None, help="Hub id or directory (default: bundled model).")
    parser.add_argument("--images", type=int, default=4, help="How many example images.")
    parser.add_argument("--repeats", type=int, default=5, help="Rounds over the images per variant.")
    args = parser.parse_args()

    source, model, processor = load(args.model_name_or_path)
    name = source.name_or_path
    explainer = Explainer(model, processor)
    options = options_for(source)  # the maps as the app makes them: the model's chosen settings
    paths = images(args.images)
    prepared = [explainer.prepare(path) for path in paths]
    inputs = [(pixels, layout) for _, pixels, layout in prepared]

    variants = {
        "fused (a)": lambda item: explainer.fused_maps(item[0], item[1], None, options),
        "separate (b)": lambda item: explainer.separate_maps(item[0], item[1], None, options),
        "floor (c)": lambda item: floor(model, item[0]),
    }
    for function in variants.values():  # warm-up: first calls allocate
        function(inputs[0])
    # Interleave the variants round by round, so a noisy neighbour slows all of them alike.
    samples = {label: [] for label in variants}
    for _ in range(args.repeats):
        for label, function in variants.items():
            samples[label].append(median_seconds(function, inputs, 1))
    medians = {label: statistics.median(values) for label, values in samples.items()}
    end_to_end = median_seconds(lambda path: explainer.explain(path, options=options), paths, 1)

    print(f"model: {name} ({model.config.model_type}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
          f"parameters), input {tuple(inputs[0][0].shape[-2:])}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(paths)} images x {args.repeats} rounds")
    for label, seconds in medians.items():
        print(f"  {label:14s} median {seconds * 1000:8.1f} ms")
    print(f"  {'end-to-end':14s} median {end_to_end * 1000:8.1f} ms  (decode + preprocess + fused)")
    print(f"  methods: {', '.join(METHODS)}; settings: {options.tuned()}")
    a, b, c = medians["fused (a)"], medians["separate (b)"], medians["floor (c)"]
    print(f"a/c = {a / c:.2f}  (target <= 1.15)")
    print(f"b/a = {b / a:.2f}  (target >= 2)")


if __name__ == "__main__":
    main()
