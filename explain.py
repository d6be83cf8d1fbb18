#!/usr/bin/env python
"""Explain chest X-ray predictions with every registered method (transformer attribution, attention
rollout, gradient saliency, Grad-CAM), and measure how far the maps can be trusted.

    python explain.py [maps] IMAGE... [--model_name_or_path ID_OR_DIR] [--out DIR]
        Per image: one overlay PNG per method, the raw maps (.npy) and a side-by-side figure.
    python explain.py report IMAGE_OR_DIR... [--out DIR] [--robustness]
        One self-contained HTML report per image (as the app's "Report" button makes it) and summary.csv.
        Under `accelerate launch --num_processes N explain.py report ...` the images are split between N
        processes (one device each) and summary.csv gathers them all.
    python explain.py sanity IMAGE... [--out FILE.json]
        Model-parameter randomisation check: do the maps change when the weights are random?
    python explain.py select --dataset_name_or_dir DATA [--num_images N] [--out FILE.json] [--card]
        Choose Grad-CAM's layer and CAM and rollout's head fusion and discard ratio by faithfulness on the
        selection half of the carved validation split; writes MODEL/eval/explanation_settings.json.
    python explain.py faithfulness --dataset_name_or_dir DATA [--num_images N] [--out FILE.json] [--card]
        Log-odds deletion / insertion (blur and mean fills) and ROAD per method, against random maps of
        the map's own granularity and per pixel, with paired bootstrap 95 % intervals, on the confirmation
        half of the carved validation split (disjoint from the images `select` chose on).
    python explain.py artifacts --dataset_name_or_dir DATA [--num_images N] [--out FILE.json] [--card]
        High-norm artifact tokens and the share of rollout's and attribution's mass they hold.
    python explain.py markings --dataset_name_or_dir DATA [--num_images N] [--out FILE.json] [--card]
        How much of each map falls on burned-in text (laterality letter, time stamp, device code).
    python explain.py reading --dataset_name_or_dir DATA [--num_images N] [--out FILE.json] [--card]
        Where each map's strongest region lies (the film's edge or its centre) and which maps agree.

The model defaults to MODEL_ID or the bundled model (models/pneumolens-dinov2-small). The commands are
registered in pneumolens/commands (COMMANDS), with `python -m pneumolens`'s.
"""

from __future__ import annotations

import sys

from pneumolens import cli, commands

SUBCOMMANDS = tuple(commands.commands_of(commands.EXPLAIN))


def build_parser():
    return commands.build_parser(commands.EXPLAIN, __doc__)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `explain.py IMAGE...` is `explain.py maps IMAGE...`: the maps are what most people come for.
    if argv and argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv = ["maps", *argv]
    commands.main(argv, commands.EXPLAIN, __doc__)


if __name__ == "__main__":
    cli.run(main)
