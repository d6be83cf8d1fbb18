"""Choose the referral band and the stability rule of a saved binary model on its carved validation split and
the split's stressed copies (`pneumolens.referral`); both go into the model's config, the figures (and the
probabilities they were computed from) into eval/referral and its card. The weights are not touched: the
rule is a few numbers beside the threshold."""

from __future__ import annotations

import json

import numpy as np

from .. import cli
from ..data import carved_split, image_sources, model_label_ids
from ..errors import PneumoLensError
from ..modeling import ModelSource, load_model_and_processor, positive_index
from ..referral import (
    CONFIDENCE, PROBABILITIES_FILE, REFERRAL_DIR, STABILITY_CHANGES, TARGET_ERROR, checked_probabilities,
    load_probabilities, update_model_referral,
)
from ..stress import SELECTION_CHANGES, predict_stressed, stress_change
from .calibrate import local_model_dir


def add_arguments(parser) -> None:
    cli.add_model_dir_options(parser, "Local model directory; its config and card are updated in it.")
    parser.add_argument("--target_error", type=float, default=TARGET_ERROR,
                        help="The error rate among the films decided that the band must keep, on the carved split "
                             "and each stressed copy (default %(default)s).")
    parser.add_argument("--confidence", type=float, default=CONFIDENCE,
                        help="With this confidence (default %(default)s).")
    parser.add_argument("--stability_changes", nargs="*", default=list(STABILITY_CHANGES),
                        help="The stress changes the stability rule may use, in the order its nested sets take "
                             "them (default: %(default)s); none: the band alone.")
    parser.add_argument("--from_saved_probabilities", action="store_true",
                        help=f"Choose again from the probabilities an earlier run saved ({REFERRAL_DIR}/"
                             f"{PROBABILITIES_FILE}), with no forward pass: for another target or confidence.")
    parser.add_argument("--batch_size", type=int, default=32, help="Images per forward pass.")


def run(args) -> None:
    model_dir = local_model_dir(args.model_name_or_path)
    changes = tuple(args.stability_changes)
    for name in changes:
        stress_change(name)  # an unknown name fails here, before any forward pass
    if args.from_saved_probabilities:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_dir)
        truth, probabilities = load_probabilities(model_dir / REFERRAL_DIR / PROBABILITIES_FILE)
        missing = [name for name in changes if name not in probabilities["none"]]
        if missing:
            raise PneumoLensError(f"The saved probabilities have no films checked under {', '.join(missing)}; "
                                  "run the command without --from_saved_probabilities.")
    else:
        model, processor = load_model_and_processor(ModelSource(str(model_dir)), attention="sdpa")
        config = model.config
        _, validation = carved_split(args.dataset_name_or_dir, args.validation_fraction, args.seed)
        truth = np.array(model_label_ids(validation, config)) == positive_index(config)
        # The stressed copies train_hf.py selects its checkpoint on, seeded as it seeds them.
        images = image_sources(validation)
        stressed = predict_stressed(model, processor, images, tuple(stress_change(name) for name in SELECTION_CHANGES),
                                    args.seed, args.batch_size)
        probabilities = checked_probabilities(model, processor, images, stressed, changes, args.seed, args.batch_size)
    record = update_model_referral(model_dir, config, truth, probabilities, changes, args.target_error,
                                   args.confidence, args.command_line)
    print(json.dumps(record, indent=2))
