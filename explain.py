#!/usr/bin/env python
"""Explain chest X-ray predictions with every registered method (transformer attribution, attention
rollout, gradient saliency, Grad-CAM), and measure how far the maps can be trusted.

    python explain.py IMAGE... [--model ID_OR_DIR] [--out DIR]
        Per image: one overlay PNG per method, the raw maps (.npy) and a side-by-side figure.
    python explain.py sanity IMAGE... [--model ID_OR_DIR] [--out FILE.json]
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
    python explain.py report IMAGE_OR_DIR... [--out DIR]
        One self-contained HTML report per image (as the app's "Report" button makes it) and summary.csv.
        Under `accelerate launch --num_processes N explain.py report ...` the images are split between N
        processes (one device each) and summary.csv gathers them all.

The model defaults to MODEL_ID or the bundled model (models/pneumolens-dinov2-small).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import textwrap
from pathlib import Path

import numpy as np

from pneumolens import cli
from pneumolens.card import set_card_section
from pneumolens.errors import PneumoLensError
from pneumolens.explain import METHODS, TITLES, Explainer, anatomy_of, overlay
from pneumolens.data import VALIDATION_PARTS, image_name, image_sources, model_label_ids
from pneumolens.explain.faithfulness import (FaithfulnessSettings, evaluate_faithfulness, faithfulness_table,
                                           pairs_table)
from pneumolens.explain.artifacts import NORM_RATIO, artifact_markdown, artifact_report
from pneumolens.explain.markings import MARKINGS, marking_report, markings_table
from pneumolens.explain.gradcam import CAMS
from pneumolens.explain.options import SETTINGS_FILE, options_for
from pneumolens.explain.rollout import HEAD_FUSIONS
from pneumolens.explain.selection import candidates, select_settings, selection_table
from pneumolens.explain.sanity import MAX_SPEARMAN, randomization_check, sanity_table
from pneumolens.preprocessing import input_size
from pneumolens.images import IMAGE_SUFFIXES
from pneumolens.presentation import COLORMAP, percent, scale_meaning, with_scale
from pneumolens.modeling import ModelSource, is_transformer, default_model_source, load_image_processor, load_model

logger = logging.getLogger("explain")

SUBCOMMANDS = ("sanity", "select", "faithfulness", "artifacts", "markings", "report")
CARVED = "carved_validation"


def model_arguments(parser: argparse.ArgumentParser) -> None:
    default = default_model_source()
    parser.add_argument("--model", default=default.name_or_path,
                        help="Hub id or local directory (default: MODEL_ID or the bundled model).")
    parser.add_argument("--revision", default=default.revision, help="Hub revision (default: MODEL_REVISION).")


def maps_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explain.py", description="Explanation maps for chest X-ray images.",
                                     epilog="Subcommands: 'explain.py sanity --help', 'explain.py faithfulness --help'.")
    parser.add_argument("images", nargs="+", help="Image files (JPEG, PNG, 16-bit PNG, ...).")
    model_arguments(parser)
    parser.add_argument("--out", default="outputs/explanations", help="Output directory.")
    parser.add_argument("--target", type=int, default=None, help="Class index to explain (default: predicted).")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--opacity", type=float, default=0.45, help="Overlay opacity in [0, 1].")
    colormap_argument(parser)
    stored = f"default: the model's {SETTINGS_FILE}, else "
    parser.add_argument("--head_fusion", default=None, choices=HEAD_FUSIONS, help=f"Rollout head fusion ({stored}mean).")
    parser.add_argument("--discard_ratio", type=float, default=None,
                        help=f"Rollout: share of weakest attention dropped ({stored}0).")
    parser.add_argument("--gradcam_layer", default=None, help=f"Grad-CAM layer BLOCK.PART, block counted from 0, e.g. 10.norm2 ({stored}"
                        "the last block's norm1 or the last stage).")
    parser.add_argument("--cam", default=None, choices=list(CAMS), help=f"Which CAM of the grad-cam package ({stored}gradcam).")
    parser.add_argument("--gradient_rollout", action="store_true", help="Class-specific, gradient-weighted rollout.")
    parser.add_argument("--smoothgrad", type=int, default=0, help="SmoothGrad noisy copies (0: vanilla gradient).")
    return parser


def sanity_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explain.py sanity", description=randomization_check.__doc__)
    parser.add_argument("images", nargs="+", help="Image files to compare maps on.")
    model_arguments(parser)
    parser.add_argument("--out", default=None, help="Write the report as JSON here.")
    parser.add_argument("--card", action="store_true", help="Also write the table into the model's README.md card.")
    return parser


def dataset_arguments(parser: argparse.ArgumentParser, num_images: int = 120, part: str = "all") -> None:
    parser.add_argument("--dataset_name_or_dir", required=True,
                        help="Hub data set id or local imagefolder directory (as train_hf.py takes it).")
    parser.add_argument("--split", default=CARVED,
                        help=f"'{CARVED}' (the split train_hf.py carves with --validation_fraction and --seed) "
                             "or a split of the data set. Never tune anything on a test split.")
    parser.add_argument("--part", default=part, choices=["all", *VALIDATION_PARTS],
                        help="Of the carved split: all of it, or one of its two disjoint halves (by patient): "
                             "'select' chooses settings on 'selection', 'faithfulness' confirms on 'confirmation'.")
    parser.add_argument("--validation_fraction", type=float, default=0.15, help="As given to train_hf.py.")
    parser.add_argument("--seed", type=int, default=42, help="As given to train_hf.py; also picks the images.")
    model_arguments(parser)
    parser.add_argument("--num_images", type=int, default=num_images, help="Images, split evenly between the classes.")
    parser.add_argument("--card", action="store_true", help="Also write the result into the model's README.md card.")


def artifacts_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explain.py artifacts", description=(
        "High-norm artifact tokens (Darcet et al. 2024) and the share of attention rollout's and the "
        "transformer attribution's mass they hold."))
    dataset_arguments(parser, num_images=100)
    parser.add_argument("--norm_ratio", type=float, default=NORM_RATIO,
                        help="A token is high-norm above this multiple of the image's median patch-token norm.")
    parser.add_argument("--out", default=None, help="Write per-image figures and the summary as JSON here.")
    return parser


def markings_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explain.py markings", description=(
        "Burned-in text from the stress suite pasted onto each image: the share of each map's mass on it, "
        "and the lift (that share over the share of the input it covers)."))
    dataset_arguments(parser, num_images=100)
    parser.add_argument("--markings", nargs="+", default=list(MARKINGS), choices=MARKINGS)
    parser.add_argument("--out", default=None, help="Write per-image figures and the summary as JSON here.")
    return parser


def select_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explain.py select", description=(
        "Choose each method's settings by faithfulness (the candidate whose worst 95 %% lower bound over the "
        "deletion and insertion curves, against the random map of its granularity, is highest) and store "
        f"them in MODEL/{SETTINGS_FILE}, where the app, the command line and the reports read them."))
    dataset_arguments(parser, num_images=24, part="selection")
    parser.add_argument("--gradcam_layers", nargs="+", default=None,
                        help="Grad-CAM layer candidates BLOCK.PART, block counted from 0 (default: every part of the last three blocks, "
                             "or the last three ConvNeXt stages).")
    parser.add_argument("--cams", nargs="+", default=["gradcam"], choices=list(CAMS), help="CAM candidates.")
    parser.add_argument("--head_fusions", nargs="+", default=["mean", "max"], choices=HEAD_FUSIONS)
    parser.add_argument("--discard_ratios", nargs="+", type=float, default=[0.0, 0.5])
    parser.add_argument("--steps", type=int, default=8, help="Steps on each deletion / insertion curve.")
    parser.add_argument("--out", default=None, help=f"Where to write the settings (default: MODEL/{SETTINGS_FILE} "
                        "for a local model directory).")
    return parser


def faithfulness_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explain.py faithfulness", description=(
        "Deletion and insertion curves of the explained class's log-odds (blur and mean fills) and ROAD, "
        "per method and for random maps (of each map's own granularity, and per pixel), with paired "
        "bootstrap 95 % intervals. The maps are made with the model's stored settings."))
    dataset_arguments(parser, part="confirmation")
    parser.add_argument("--steps", type=int, default=10, help="Steps on each deletion / insertion curve.")
    parser.add_argument("--road_percentiles", type=int, nargs="*", default=[30, 50, 70],
                        help="ROAD keeps this %% of the pixels in turn (none: no ROAD; its imputation is slow).")
    parser.add_argument("--out", default=None, help="Write per-image scores and the summary as JSON here "
                        "(the app reads MODEL/eval/faithfulness.json to order and vet its maps).")
    return parser


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explain.py report", description=(
        "One self-contained HTML report per image (image, maps, probabilities, decision, threshold, "
        "out-of-distribution verdict, model and date) and a CSV summary of all of them."))
    parser.add_argument("images", nargs="+", help="Image files, or folders searched recursively for images.")
    model_arguments(parser)
    parser.add_argument("--out", default="outputs/reports", help="Output directory.")
    parser.add_argument("--opacity", type=float, default=0.45, help="Overlay opacity in [0, 1].")
    colormap_argument(parser)
    parser.add_argument("--robustness", action="store_true",
                        help="Also check each decision under every change of the stress suite, in the report and "
                             "the summary (27 forward passes an image).")
    return parser


def colormap_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--colormap", default=COLORMAP,
                        help=f"Matplotlib colormap of the overlays (default {COLORMAP}: perceptually uniform and "
                             "colour-blind-safe; jet as before).")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cli.setup_logging()
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else "maps"
    if command == "report":
        run_reports(report_parser().parse_args(argv[1:]))
    elif command in SUBCOMMANDS:
        parser, run = {"sanity": (sanity_parser, run_sanity), "faithfulness": (faithfulness_parser, run_faithfulness),
                       "select": (select_parser, run_select),
                       "artifacts": (artifacts_parser, run_artifacts),
                       "markings": (markings_parser, run_markings)}[command]
        args = parser().parse_args(argv[1:])
        args.command_line = "python explain.py " + shlex.join(argv)
        run(args)
    else:
        run_maps(maps_parser().parse_args(argv))


def source_of(args) -> ModelSource:
    return ModelSource(args.model, args.revision)


def load(args):
    source = source_of(args)
    return load_model(source), load_image_processor(source)


def run_maps(args) -> None:
    if not 0.0 <= args.opacity <= 1.0:
        raise PneumoLensError(f"--opacity must be in [0, 1], not {args.opacity}")
    from pneumolens.service import PneumoLensService

    # The service, so that the decision here is the app's: the threshold, and none for a flagged image.
    service = PneumoLensService(source_of(args))
    given = {name: getattr(args, name) for name in ("head_fusion", "discard_ratio", "gradcam_layer", "cam")
             if getattr(args, name) is not None}
    options = options_for(source_of(args), methods=tuple(args.methods),
                          gradient_rollout=args.gradient_rollout, smoothgrad_samples=args.smoothgrad, **given)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for image_path in args.images:
        analysis = service.analyse(image_path, args.target, options)
        explanation = analysis.explanation
        stem = Path(image_path).stem
        for method, heatmap in explanation.maps.items():
            drawn = overlay(explanation.image, heatmap, args.opacity, args.colormap)
            with_scale(drawn, method, explanation.target_label, args.colormap).save(out / f"{stem}_{method}.png")
            np.save(out / f"{stem}_{method}.npy", heatmap.astype(np.float16))
        figure_path = out / f"{stem}_explanation.png"
        side_by_side(explanation, analysis.decision, args.opacity, args.colormap).savefig(figure_path)
        record = analysis.record()
        summary = {"image": image_path, **{key: record[key] for key in (
            "decision", "probabilities", "threshold", "explained_class", "out_of_distribution")},
                   "settings": explanation.variants, "unavailable": explanation.unavailable}
        (out / f"{stem}_explanation.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary))
    logger.info("Wrote overlays, maps and figures to %s", out)


def run_reports(args) -> None:
    """A report per image; an image that cannot be read gets its error in the summary, and the rest go on.
    Under `accelerate launch` the images are split between the processes and the rows gathered."""
    from tqdm.auto import tqdm

    from pneumolens.distributed import map_in_order, process_state
    from pneumolens.report import write_summary
    from pneumolens.service import PneumoLensService

    if not 0.0 <= args.opacity <= 1.0:
        raise PneumoLensError(f"--opacity must be in [0, 1], not {args.opacity}")
    images = image_files(args.images)
    state = process_state()
    service = PneumoLensService(source_of(args), state.device if state.num_processes > 1 else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def report_rows(numbers: list[int]) -> list[dict]:
        return [report_row(service, images[number], number, out, args.opacity, args.colormap, args.robustness)
                for number in tqdm(numbers, desc="reports", unit="image", disable=not state.is_main_process)]

    rows = map_in_order(report_rows, len(images), state)
    if not state.is_main_process:
        return
    write_summary(out / "summary.csv", rows)
    failed = sum("error" in row for row in rows)
    logger.info("Wrote %d reports and summary.csv to %s%s", len(rows) - failed, out,
                f" ({failed} images could not be read; see the error column)" if failed else "")


def report_row(service, path: Path, number: int, out: Path, opacity: float, colormap: str = COLORMAP,
               robustness: bool = False) -> dict:
    """Write the report of image `number` and return its summary row (or its error)."""
    row = {"image": str(path)}
    try:
        analysis = service.analyse(path)
    except PneumoLensError as error:
        logger.warning("%s: %s", path, error)
        return {**row, "error": str(error)}
    # Numbered, so two images of the same name in different folders keep both reports.
    report = out / f"{number:04d}-{path.stem}.html"
    check = service.robustness(path) if robustness else None
    report.write_text(service.report(analysis, opacity, path.name, colormap=colormap, robustness=check),
                      encoding="utf-8")
    record, ood = analysis.record(), analysis.ood
    held = {"robustness_held": f"{check.held} of {len(check.outcomes)}",
            "robustness_flipped": " ".join(o.name for o in check.flipped)} if check and not check.withheld else {}
    return {**row, **held, "report": report.name, "decision": record["decision"],
            "explained_class": record["explained_class"], "threshold": f"{record['threshold']:.4f}",
            "ood_flagged": ood.get("flagged", ""), "ood_score": f"{ood['score']:.2f}" if "score" in ood else "",
            "probabilities": record["probabilities"]}


def image_files(arguments: list[str]) -> list[Path]:
    """Files as given, and the image files under each folder given (sorted); a missing path is an error."""
    files = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise PneumoLensError(f"No such file or folder: {argument}")
    if not files:
        raise PneumoLensError(f"No images found in {' '.join(arguments)}")
    return files


def side_by_side(explanation, decision: str, opacity: float, colormap: str = COLORMAP):
    """A figure: the image, then each method's overlay with its caption and colour scale; unavailable ones
    say why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable

    methods = [m for m in METHODS if m in explanation.maps or m in explanation.unavailable]
    figure, axes = plt.subplots(1, 1 + len(methods), figsize=(4 * (1 + len(methods)), 5.4), dpi=100)
    probabilities = ", ".join(f"{label} {percent(p)}" for label, p in explanation.probabilities.items())
    axes[0].imshow(explanation.image)
    axes[0].set_title(f"decision: {decision}\n{probabilities}\nexplaining: {explanation.target_label}", fontsize=9)
    for axis, method in zip(axes[1:], methods):
        if method in explanation.maps:
            axis.imshow(overlay(explanation.image, explanation.maps[method], opacity, colormap))
            axis.set_title(TITLES[method], fontsize=10)
            scale = figure.colorbar(ScalarMappable(cmap=colormap), ax=axis, orientation="horizontal", fraction=0.05,
                                    pad=0.03, ticks=[0, 1])
            scale.ax.set_xticklabels(["low", "high"], fontsize=7)
            scale.set_label(textwrap.fill("high: " + scale_meaning(method, explanation.target_label), 48), fontsize=7)
        else:
            axis.text(0.5, 0.5, "not available:\n" + explanation.unavailable[method], ha="center", va="center",
                      wrap=True, fontsize=8)
            axis.set_title(method, fontsize=10)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure


