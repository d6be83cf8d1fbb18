"""`explain.py sanity | select | faithfulness | artifacts | markings`: how far the maps can be trusted,
measured on images of a data set (the carved validation split by default), printed as Markdown and,
with --card, written into the model's card."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tqdm.auto import tqdm

from .. import cli
from ..card import set_card_section
from ..data import (VALIDATION_PARTS, balanced_sample, carved_validation, image_sources, load_image_dataset,
                    validation_parts)
from ..errors import PneumoLensError
from ..explain import TITLES, Explainer, layout_of
from ..explain.artifacts import NORM_RATIO, artifact_report, artifact_section
from ..explain.faithfulness import FaithfulnessSettings, faithfulness_markdown, measure_faithfulness
from ..explain.gradcam import CAMS
from ..explain.markings import MARKINGS, marking_report, markings_section
from ..explain.reading import reading_report, reading_section
from ..explain.options import SETTINGS_FILE, options_for
from ..explain.rollout import HEAD_FUSIONS
from ..explain.sanity import randomization_check, sanity_section, sanity_table
from ..explain.selection import candidates, choose_settings, selection_markdown
from ..modeling import is_transformer, load_model_and_processor
from ..preprocessing import input_size
from ..service import PneumoLensService
from .explain_maps import source_of

logger = logging.getLogger("explain")

CARVED = "carved_validation"


def add_sanity_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", help="Image files to compare maps on.")
    cli.add_model_options(parser)
    parser.add_argument("--out", default=None, help="Write the report as JSON here.")
    parser.add_argument("--card", action="store_true", help="Also write the table into the model's README.md card.")


def add_dataset_arguments(parser, num_images: int = 120, part: str = "all") -> None:
    cli.add_dataset_option(parser, "Hub data set id or local imagefolder directory (as train_hf.py takes it).")
    parser.add_argument("--split", default=CARVED,
                        help=f"'{CARVED}' (the split train_hf.py carves with --validation_fraction and --seed) "
                             "or a split of the data set. Never tune anything on a test split.")
    parser.add_argument("--part", default=part, choices=["all", *VALIDATION_PARTS],
                        help="Of the carved split: all of it, or one of its two disjoint halves (by patient): "
                             "'select' chooses settings on 'selection', 'faithfulness' confirms on 'confirmation'.")
    cli.add_split_options(parser)
    cli.add_model_options(parser)
    parser.add_argument("--num_images", type=int, default=num_images, help="Images, split evenly between the classes.")
    parser.add_argument("--card", action="store_true", help="Also write the result into the model's README.md card.")


def add_artifacts_arguments(parser) -> None:
    add_dataset_arguments(parser, num_images=100)
    parser.add_argument("--norm_ratio", type=float, default=NORM_RATIO,
                        help="A token is high-norm above this multiple of the image's median patch-token norm.")
    parser.add_argument("--out", default=None, help="Write per-image figures and the summary as JSON here.")


def add_markings_arguments(parser) -> None:
    add_dataset_arguments(parser, num_images=100)
    parser.add_argument("--markings", nargs="+", default=list(MARKINGS), choices=MARKINGS)
    parser.add_argument("--out", default=None, help="Write per-image figures and the summary as JSON here.")


def add_select_arguments(parser) -> None:
    add_dataset_arguments(parser, num_images=24, part="selection")
    parser.add_argument("--gradcam_layers", nargs="+", default=None,
                        help="Grad-CAM layer candidates BLOCK.PART, block counted from 0 (default: every part of the last three blocks, "
                             "or the last three ConvNeXt stages).")
    parser.add_argument("--cams", nargs="+", default=["gradcam"], choices=list(CAMS), help="CAM candidates.")
    parser.add_argument("--head_fusions", nargs="+", default=["mean", "max"], choices=HEAD_FUSIONS)
    parser.add_argument("--discard_ratios", nargs="+", type=float, default=[0.0, 0.5])
    parser.add_argument("--steps", type=int, default=8, help="Steps on each deletion / insertion curve.")
    parser.add_argument("--out", default=None, help=f"Where to write the settings (default: MODEL/{SETTINGS_FILE} "
                        "for a local model directory).")


def add_faithfulness_arguments(parser) -> None:
    add_dataset_arguments(parser, part="confirmation")
    parser.add_argument("--steps", type=int, default=10, help="Steps on each deletion / insertion curve.")
    parser.add_argument("--road_percentiles", type=int, nargs="*", default=[30, 50, 70],
                        help="ROAD keeps this %% of the pixels in turn (none: no ROAD; its imputation is slow).")
    parser.add_argument("--out", default=None, help="Write per-image scores and the summary as JSON here "
                        "(the app reads MODEL/eval/faithfulness.json to order and vet its maps).")


def run_sanity(args) -> None:
    model, processor = load_model_and_processor(source_of(args))
    report = randomization_check(model, processor, args.images, options=options_for(source_of(args)))
    print(sanity_table(report))
    write_outputs(args, report, "Explanations: sanity check",
                  sanity_section(report, len(args.images), args.command_line))


def run_faithfulness(args) -> None:
    model, processor = load_model_and_processor(source_of(args))
    settings = FaithfulnessSettings(steps=args.steps, road_percentiles=tuple(args.road_percentiles), seed=args.seed)
    result = measure_faithfulness(Explainer(model, processor), sampled_images(args), settings,
                                  options_for(source_of(args)),
                                  progress=lambda items: tqdm(items, desc="faithfulness", unit="image"))
    text = faithfulness_markdown(result, data_description(args), args.command_line, TITLES)
    print(text)
    write_outputs(args, result, "Explanations: faithfulness", text)


def run_select(args) -> None:
    dataset = sampled_images(args)
    model, processor = load_model_and_processor(source_of(args))
    layout = layout_of(model, input_size(processor))
    found = candidates(layout.kind, len(layout.blocks), args.gradcam_layers, args.cams, args.head_fusions,
                       args.discard_ratios)
    stored = choose_settings(Explainer(model, processor), dataset, found, args.seed, args.steps,
                             progress=lambda items: tqdm(items, desc="select", unit="image"),
                             data=data_description(args))
    stored["selection"]["command"] = args.command_line
    text = selection_markdown(stored, args.part, args.command_line)
    print(text)
    model_dir = Path(args.model_name_or_path)
    out = args.out or (str(model_dir / SETTINGS_FILE) if model_dir.is_dir() else None)
    write_outputs(argparse.Namespace(**{**vars(args), "out": out}), stored, "Explanations: method settings", text)
    if out:
        logger.info("Wrote the chosen settings %s to %s", stored["settings"], out)


def run_artifacts(args) -> None:
    dataset = sampled_images(args)
    model, processor = load_model_and_processor(source_of(args))
    if not is_transformer(model.config):
        raise PneumoLensError(f"{model.config.model_type} has no attention maps, so no artifact tokens to measure.")
    report = artifact_report(Explainer(model, processor), image_sources(dataset), args.norm_ratio)
    text = artifact_section(report, data_description(args), args.command_line)
    print(text)
    write_outputs(args, report, "Explanations: artifact tokens", text)


def run_markings(args) -> None:
    dataset = sampled_images(args)
    model, processor = load_model_and_processor(source_of(args))
    report = marking_report(Explainer(model, processor), image_sources(dataset), args.markings, args.seed,
                            options_for(source_of(args)),
                            progress=lambda items: tqdm(items, desc="markings", unit="image"))
    text = markings_section(report, args.markings, args.num_images, data_description(args), args.command_line,
                            TITLES)
    print(text)
    write_outputs(args, report, "Explanations: burned-in text", text)


def add_reading_arguments(parser) -> None:
    add_dataset_arguments(parser, num_images=200)
    parser.add_argument("--out", default=None, help="Write the summary as JSON here.")


def run_reading(args) -> None:
    dataset = sampled_images(args)
    service = PneumoLensService(source_of(args))
    analyses = (service.analyse(image) for image in tqdm(image_sources(dataset), desc="reading", unit="image"))
    # Each film's maps in the order the app reads them (`Analysis.readings`).
    report = reading_report([{name: analysis.explanation.input_maps[name] for name in analysis.readings}
                             for analysis in analyses])
    text = reading_section(report, TITLES, data_description(args), args.command_line)
    print(text)
    write_outputs(args, report, "Explanations: reading the maps", text)


def data_description(args) -> str:
    if args.split == CARVED:
        part = "" if getattr(args, "part", "all") == "all" else f", its '{args.part}' half"
        return (f"the carved validation split of `{args.dataset_name_or_dir}` (fraction {args.validation_fraction}, "
                f"seed {args.seed}{part})")
    return f"split `{args.split}` of `{args.dataset_name_or_dir}`"


def sampled_images(args):
    if args.split == CARVED:
        dataset = carved_validation(args.dataset_name_or_dir, args.validation_fraction, args.seed)
        if args.part != "all":
            dataset = validation_parts(dataset, args.seed)[args.part]
    else:
        if args.split == "test":
            logger.warning("Measuring on the test split: report it, never choose methods or settings by it.")
        splits = load_image_dataset(args.dataset_name_or_dir)
        if args.split not in splits:
            raise PneumoLensError(f"{args.dataset_name_or_dir} has no split '{args.split}' (splits: {list(splits)}).")
        dataset = splits[args.split]
    return balanced_sample(dataset, args.num_images, args.seed)


def write_outputs(args, report: dict, card_heading: str, card_body: str) -> None:
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.card:
        card = Path(args.model_name_or_path) / "README.md"
        if not card.is_file():
            raise PneumoLensError(f"--card needs a local model directory with a README.md card: {card}")
        set_card_section(card, card_heading, card_body)
        logger.info("Wrote '%s' into %s", card_heading, card)
