#!/usr/bin/env python
"""Evaluate any PneumoLens-compatible model on any imagefolder directory, without training.

    python evaluate_hf.py --model models/pneumolens-dinov2-small \\
        --data_dir ../shared/data/chest_xray --split validation --output_dir outputs/eval

Writes metrics.json, predictions.csv, roc_curve.png and confusion_matrix.png to --output_dir. The
decision threshold is the one saved in the model's config unless --threshold is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from pneumolens import cli
from pneumolens.data import drop_unreadable, load_image_dataset
from pneumolens.errors import PneumoLensError
from pneumolens.evaluation import evaluate_model
from pneumolens.modeling import ModelSource, load_image_processor, load_model


@dataclass
class EvaluationArguments:
    model: str = field(metadata={"help": "Hub id or local directory of the model to evaluate."})
    data_dir: str = field(
        metadata={"help": "Imagefolder directory (SPLIT/CLASS/IMAGE or CLASS/IMAGE), or a Hub data set id."}
    )
    split: str | None = field(
        default=None, metadata={"help": "Split to evaluate (e.g. test, validation); needed if there are several."}
    )
    output_dir: str = field(default="outputs/eval", metadata={"help": "Where the metrics and plots go."})
    revision: str | None = field(default=None, metadata={"help": "Hub model revision."})
    threshold: float | None = field(
        default=None, metadata={"help": "Decision threshold; default: the model's saved operating threshold."}
    )
    batch_size: int = field(default=32, metadata={"help": "Images per forward pass."})


def main() -> None:
    (args,) = HfArgumentParser(EvaluationArguments).parse_args_into_dataclasses()
    cli.setup_logging()
    dataset = load_image_dataset(args.data_dir)
    split = args.split or _only_split(dataset)
    if split not in dataset:
        raise PneumoLensError(f"No split '{split}' in {args.data_dir}; it has {sorted(dataset)}.")
    source = ModelSource(args.model, args.revision)
    model, processor = load_model(source), load_image_processor(source)
    metrics = evaluate_model(model, processor, drop_unreadable(dataset[split], split), args.output_dir,
                             split, args.threshold, args.batch_size)
    print(json.dumps(metrics, indent=2))


def _only_split(dataset) -> str:
    if len(dataset) == 1:
        return next(iter(dataset))
    raise PneumoLensError(f"The data has several splits {sorted(dataset)}; choose one with --split.")


if __name__ == "__main__":
    cli.run(main)
