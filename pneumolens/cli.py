"""What the command-line scripts share: logging set-up, one-line errors for bad input, and the
arguments of the commands that update a saved model."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from .errors import PneumoLensError


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    import transformers

    transformers.utils.logging.set_verbosity(max(level, logging.WARNING))


def run(main: Callable[[], object]) -> None:
    """Run `main`; a `PneumoLensError` ends the program with its message on one line and status 2."""
    try:
        main()
    except PneumoLensError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def model_dir_parser(prog: str, description: str, model_help: str) -> argparse.ArgumentParser:
    """The parser of a command that updates a saved model from its carved validation split: --model, and
    --data_dir, --validation_fraction and --seed as train_hf.py takes them (the same patient split)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--data_dir", required=True, help="Imagefolder with a train split (as for train_hf.py).")
    parser.add_argument("--validation_fraction", type=float, default=0.15, help="As in train_hf.py.")
    parser.add_argument("--seed", type=int, default=42, help="As in train_hf.py: the same patient split.")
    return parser