def run_sanity(args) -> None:
    model, processor = load(args)
    report = randomization_check(model, processor, args.images, options=options_for(source_of(args)))
    table = sanity_table(report)
    print(table)
    write_outputs(args, report, "Explanations: sanity check", (
        "Model-parameter randomisation test (Adebayo et al. 2018): each method's maps from this model are "
        "compared with the maps of the same architecture with random weights, by Spearman rank correlation; "
        f"a method passes when the mean correlation is below {MAX_SPEARMAN}. {len(args.images)} images.\n\n"
        f"{table}\n\nCommand: `{args.command_line}`"))


def run_faithfulness(args) -> None:
    from tqdm.auto import tqdm

    dataset = sampled_images(args)
    model, processor = load(args)
    labels = model_label_ids(dataset, model.config)
    settings = FaithfulnessSettings(steps=args.steps, road_percentiles=tuple(args.road_percentiles), seed=args.seed)
    report = evaluate_faithfulness(Explainer(model, processor), image_sources(dataset), labels, settings=settings,
                                   progress=lambda items: tqdm(items, desc="faithfulness", unit="image"),
                                   options=options_for(source_of(args)))
    result = report.to_json()
    for record, name in zip(result["images"], (image_name(image) for image in dataset.with_format(None)["image"])):
        record["image"] = name or record["image"]
    text = faithfulness_markdown(result, args)
    print(text)
    write_outputs(args, result, "Explanations: faithfulness", text)


