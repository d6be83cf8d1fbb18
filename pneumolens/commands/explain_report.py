"""`python explain.py report IMAGE_OR_DIR...`: one self-contained HTML report per image (as the app's
"Report" button makes it) and summary.csv. Under `accelerate launch --num_processes N` the images are
split between N processes (one device each) and summary.csv gathers them all."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from .. import cli
from ..distributed import map_in_order, process_state
from ..errors import PneumoLensError
from ..images import image_files_under
from ..explain.overlay import DEFAULT_BLEND
from ..presentation import COLORMAP
from ..report import write_summary
from ..serving.displayed import report_html
from .explain_maps import add_overlay_options, check_opacity, served

logger = logging.getLogger("explain")


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", help="Image files, or folders searched recursively for images.")
    cli.add_model_options(parser)
    parser.add_argument("--out", default="outputs/reports", help="Output directory.")
    add_overlay_options(parser)
    parser.add_argument("--robustness", action="store_true",
                        help="Also check each decision under every change of the stress suite, in the report and "
                             "the summary (27 forward passes an image).")


def run(args) -> None:
    """A report per image; an image that cannot be read gets its error in the summary, and the rest go on.
    Under `accelerate launch` the images are split between the processes and the rows gathered."""
    check_opacity(args.opacity)
    images = image_files(args.images)
    state = process_state()
    service = served(args, state.device if state.num_processes > 1 else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def report_rows(numbers: list[int]) -> list[dict]:
        return [report_row(service, images[number], number, out, args.opacity, args.colormap, args.robustness,
                           args.overlay)
                for number in tqdm(numbers, desc="reports", unit="image", disable=not state.is_main_process)]

    rows = map_in_order(report_rows, len(images), state)
    if not state.is_main_process:
        return
    write_summary(out / "summary.csv", rows)
    failed = sum("error" in row for row in rows)
    logger.info("Wrote %d reports and summary.csv to %s%s", len(rows) - failed, out,
                f" ({failed} images could not be read; see the error column)" if failed else "")


def report_row(service, path: Path, number: int, out: Path, opacity: float, colormap: str = COLORMAP,
               robustness: bool = False, blend: str = DEFAULT_BLEND) -> dict:
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
    report.write_text(report_html(service, analysis, opacity, path.name, colormap=colormap, robustness=check,
                                  blend=blend), encoding="utf-8")
    record, ood = analysis.record(), analysis.ood
    held = {"robustness_held": f"{check.held} of {len(check.outcomes)}",
            "robustness_flipped": " ".join(o.name for o in check.flipped)} if check and not check.withheld else {}
    return {**row, **held, "report": report.name, "decision": record["decision"], "refer": record["refer"],
            "refer_reason": record["refer_reason"] or "",
            "explained_class": record["explained_class"], "threshold": f"{record['threshold']:.4f}",
            "ood_flagged": ood.get("flagged", ""), "ood_score": f"{ood['score']:.2f}" if "score" in ood else "",
            "probabilities": record["probabilities"], **similar_column(record, analysis.positive_label)}


def similar_column(record: dict, positive_label: str) -> dict:
    """How many of the nearest training films are of the positive class, where the model has an index."""
    similar = record["similar"]
    return {} if similar is None else {
        "similar": f"{similar['counts'].get(positive_label, 0)} of {similar['nearest']} {positive_label}"}


def image_files(arguments: list[str]) -> list[Path]:
    """Files as given, and the image files under each folder given (sorted); a missing path is an error."""
    files = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files += image_files_under(path)
        elif path.is_file():
            files.append(path)
        else:
            raise PneumoLensError(f"No such file or folder: {argument}")
    if not files:
        raise PneumoLensError(f"No images found in {' '.join(arguments)}")
    return files
