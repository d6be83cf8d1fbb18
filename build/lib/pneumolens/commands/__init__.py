"""The command-line entry points: thin argparse front ends over the library, one module per command.

    python -m pneumolens calibrate --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens referral-band --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens fit-ood   --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens index-films --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens push      MODEL_DIR --repo_id NAME [--private] [--revision BRANCH]

`explain.py`'s subcommands live here too (`explain_maps`, `explain_report`, `explain_checks`);
`train_hf.py` and `evaluate_hf.py` are scripts of their own, in the shape of the Transformers examples.
Each command module has `add_arguments(parser)` and `run(args)`; every `main(argv)` runs in-process.
"""

from __future__ import annotations

import shlex
import sys
from importlib import import_module

from .. import cli

COMMANDS = {  # name: (module, help)
    "calibrate": ("calibrate", "Calibrate a saved model's probabilities and fold its decision into the classifier."),
    "referral-band": ("referral_band", "Choose the band of probabilities where a saved model refers the film to a "
                                       "person, on its carved validation split and stressed copies."),
    "fit-ood": ("fit_ood", "Fit the out-of-distribution detector saved with a model."),
    "index-films": ("index_films", "Index a saved model's training films by its own features, for the similar "
                                   "training films the app shows beside the maps."),
    "push": ("push", "Upload a saved model folder (weights, processor, config, card, eval/ figures, "
                     "out-of-distribution detector) in one commit."),
}


def command_module(name: str):
    return import_module(f"{__name__}.{COMMANDS[name][0]}")


def build_parser(only: str | None = None):
    """Every command's parser, or with `only` that command's alone in full (the others by name and help),
    so that `push` does not import what `calibrate` needs."""
    parser = cli.parser("python -m pneumolens", "PneumoLens commands that update or publish a saved model.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help) in COMMANDS.items():
        subcommand = subcommands.add_parser(name, help=help, formatter_class=parser.formatter_class)
        if only in (None, name):
            module = command_module(name)
            subcommand.description = module.__doc__
            module.add_arguments(subcommand)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(only).parse_args(argv)
    cli.setup_logging()
    args.command_line = "python -m pneumolens " + shlex.join(argv)
    command_module(args.command).run(args)
