"""Index a saved model's training films by the model's own features (`pneumolens.similar`), for the app's
row of similar training films; measure retrieval on the carved validation split and write it into eval/
and the card. Run it under `accelerate launch -m pneumolens index-films ...` to share the work between
processes or machines."""

from __future__ import annotations

import json
from pathlib import Path

from .. import cli
from ..data import drop_unreadable, is_local, load_image_dataset, split_by_patient
from ..distributed import process_state
from ..modeling import ModelSource, load_model_and_processor
from ..similar import index_training_films
from .calibrate import local_model_dir


def add_arguments(parser) -> None:
    cli.add_model_dir_options(parser, "Local model directory; the index is saved into it.")
    parser.add_argument("--batch_size", type=int, default=32, help="Images per forward pass.")


def run(args) -> None:
    model_dir = local_model_dir(args.model_name_or_path)
    model, processor = load_model_and_processor(ModelSource(str(model_dir)), attention="sdpa")
    model = model.to(process_state().device)  # under `accelerate launch`, each process on its own device
    films = drop_unreadable(load_image_dataset(args.dataset_name_or_dir)["train"], "train")
    _, carved = split_by_patient(films, args.validation_fraction, args.seed)  # as train_hf.py carves it
    # A local folder is named, never the path to it: the card may be published.
    data = Path(args.dataset_name_or_dir).name if is_local(args.dataset_name_or_dir) else args.dataset_name_or_dir
    quality = index_training_films(model, processor, films, carved, model_dir, data, args.command_line,
                                   args.batch_size)
    if quality is not None:
        print(json.dumps(quality, indent=2))
