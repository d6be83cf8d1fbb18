#!/usr/bin/env python
"""Explain chest X-ray predictions: attention rollout, gradient saliency and Grad-CAM.

    python explain.py IMAGE... [--model ID_OR_DIR] [--out DIR]
        Per image: one overlay PNG per method, the raw maps (.npy) and a side-by-side figure.
    python explain.py sanity IMAGE... [--model ID_OR_DIR] [--out FILE.json]
        Model-parameter randomisation check: do the maps change when the weights are random?
    python explain.py faithfulness --data_dir DIR [--num_images N] [--out FILE.json]
        Deletion / insertion AUC per method against a random-map baseline.
    python explain.py report IMAGE_OR_DIR... [--out DIR]
        One self-contained HTML report per image (as the app's "Report" button makes it) and summary.csv.

The model defaults to MODEL_ID or the bundled model (models/pneumolens-dinov2-small).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import numpy as np

from pneumolens import cli
from pneumolens.card import set_card_section
from pneumolens.errors import PneumoLensError
from pneumolens.explain import HOW_TO_READ, METHODS, TITLES, Explainer, ExplanationOptions, overlay
from pneumolens.explain.faithfulness import deletion_insertion, faithfulness_table
from pneumolens.explain.rollout import HEAD_FUSIONS
from pneumolens.explain.sanity import MAX_SPEARMAN, randomization_check, sanity_table
from pneumolens.modeling import ModelSource, decide_by_label, default_model_source, load_image_processor, load_model

logger = logging.getLogger("explain")

SUBCOMMANDS = ("sanity", "faithfulness", "report")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".dcm", ".tif", ".tiff", ".bmp", ".webp")


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
    parser.add_argument("--head_fusion", default="mean", choices=HEAD_FUSIONS, help="Rollout head fusion.")
    parser.add_argument("--discard_ratio", type=float, default=0.0, help="Rollout: share of weakest attention dropped.")
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


def faithfulness_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explain.py faithfulness", description=deletion_insertion.__doc__)
    parser.add_argument("--data_dir", required=True, help="Directory of images (searched recursively).")
    model_arguments(parser)
    parser.add_argument("--num_images", type=int, default=20, help="Images used (sorted by name, evenly spread).")
    parser.add_argument("--steps", type=int, default=10, help="Points on each curve.")
    parser.add_argument("--out", default=None, help="Write the table as JSON here.")
    parser.add_argument("--card", action="store_true", help="Also write the table into the model's README.md card.")
    return parser


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explain.py report", description=(
        "One self-contained HTML report per image (image, maps, probabilities, decision, threshold, "
        "out-of-distribution verdict, model and date) and a CSV summary of all of them."))
    parser.add_argument("images", nargs="+", help="Image files, or folders searched recursively for images.")
    model_arguments(parser)
    parser.add_argument("--out", default="outputs/reports", help="Output directory.")
    parser.add_argument("--opacity", type=float, default=0.45, help="Overlay opacity in [0, 1].")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cli.setup_logging()
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else "maps"
    if command == "report":
        run_reports(report_parser().parse_args(argv[1:]))
    elif command in SUBCOMMANDS:
        parser = sanity_parser() if command == "sanity" else faithfulness_parser()
        args = parser.parse_args(argv[1:])
        args.command_line = "python explain.py " + shlex.join(argv)
        (run_sanity if command == "sanity" else run_faithfulness)(args)
    else:
        run_maps(maps_parser().parse_args(argv))


def load(args):
    source = ModelSource(args.model, args.revision)
    return load_model(source), load_image_processor(source)


def run_maps(args) -> None:
    if not 0.0 <= args.opacity <= 1.0:
        raise PneumoLensError(f"--opacity must be in [0, 1], not {args.opacity}")
    model, processor = load(args)
    explainer = Explainer(model, processor)
    options = ExplanationOptions(methods=tuple(args.methods), head_fusion=args.head_fusion,
                                 discard_ratio=args.discard_ratio, gradient_rollout=args.gradient_rollout,
                                 smoothgrad_samples=args.smoothgrad)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for image_path in args.images:
        explanation = explainer.explain(image_path, args.target, options)
        stem = Path(image_path).stem
        for method, heatmap in explanation.maps.items():
            overlay(explanation.image, heatmap, args.opacity).save(out / f"{stem}_{method}.png")
            np.save(out / f"{stem}_{method}.npy", heatmap.astype(np.float16))
        figure_path = out / f"{stem}_explanation.png"
        side_by_side(explanation, model.config, args.opacity).savefig(figure_path)
        summary = {"image": image_path, "probabilities": explanation.probabilities,
                   "decision": decide_by_label(model.config, explanation.probabilities),
                   "explained_class": explanation.target_label, "unavailable": explanation.unavailable}
        (out / f"{stem}_explanation.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary))
    logger.info("Wrote overlays, maps and figures to %s", out)


def run_reports(args) -> None:
    """A report per image; an image that cannot be read gets its error in the summary, and the rest go on."""
    from tqdm.auto import tqdm

    from pneumolens.report import write_summary
    from pneumolens.service import PneumoLensService

    if not 0.0 <= args.opacity <= 1.0:
        raise PneumoLensError(f"--opacity must be in [0, 1], not {args.opacity}")
    images = image_files(args.images)
    service = PneumoLensService(ModelSource(args.model, args.revision))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, path in enumerate(tqdm(images, desc="reports", unit="image")):
        row = {"image": str(path)}
        try:
            analysis = service.analyse(path)
        except PneumoLensError as error:
            logger.warning("%s: %s", path, error)
            rows.append({**row, "error": str(error)})
            continue
        # Numbered, so two images of the same name in different folders keep both reports.
        report = out / f"{number:04d}-{path.stem}.html"
        report.write_text(service.report(analysis, args.opacity, path.name), encoding="utf-8")
        record, ood = analysis.record(), analysis.ood
        rows.append({**row, "report": report.name, "decision": record["decision"],
                     "explained_class": record["explained_class"], "threshold": f"{record['threshold']:.4f}",
                     "ood_flagged": ood.get("flagged", ""), "ood_score": f"{ood['score']:.2f}" if "score" in ood else "",
                     "probabilities": record["probabilities"]})
    write_summary(out / "summary.csv", rows)
    failed = sum("error" in row for row in rows)
    logger.info("Wrote %d reports and summary.csv to %s%s", len(rows) - failed, out,
                f" ({failed} images could not be read; see the error column)" if failed else "")


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


def side_by_side(explanation, config, opacity: float):
    """A figure: the image, then each method's overlay with its caption; unavailable ones say why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in METHODS if m in explanation.maps or m in explanation.unavailable]
    figure, axes = plt.subplots(1, 1 + len(methods), figsize=(4 * (1 + len(methods)), 4.6), dpi=100)
    probabilities = ", ".join(f"{label} {p:.1%}" for label, p in explanation.probabilities.items())
    axes[0].imshow(explanation.image)
    axes[0].set_title(f"{probabilities}\nexplaining: {explanation.target_label}", fontsize=9)
    for axis, method in zip(axes[1:], methods):
        if method in explanation.maps:
            axis.imshow(overlay(explanation.image, explanation.maps[method], opacity))
            axis.set_title(TITLES[method], fontsize=10)
            axis.set_xlabel(HOW_TO_READ[method], fontsize=7, wrap=True)
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
    report = randomization_check(model, processor, args.images)
    table = sanity_table(report)
    print(table)
    write_outputs(args, report, "Explanations: sanity check", (
        "Model-parameter randomisation test (Adebayo et al. 2018): each method's maps from this model are "
        "compared with the maps of the same architecture with random weights, by Spearman rank correlation; "
        f"a method passes when the mean correlation is below {MAX_SPEARMAN}. {len(args.images)} images.\n\n"
        f"{table}\n\nCommand: `{args.command_line}`"))


def run_faithfulness(args) -> None:
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise PneumoLensError(f"Data directory not found: {data_dir}")
    images = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not images:
        raise PneumoLensError(f"No JPEG or PNG images under {data_dir}")
    chosen = [images[int(i)] for i in np.linspace(0, len(images) - 1, min(args.num_images, len(images)))]
    model, processor = load(args)
    results = deletion_insertion(model, processor, chosen, steps=args.steps)
    table = faithfulness_table(results)
    print(table)
    write_outputs(args, results, "Explanations: faithfulness", (
        "Deletion and insertion curves (Petsiuk et al. 2018) over the target-class probability: pixels are "
        "removed (set to the mean) or revealed (over a blurred copy) in the order each map ranks them, in "
        f"{args.steps} steps; a random map is the baseline. {len(chosen)} images from `{args.data_dir}`.\n\n"
        f"{table}\n\nCommand: `{args.command_line}`"))


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
