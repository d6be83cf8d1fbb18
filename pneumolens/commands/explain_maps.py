"""`python explain.py IMAGE...`: per image, one overlay PNG per method with its colour scale, the raw
maps (.npy), a side-by-side figure and the record (decision, probabilities, settings) as JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .. import cli
from ..errors import PneumoLensError
from ..explain import METHODS, overlay
from ..explain.overlay import BLENDS, DEFAULT_BLEND, DEFAULT_OPACITY
from ..explain.gradcam import CAMS
from ..explain.options import SETTINGS_FILE, options_for
from ..explain.rollout import HEAD_FUSIONS
from ..modeling import ModelSource
from ..figures import save_figure
from ..charts import side_by_side
from ..presentation import COLORMAP, headline
from ..sheets import with_scale
from ..service import PneumoLensService
from ..serving.settings import ServingSettings

logger = logging.getLogger("explain")



def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", help="Image files (JPEG, PNG, 16-bit PNG, ...).")
    cli.add_model_options(parser)
    parser.add_argument("--out", default="outputs/explanations", help="Output directory.")
    cli.add_option(parser, "--explained_index", type=int, default=None,
                   help="Index of the class the maps explain (default: the decision).")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    add_overlay_options(parser)
    stored = f"default: the model's {SETTINGS_FILE}, else "
    parser.add_argument("--head_fusion", default=None, choices=HEAD_FUSIONS, help=f"Rollout head fusion ({stored}mean).")
    parser.add_argument("--discard_ratio", type=float, default=None,
                        help=f"Rollout: share of weakest attention dropped ({stored}0).")
    parser.add_argument("--gradcam_layer", default=None, help=f"Grad-CAM layer BLOCK.PART, block counted from 0, e.g. 10.norm2 ({stored}"
                        "the last block's norm1 or the last stage).")
    parser.add_argument("--cam", default=None, choices=list(CAMS), help=f"Which CAM of the grad-cam package ({stored}gradcam).")
    parser.add_argument("--gradient_rollout", action="store_true", help="Class-specific, gradient-weighted rollout.")
    parser.add_argument("--smoothgrad", type=int, default=0, help="SmoothGrad noisy copies (0: vanilla gradient).")


def add_overlay_options(parser) -> None:
    parser.add_argument("--opacity", type=float, default=DEFAULT_OPACITY,
                        help="Overlay opacity in [0, 1], at the map's strongest point (default %(default)s).")
    parser.add_argument("--colormap", default=COLORMAP,
                        help=f"Matplotlib colormap of the overlays (default {COLORMAP}: perceptually uniform and "
                             "colour-blind-safe; jet as before).")
    parser.add_argument("--overlay", default=DEFAULT_BLEND, choices=BLENDS,
                        help="value: a map's colour fades with its value, so the film shows through where it is "
                             "low (default); even: the same opacity everywhere, as before.")
    parser.add_argument("--training_films", default=None, metavar="FOLDER",
                        help="A local copy of the training data (imagefolder, with train/), for pictures of the "
                             "similar training films (default: PNEUMOLENS_TRAINING_FILMS, else none: ids and labels "
                             "only).")


def check_opacity(opacity: float) -> None:
    if not 0.0 <= opacity <= 1.0:
        raise PneumoLensError(f"--opacity must be in [0, 1], not {opacity}")


def source_of(args) -> ModelSource:
    return ModelSource(args.model_name_or_path, args.model_revision)


def served(args, device=None) -> PneumoLensService:
    """The service as the app serves it, so that the decision here is the app's (the threshold, and none for a
    flagged image): the server's settings (`serving.settings`) fill in what the command line leaves out."""
    settings = ServingSettings.from_environment()
    return PneumoLensService(source_of(args), device or settings.device,
                             films_setting=args.training_films or settings.training_films)


def run(args) -> None:
    check_opacity(args.opacity)
    service = served(args)
    given = {name: getattr(args, name) for name in ("head_fusion", "discard_ratio", "gradcam_layer", "cam")
             if getattr(args, name) is not None}
    options = options_for(source_of(args), methods=tuple(args.methods),
                          gradient_rollout=args.gradient_rollout, smoothgrad_samples=args.smoothgrad, **given)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for image_path in args.images:
        analysis = service.analyse(image_path, args.explained_index, options)
        explanation = analysis.explanation
        stem = Path(image_path).stem
        for method, heatmap in explanation.maps.items():
            drawn = overlay(explanation.image, heatmap, args.opacity, args.colormap, args.overlay)
            with_scale(drawn, method, explanation.explained_class, args.colormap, args.overlay).save(
                out / f"{stem}_{method}.png")
            np.save(out / f"{stem}_{method}.npy", heatmap.astype(np.float16))
        figure_path = out / f"{stem}_explanation.png"
        save_figure(side_by_side(explanation, headline(analysis.decision, analysis.refer), args.opacity,
                                 args.colormap, args.overlay), figure_path)
        record = analysis.record()
        summary = {"image": image_path, **{key: record[key] for key in (
            "decision", "refer", "refer_reason", "stability_check", "referral_band", "probabilities", "threshold", "explained_class",
            "out_of_distribution")},
                   "settings": explanation.settings, "unavailable": explanation.unavailable,
                   "maps": {name: reading.record() for name, reading in analysis.readings.items()},
                   "agreement": record["agreement"], "similar": record["similar"]}
        (out / f"{stem}_explanation.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary))
    logger.info("Wrote overlays, maps and figures to %s", out)