def run_select(args) -> None:
    from tqdm.auto import tqdm

    dataset = sampled_images(args)
    model, processor = load(args)
    labels = model_label_ids(dataset, model.config)
    anatomy = anatomy_of(model, input_size(processor))
    found = candidates(anatomy.kind, len(anatomy.blocks), args.gradcam_layers, args.cams, args.head_fusions,
                       args.discard_ratios)
    for candidate in found:  # a misspelt layer fails now, not after an hour of curves
        anatomy.cam_layer(dict(candidate.settings).get("gradcam_layer"))
    settings = FaithfulnessSettings(steps=args.steps, road_percentiles=(), seed=args.seed)
    stored = select_settings(Explainer(model, processor), image_sources(dataset), labels, found, settings,
                             progress=lambda items: tqdm(items, desc="select", unit="image"),
                             data=_data_description(args))
    stored["selection"].update(image_names=[image_name(image) for image in dataset.with_format(None)["image"]],
                               command=args.command_line)
    text = selection_markdown(stored, args)
    print(text)
    out = args.out or (str(Path(args.model) / SETTINGS_FILE) if Path(args.model).is_dir() else None)
    write_outputs(argparse.Namespace(**{**vars(args), "out": out}), stored, "Explanations: method settings", text)
    if out:
        logger.info("Wrote the chosen settings %s to %s", stored["settings"], out)


