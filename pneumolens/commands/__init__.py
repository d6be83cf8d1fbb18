"""The command-line entry points: thin argparse front ends over the library, every command in one registry
(`COMMANDS`) of one shape, read by both front doors.

    python -m pneumolens calibrate --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens referral-band --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens fit-ood   --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens index-films --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    python -m pneumolens push      MODEL_DIR --repo_id NAME [--private] [--revision BRANCH]
    python explain.py [maps | report | sanity | select | faithfulness | artifacts | markings | reading] ...

A command is a name, a description, the function that adds its arguments and the one that runs it, in a
module of this package that is imported only when the command is built or run (so that `push` does not
import what `calibrate` needs). `train_hf.py` and `evaluate_hf.py` are scripts of their own, in the shape
of the Transformers examples. Every `main(argv)` runs in-process.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from importlib import import_module

from .. import cli

PNEUMOLENS = "python -m pneumolens"
EXPLAIN = "explain.py"


@dataclass(frozen=True)
class Command:
    program: str  # the front door that runs it: PNEUMOLENS or EXPLAIN
    name: str
    summary: str  # its line in the program's list of commands
    module: str  # under pneumolens.commands
    description: str | None = None  # its --help text; None: the module's docstring
    arguments: str = "add_arguments"  # the module's function that adds its arguments to a parser
    run: str = "run"  # the module's function that runs it on the parsed arguments

    def loaded(self):
        """Its module, imported."""
        return import_module(f"{__name__}.{self.module}")

    def function(self, name: str):
        return getattr(self.loaded(), name)

    def add_to(self, subcommands, full: bool) -> None:
        """This command's parser; with `full`, its arguments and description too (which imports its module)."""
        parser = subcommands.add_parser(self.name, prog=f"{self.program} {self.name}",
                                        help=self.summary.replace("%", "%%"))  # argparse %-formats help
        if full:
            parser.description = self.description or self.loaded().__doc__
            self.function(self.arguments)(parser)


COMMANDS = (
    Command(PNEUMOLENS, "calibrate", "Calibrate a saved model's probabilities and fold its decision into the "
            "classifier.", "calibrate"),
    Command(PNEUMOLENS, "referral-band", "Choose the band of probabilities where a saved model refers the film to "
            "a person, on its carved validation split and stressed copies.", "referral_band"),
    Command(PNEUMOLENS, "fit-ood", "Fit the out-of-distribution detector saved with a model.", "fit_ood"),
    Command(PNEUMOLENS, "index-films", "Index a saved model's training films by its own features, for the similar "
            "training films the app shows beside the maps.", "index_films"),
    Command(PNEUMOLENS, "push", "Upload a saved model folder (weights, processor, config, card, eval/ figures, "
            "out-of-distribution detector) in one commit.", "push"),
    Command(EXPLAIN, "maps", "Per image: one overlay PNG per method with its colour scale, the raw maps (.npy), a "
            "side-by-side figure and the record as JSON.", "explain_maps"),
    Command(EXPLAIN, "report", "One self-contained HTML report per image and a CSV summary of all of them.",
            "explain_report", "One self-contained HTML report per image (image, maps, probabilities, decision, "
            "threshold, out-of-distribution verdict, model and date) and a CSV summary of all of them."),
    Command(EXPLAIN, "sanity", "Model-parameter randomisation check: do the maps change when the weights are "
            "random?", "explain_checks", "Model-parameter randomisation check: per method, the mean and per-image "
            "Spearman correlation of the trained model's maps and the random-weight model's, and whether the "
            "method passes (the maps must change when the weights are random).", "add_sanity_arguments",
            "run_sanity"),
    Command(EXPLAIN, "select", "Choose each method's settings by faithfulness.", "explain_checks",
            "Choose each method's settings by faithfulness (the candidate whose worst 95 % lower bound over the "
            "deletion and insertion curves, against the random map of its granularity, is highest) and store "
            "them in MODEL/eval/explanation_settings.json, where the app, the command line and the reports read "
            "them.", "add_select_arguments", "run_select"),
    Command(EXPLAIN, "faithfulness", "Deletion and insertion curves of the explained class's log-odds and ROAD, "
            "per method and for random maps.", "explain_checks",
            "Deletion and insertion curves of the explained class's log-odds (blur and mean fills) and ROAD, "
            "per method and for random maps (of each map's own granularity, and per pixel), with paired "
            "bootstrap 95 % intervals (BCa). The maps are made with the model's stored settings.",
            "add_faithfulness_arguments", "run_faithfulness"),
    Command(EXPLAIN, "artifacts", "High-norm artifact tokens (Darcet et al. 2024) and the share of attention "
            "rollout's and the transformer attribution's mass they hold.", "explain_checks", None,
            "add_artifacts_arguments", "run_artifacts"),
    Command(EXPLAIN, "markings", "Burned-in text from the stress suite pasted onto each image: the share of each "
            "map's mass on it.", "explain_checks",
            "Burned-in text from the stress suite pasted onto each image: the share of each map's mass on it, "
            "and the lift (that share over the share of the input it covers).", "add_markings_arguments",
            "run_markings"),
    Command(EXPLAIN, "reading", "Where each map's strongest region lies (the film's edge or its centre) and "
            "which maps agree, over a data set.", "explain_checks",
            "Where each map's strongest region lies (the film's edge or its centre) and which maps agree, over a "
            "data set: what the app's reading of the maps says on every analysis, and the overlap two maps of "
            "different films reach, which agreement must beat.", "add_reading_arguments", "run_reading"),
)


def commands_of(program: str) -> dict[str, Command]:
    return {command.name: command for command in COMMANDS if command.program == program}


def build_parser(program: str = PNEUMOLENS, description: str | None = None, only: str | None = None):
    """The program's parser: every command in full, or with `only` that command in full and the others by
    name and summary ("": none in full)."""
    parser = cli.parser(program, description or "PneumoLens commands that update or publish a saved model.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands_of(program).values():
        command.add_to(subcommands, full=only in (None, command.name))
    return parser


def main(argv: list[str] | None = None, program: str = PNEUMOLENS, description: str | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = commands_of(program)
    # Only the command named is built in full: the program's own --help lists the others by name and summary
    # without importing what each of them needs.
    args = build_parser(program, description, argv[0] if argv and argv[0] in chosen else "").parse_args(argv)
    cli.setup_logging()
    # The command as a person types it, for the cards and reports: `explain.py IMAGE...` is how maps is typed.
    typed = argv[1:] if program == EXPLAIN and argv[:1] == ["maps"] else argv
    args.command_line = (program if program == PNEUMOLENS else f"python {program}") + " " + shlex.join(typed)
    chosen[args.command].function(chosen[args.command].run)(args)
