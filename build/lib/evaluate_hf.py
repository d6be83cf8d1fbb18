#!/usr/bin/env python
"""Evaluate any PneumoLens-compatible model on any imagefolder directory, without training.

    python evaluate_hf.py --model_name_or_path models/pneumolens-dinov2-small \\
        --dataset_name_or_dir ../shared/data/chest_xray --split validation --output_dir outputs/eval

Writes metrics.json, predictions.csv, roc_curve.png and confusion_matrix.png to --output_dir. The
decision threshold is the one saved in the model's config unless --threshold is given.

Each figure comes with its 95 % bootstrap interval (--bootstrap_samples resamples of the images), from
the project's `evaluate` module (pneumolens/binary_metrics). Under `accelerate launch` the images are
split between the processes, each on its own device, and the results gathered into the same files as
one process writes:

    accelerate launch --num_processes 4 evaluate_hf.py --model_name_or_path ... --dataset_name_or_dir ... \\
        --split test

--stress also runs the shortcut stress suite (pneumolens/stress.py): every image under each acquisition
change that must not change a diagnosis, written to --output_dir/stress (stress.json, stress.png,
stress_examples.png) and printed as a table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import HfArgumentParser

from pneumolens import cli
from pneumolens.data import drop_unreadable, image_sources, load_image_dataset
from pneumolens.errors import PneumoLensError
from pneumolens.distributed import map_in_order, process_state
from pneumolens.evaluation import evaluate_model, metrics_table, predict_probabilities
from pneumolens.modeling import ModelSource, load_model_and_processor
from pneumolens.stress import CLEAN, predict_stressed, run_stress_suite, stress_table


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(
        metadata={"help": "Hub id or local directory of the model to evaluate.", "aliases": [cli.ALIASES[cli.MODEL]]}
    )
    dataset_name_or_dir: str = field(
        metadata={"help": "Imagefolder directory (SPLIT/CLASS/IMAGE or CLASS/IMAGE), or a Hub data set id.",
                  "aliases": [cli.ALIASES[cli.DATASET]]}
    )
    split: str | None = field(
        default=None, metadata={"help": "Split to evaluate (e.g. test, validation); needed if there are several."}
    )
    output_dir: str = field(default="outputs/eval", metadata={"help": "Where the metrics and plots go."})
    model_revision: str | None = field(
        default=None, metadata={"help": "Hub model revision.", "aliases": [cli.ALIASES[cli.MODEL_REVISION]]}
    )
    threshold: float | None = field(
        default=None, metadata={"help": "Decision threshold; default: the model's saved operating threshold."}
    )
    batch_size: int = field(default=32, metadata={"help": "Images per forward pass."})
    stress: bool = field(default=False, metadata={"help": "Also run the shortcut stress suite."})
    stress_seed: int = field(default=0, metadata={"help": "Seed of the stress suite's random placements."})
    bootstrap_samples: int = field(
        default=1000, metadata={"help": "Bootstrap resamples behind each metric's 95 %% interval (0: none)."}
    )


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(EvaluationArguments).parse_args_into_dataclasses(args=argv)
    cli.setup_logging()
    state = process_state()
    dataset = load_image_dataset(args.dataset_name_or_dir)
    split = args.split or _only_split(dataset)
    if split not in dataset:
        raise PneumoLensError(f"No split '{split}' in {args.dataset_name_or_dir}; it has {sorted(dataset)}.")
    # SDPA: scoring reads no attention maps.
    model, processor = load_model_and_processor(ModelSource(args.model_name_or_path, args.model_revision), "sdpa")
    model = model.to(state.device)
    data = drop_unreadable(dataset[split], split)
    if args.stress:
        rows = map_in_order(lambda indices: _stressed_rows(model, processor, data, indices, args), len(data), state)
        probabilities = {name: np.array([row[name] for row in rows]) for name in rows[0]} if rows else {}
    else:
        probabilities = {CLEAN: np.array(map_in_order(
            lambda indices: list(predict_probabilities(model, processor, data.select(indices), args.batch_size)),
            len(data), state))}
    if not state.is_main_process:
        return
    metrics = evaluate_model(model, processor, data, args.output_dir, split, args.threshold,
                             probabilities=probabilities[CLEAN], bootstrap_samples=args.bootstrap_samples)
    print(json.dumps(metrics, indent=2))
    print(metrics_table(metrics))
    if args.stress:
        stress = run_stress_suite(model, processor, data, Path(args.output_dir) / "stress", args.threshold,
                                  seed=args.stress_seed, probabilities=probabilities)
        print(stress_table(stress["changes"], stress["negative_label"], stress["positive_label"]))


def _stressed_rows(model, processor, data, indices: list[int], args) -> list[dict]:
    """Per image of `data` at `indices`: {change: probabilities}, the unchanged image under CLEAN."""
    probabilities = predict_stressed(model, processor, image_sources(data.select(indices)), seed=args.stress_seed,
                                     batch_size=args.batch_size, positions=indices)
    return [{name: values[row] for name, values in probabilities.items()} for row in range(len(indices))]


def _only_split(dataset) -> str:
    if len(dataset) == 1:
        return next(iter(dataset))
    raise PneumoLensError(f"The data has several splits {sorted(dataset)}; choose one with --split.")


if __name__ == "__main__":
    cli.run(main)