def selection_markdown(stored: dict, args) -> str:
    selection = stored["selection"]
    chosen = ", ".join(f"`{key}`" for key in selection["chosen"].values())
    return (f"Chosen per model by faithfulness on {selection['images']} images of {selection['data']}, part "
            f"'{args.part}' (the 'confirmation' part, disjoint by patient, is where `explain.py faithfulness` "
            f"then measures them): {chosen}. Each candidate's improvement over the random map of its own "
            f"granularity in log-odds area ({selection['faithfulness_settings']['steps']} steps, paired bootstrap "
            "95 % interval; positive: better); per method the candidate with the highest worst lower bound wins "
            f"(bold).\n\n{selection_table(selection)}\n\nCommand: `{args.command_line}`")


def run_artifacts(args) -> None:
    dataset = sampled_images(args)
    model, processor = load(args)
    if not is_transformer(model.config):
        raise PneumoLensError(f"{model.config.model_type} has no attention maps, so no artifact tokens to measure.")
    report = artifact_report(Explainer(model, processor), image_sources(dataset), args.norm_ratio)
    text = (f"{artifact_markdown(report)} Measured on {report['summary']['images']} images of "
            f"{_data_description(args)}.\n\nCommand: `{args.command_line}`")
    print(text)
    write_outputs(args, report, "Explanations: artifact tokens", text)


