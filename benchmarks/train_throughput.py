#!/usr/bin/env python
"""Training throughput in images/s: attention kernel, data-loading workers and the data pipeline, side by side.

    python benchmarks/train_throughput.py [--model_name_or_path DIR] [--dataset_name_or_dir DIR] [--steps 6] [--batch_size 16]

In one run, on real training images through the real pipeline (decode, shortcut augmentation,
processor), full fine-tuning with AdamW, it times:
  (a) SDPA attention, 1 data-loading worker
  (b) the previous setting: eager attention, batches prepared in the training process
  (c) what train_hf.py does: SDPA attention, batches prepared in the training process
  (d) the data pipeline alone (decode + augment + processor), no model
and prints images/s for each and the ratios c/b and a/c. Run it on an otherwise idle machine: a
training run or test suite beside it halves every figure.
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
from torch.utils.data import DataLoader  # noqa: E402

from pneumolens import cli  # noqa: E402
from pneumolens.data import load_image_dataset  # noqa: E402
from pneumolens.modeling import ModelSource, load_image_processor, load_model  # noqa: E402
from pneumolens.preprocessing import batch_transform, radiograph_augmentation, square_resize  # noqa: E402

SHARED = REPO.parent / "shared"


def loader(dataset, batch_size: int, workers: int) -> DataLoader:
    # The data set's transform makes whole batches; the sampler hands it index lists.
    return DataLoader(dataset, batch_size=None, num_workers=workers,
                      sampler=torch.utils.data.BatchSampler(range(len(dataset)), batch_size, drop_last=True))


def images_per_second(source, dataset, attention: str, workers: int, steps: int, batch_size: int) -> float:
    model = load_model(source, attention=attention, num_labels=2, id2label={0: "NORMAL", 1: "PNEUMONIA"},
                       label2id={"NORMAL": 0, "PNEUMONIA": 1}).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batches = iter(loader(dataset, batch_size, workers))
    timings = []
    for step in range(steps + 1):  # the first step warms up (allocations, worker start) and is dropped
        started = time.perf_counter()
        batch = next(batches)
        loss = torch.nn.functional.cross_entropy(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:
            timings.append(time.perf_counter() - started)
    return batch_size / statistics.median(timings)


def pipeline_images_per_second(dataset, batch_size: int, batches: int) -> float:
    started = time.perf_counter()
    for start in range(0, batches * batch_size, batch_size):
        dataset[start:start + batch_size]
    return batches * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_option(parser, cli.MODEL, default=str(SHARED / "models" / "dinov2-small"))
    cli.add_option(parser, cli.DATASET, default=str(SHARED / "data" / "chest_xray"))
    parser.add_argument("--steps", type=int, default=6, help="Timed training steps per variant.")
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()
    source = ModelSource(args.model_name_or_path)
    processor = square_resize(load_image_processor(source))
    dataset = load_image_dataset(args.dataset_name_or_dir)["train"].shuffle(seed=0)
    dataset.set_transform(batch_transform(processor, radiograph_augmentation()))

    results = {
        "(a) SDPA, 1 worker": images_per_second(source, dataset, "sdpa", 1, args.steps, args.batch_size),
        "(b) eager, in-process data": images_per_second(source, dataset, "eager", 0, args.steps, args.batch_size),
        "(c) SDPA, in-process (train_hf.py)": images_per_second(source, dataset, "sdpa", 0, args.steps, args.batch_size),
        "(d) data pipeline alone": pipeline_images_per_second(dataset, args.batch_size, 2 * args.steps),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.steps} timed steps per variant (median)")
    for name, value in results.items():
        print(f"{name:40s} {value:8.1f} images/s")
    a, b, c = (results[k] for k in list(results)[:3])
    print(f"c/b = {c / b:.2f} (SDPA vs eager), a/c = {a / c:.2f} (1 worker vs in-process)")


if __name__ == "__main__":
    main()
