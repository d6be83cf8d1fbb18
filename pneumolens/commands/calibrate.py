"""Fit the calibration of a saved binary model on its carved validation split and fold its decision
into the classifier (`pneumolens.calibration`); the weights, config and card are updated in place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import cli
from ..calibration import CALIBRATION_DIR, calibrate, write_card_section
from ..data import carved_split, model_label_ids, patient_groups
from ..errors import PneumoLensError
from ..evaluation import predict_probabilities
from ..modeling import ModelSource, load_model_and_processor, positive_index, save_model, stored_dtype
from ..training import save_atomically


def add_arguments(parser) -> None:
    cli.add_model_dir_options(parser, "Local model directory; weights, config and card are updated in it.")


def run(args) -> None:
    model_dir = local_model_dir(args.model_name_or_path)
    model, processor = load_model_and_processor(ModelSource(str(model_dir)), attention="sdpa")
    _, validation = carved_split(args.dataset_name_or_dir, args.validation_fraction, args.seed)
    print(json.dumps(calibrate_saved_model(model, processor, model_dir, validation, args.command_line), indent=2))


def calibrate_saved_model(model, processor, model_dir: Path, validation, command: str,
                          probabilities: np.ndarray | None = None, batch_size: int = 32) -> dict:
    """Fit the calibration of `model` (saved in `model_dir`) on the carved `validation` split (its shown
    probabilities given, or predicted here), fold the decision into the classifier, save the weights in their
    stored dtype and write the card's section where the model has a card. Returns the record."""
    truth = np.array(model_label_ids(validation, model.config)) == positive_index(model.config)
    if probabilities is None:
        probabilities = predict_probabilities(model, processor, validation, batch_size)
    storage_dtype = stored_dtype(model_dir)
    record = calibrate(model, truth, probabilities, patient_groups(validation), model_dir / CALIBRATION_DIR,
                       storage_dtype)
    with save_atomically(model_dir) as staging:
        save_model(model, staging, storage_dtype)
    write_card_section(model_dir, record, command)
    return record


def local_model_dir(name: str) -> Path:
    """A command that writes into a model needs it on disk."""
    if not Path(name).is_dir():
        raise PneumoLensError(f"Model directory not found: {name}")
    return Path(name)