def run_markings(args) -> None:
    from tqdm.auto import tqdm

    dataset = sampled_images(args)
    model, processor = load(args)
    report = marking_report(Explainer(model, processor), image_sources(dataset), args.markings, args.seed,
                            options_for(source_of(args)),
                            progress=lambda items: tqdm(items, desc="markings", unit="image"))
    text = (f"Burned-in text from the stress suite ({', '.join(args.markings)}) pasted onto "
            f"{args.num_images} images of {_data_description(args)}; each explains its predicted class. Per "
            "method, the mean share of the map's mass on the marking's pixels and, in brackets, the mean lift: "
            "that share over the share of the model input the marking covers (1x: the map ignores the "
            f"marking).\n\n{markings_table(report['summary'], TITLES)}\n\nCommand: `{args.command_line}`")
    print(text)
    write_outputs(args, report, "Explanations: burned-in text", text)


def _data_description(args) -> str:
    if args.split == CARVED:
        part = "" if getattr(args, "part", "all") == "all" else f", its '{args.part}' half"
        return (f"the carved validation split of `{args.dataset_name_or_dir}` (fraction {args.validation_fraction}, "
                f"seed {args.seed}{part})")
    return f"split `{args.split}` of `{args.dataset_name_or_dir}`"


def sampled_images(args):
    from pneumolens.data import balanced_sample, carved_validation, load_image_dataset, validation_parts

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


