"""Choose the referral band of a saved binary model on its carved validation split and the split's stressed
copies (`pneumolens.referral`); the band goes into the model's config, the figures into eval/referral and
its card. The weights are not touched: the band is two numbers beside the threshold."""

from __future__ import annotations

import json

import numpy as np

from .. import cli
from ..data import carved_split, image_sources, model_label_ids
from ..modeling import ModelSource, load_model_and_processor, positive_index
from ..referral import CONFIDENCE, TARGET_ERROR, update_model_band
from ..stress import SELECTION_CHANGES, predict_stressed, stress_change
from .calibrate import local_model_dir


def add_arguments(parser) -> None:
    cli.add_model_dir_options(parser, "Local model directory; its config and card are updated in it.")
    parser.add_argument("--target_error", type=float, default=TARGET_ERROR,
                        help="The error rate among the films decided that the band must keep, on the carved split "
                             "and each stressed copy (default %(default)s).")
    parser.add_argument("--confidence", type=float, default=CONFIDENCE,
                        help="With this confidence (default %(default)s).")
    parser.add_argument("--batch_size", type=int, default=32, help="Images per forward pass.")


def run(args) -> None:
    model_dir = local_model_dir(args.model_name_or_path)
    model, processor = load_model_and_processor(ModelSource(str(model_dir)), attention="sdpa")
    _, validation = carved_split(args.dataset_name_or_dir, args.validation_fraction, args.seed)
    positive = positive_index(model.config)
    truth = np.array(model_label_ids(validation, model.config)) == positive
    # The stressed copies train_hf.py selects its checkpoint on, seeded as it seeds them.
    changes = tuple(stress_change(name) for name in SELECTION_CHANGES)
    probabilities = predict_stressed(model, processor, image_sources(validation), changes, args.seed, args.batch_size)
    record = update_model_band(model_dir, model.config, truth,
                               {name: p[:, positive] for name, p in probabilities.items()},
                               args.target_error, args.confidence, args.command_line)
    print(json.dumps(record, indent=2))
