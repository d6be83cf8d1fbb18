"""What the command-line scripts share: logging set-up, one-line errors for bad input, and one vocabulary
of options.

The options are spelt as in the Transformers examples (`--model_name_or_path`, `--dataset_name_or_dir`,
`--model_revision`); the spellings of earlier versions still work as aliases (`OLD_SPELLINGS`). The
defaults that must agree between commands (the carved validation split of `train_hf.py`) are the data
module's own (`data.VALIDATION_FRACTION`, `data.SEED`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from .data import SEED, VALIDATION_FRACTION  # noqa: F401 (the split options' defaults; cli.SEED for scripts)
from .errors import PneumoLensError

MODEL, MODEL_REVISION, DATASET = "--model_name_or_path", "--model_revision", "--dataset_name_or_dir"
OLD_SPELLINGS = {"--model": MODEL, "--revision": MODEL_REVISION, "--data_dir": DATASET,
                 "--target": "--explained_index"}
ALIASES = {new: old for old, new in OLD_SPELLINGS.items()}


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


def parser(prog: str, description: str | None, **kwargs) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def add_option(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
    """`name` and, where it had another spelling before, that spelling too."""
    spellings = [name, ALIASES[name]] if name in ALIASES else [name]
    parser.add_argument(*spellings, dest=name.lstrip("-"), **kwargs)


def add_model_options(parser: argparse.ArgumentParser, help: str | None = None, required: bool = False,
                      revision: bool = True) -> None:
    """--model_name_or_path (default: MODEL_ID or the bundled model) and --model_revision."""
    from .modeling import default_model_source

    default = None if required else default_model_source()
    add_option(parser, MODEL, required=required, default=default and default.name_or_path,
               help=help or "Hub id or local directory (default: MODEL_ID or the bundled model).")
    if revision:
        add_option(parser, MODEL_REVISION, default=default and default.revision,
                   help="Hub revision: branch, tag or commit (default: MODEL_REVISION).")


def add_dataset_option(parser: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    add_option(parser, DATASET, required=required, help=help)


def add_split_options(parser: argparse.ArgumentParser) -> None:
    """--validation_fraction and --seed as train_hf.py takes them: the same patient split."""
    parser.add_argument("--validation_fraction", type=float, default=VALIDATION_FRACTION,
                        help="As given to train_hf.py.")
    parser.add_argument("--seed", type=int, default=SEED, help="As given to train_hf.py: the same patient split.")


def add_model_dir_options(parser: argparse.ArgumentParser, model_help: str) -> None:
    """The options of a command that updates a saved model from its carved validation split."""
    add_model_options(parser, model_help, required=True, revision=False)
    add_dataset_option(parser, "Imagefolder with a train split, or a Hub data set id (as for train_hf.py).")
    add_split_options(parser)
