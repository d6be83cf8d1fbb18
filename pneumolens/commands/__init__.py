"""The command-line entry points: thin argparse front ends over the library, one module per command.

    python -m pneumolens calibrate --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens fit-ood   --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens push      MODEL_DIR --repo_id NAME [--private] [--revision BRANCH]

`explain.py`'s subcommands live here too (`maps`, `report`, `checks`); `train_hf.py` and
`evaluate_hf.py` are scripts of their own, in the shape of the Transformers examples. Each module has
`add_arguments(parser)` and `run(args)`; every command's `main(argv)` is callable in-process.
"""

from __future__ import annotations

import shlex
import sys

from .. import cli
from . import calibrate, fit_ood, push

COMMANDS = {"calibrate": calibrate, "fit-ood": fit_ood, "push": push}


def build_parser():
    parser = cli.parser("python -m pneumolens", "PneumoLens commands that update or publish a saved model.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_arguments(subcommands.add_parser(name, help=module.HELP, description=module.__doc__,
                                                    formatter_class=parser.formatter_class))
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cli.setup_logging()
    args.command_line = "python -m pneumolens " + shlex.join(argv)
    COMMANDS[args.command].run(args)