def faithfulness_markdown(result: dict, args) -> str:
    summary = result["summary"]
    where = _data_description(args)
    settings = result["settings"]
    parts = [
        f"{summary['all']['images']} images of {where}, split evenly between the classes; each explains its "
        f"predicted class. Scores are areas under the explained class's **log-odds** curve as the pixels a map "
        f"ranks highest are removed first (deletion, lower is better) or revealed first (insertion, higher is "
        f"better), in {settings['steps']} steps, onto a strong blur or the image's mean grey; ROAD (Rong et al. "
        f"2022) removes pixels by noisy linear imputation{_road_text(settings['road_percentiles'])}. Under each mean: "
        "the paired bootstrap 95 % interval of how much better the method does than the random map of its own "
        "granularity on the same images (positive: better): a random map on the same grid, upsampled the same "
        "way, for the patch-level maps (named in brackets), one random value per pixel for saliency. In "
        "parentheses below it, for the patch-level maps: the same against the per-pixel random map, which is kept "
        "for comparison but does not decide, because scattered random pixels restore the whole image's texture "
        "at once on insertion, which a map drawn on a 16x16 grid cannot do whatever it ranks. A method *passes* "
        "when every deletion and insertion interval against its own baseline is above zero. The app shows every "
        "map with its verdict, in the order ranked here." + _variants_text(result),
        "", faithfulness_table(summary["all"], TITLES)]
    if "correct" in summary and summary["correct"]["images"]:
        parts += ["", f"Correctly classified images only ({summary['correct']['images']}):", "",
                  faithfulness_table(summary["correct"], TITLES)]
    best = summary["all"]["ranking"][0] if summary["all"].get("ranking") else None
    if best:
        parts += ["", f"{TITLES.get(best, best)}, the most faithful here, against each other method (paired 95 % "
                  "intervals of its advantage; positive: more faithful):", "", pairs_table(summary["all"], best, TITLES)]
    if result["unavailable"]:
        parts += ["", "Not available for this model: " + "; ".join(f"{TITLES.get(m, m)}: {why}"
                                                                     for m, why in result["unavailable"].items())]
    parts += ["", f"Command: `{args.command_line}`"]
    return "\n".join(parts)


def _percentages(values) -> str:
    return ", ".join(f"{value} %" for value in values)


def _road_text(percentiles) -> str:
    return f" at {_percentages(percentiles)} kept" if percentiles else " (not measured in this run)"


def _variants_text(result: dict) -> str:
    variants = result.get("variants") or {}
    if not variants:
        return ""
    return " Settings of the maps (`eval/explanation_settings.json`): " + "; ".join(
        f"{TITLES.get(m, m)}: {text}" for m, text in variants.items()) + "."


def write_outputs(args, report: dict, card_heading: str, card_body: str) -> None:
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.card:
        card = Path(args.model) / "README.md"
        if not card.is_file():
            raise PneumoLensError(f"--card needs a local model directory with a README.md card: {card}")
        set_card_section(card, card_heading, card_body)
        logger.info("Wrote '%s' into %s", card_heading, card)


if __name__ == "__main__":
    cli.run(main)
