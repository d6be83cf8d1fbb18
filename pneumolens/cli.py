"""What the command-line scripts share: logging set-up and one-line errors for bad input."""

from __future__ import annotations

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
