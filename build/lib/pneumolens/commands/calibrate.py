"""Fit the calibration of a saved binary model on its carved validation split and fold its decision
into the classifier (`pneumolens.calibration`); the weights, config and card are updated in place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import cli
from ..calibration import CALIBRATION_DIR, calibrate, calibration_section
from ..card import set_card_section
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
    truth = np.array(model_label_ids(validation, model.config)) == positive_index(model.config)
    probabilities = predict_probabilities(model, processor, validation)
    storage_dtype = stored_dtype(model_dir)
    record = calibrate(model, truth, probabilities, patient_groups(validation), model_dir / CALIBRATION_DIR,
                       storage_dtype)
    with save_atomically(model_dir) as staging:
        save_model(model, staging, storage_dtype)
    if (model_dir / "README.md").is_file():
        set_card_section(model_dir / "README.md", "Calibration", calibration_section(record, args.command_line))
    print(json.dumps(record, indent=2))


def local_model_dir(name: str) -> Path:
    """A command that writes into a model needs it on disk."""
    if not Path(name).is_dir():
        raise PneumoLensError(f"Model directory not found: {name}")
    return Path(name)
