"""`python -m pneumolens COMMAND`: see `pneumolens.commands`."""

from pneumolens import cli
from pneumolens.commands import main

cli.run(main)
