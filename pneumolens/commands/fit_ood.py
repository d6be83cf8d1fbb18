"""Fit the out-of-distribution detector of a saved model (`pneumolens.ood`) on its training images and
carved validation split, and save it beside the weights (`ood_detector.safetensors`)."""

from __future__ import annotations

from pathlib import Path

from .. import cli
from ..data import carved_split, image_sources
from ..modeling import ModelSource, load_model_and_processor
from ..ood import OOD_FILE, STRESSED_IMAGES, fit_for_model, write_card_section
from .calibrate import local_model_dir


def add_arguments(parser) -> None:
    cli.add_model_dir_options(parser, "Local model directory; the detector is saved into it.")
    parser.add_argument("--num_train", type=int, default=1000, help="Training images used for the Gaussian.")
    parser.add_argument("--quantile", type=float, default=0.99, help="Validation quantile behind the threshold.")
    parser.add_argument("--margin", type=float, default=1.5, help="Threshold = margin x that quantile.")


def run(args) -> None:
    model_dir = local_model_dir(args.model_name_or_path)
    train, validation = carved_split(args.dataset_name_or_dir, args.validation_fraction, args.seed)
    model, processor = load_model_and_processor(ModelSource(str(model_dir)), attention="sdpa")
    detector = fit_detector(model, processor, model_dir, train, validation, args.command_line, args.num_train,
                            args.quantile, args.margin, args.seed)
    print(f"saved {model_dir / OOD_FILE} (threshold {detector.threshold:.3f})")


def fit_detector(model, processor, model_dir: Path, train, validation, command: str, num_train: int = 1000,
                 quantile: float = 0.99, margin: float = 1.5, seed: int = 42, stressed_images: int = STRESSED_IMAGES):
    """Fit the detector on `num_train` of the `train` images (seeded) and the carved `validation` split (with
    stressed copies of `stressed_images` of them), save it into `model_dir` and write the card's section where
    the model has a card. Returns the detector."""
    train = train.with_format(None).shuffle(seed=seed).select(range(min(num_train, len(train))))
    detector = fit_for_model(model, processor, image_sources(train), image_sources(validation), quantile, margin,
                             seed=seed, stressed_images=stressed_images)
    detector.save(model_dir)
    write_card_section(model_dir, detector, len(train), len(validation), command, stressed_images)
    return detector
