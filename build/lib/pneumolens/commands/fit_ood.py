"""Fit the out-of-distribution detector of a saved model (`pneumolens.ood`) on its training images and
carved validation split, and save it beside the weights (`ood_detector.safetensors`)."""

from __future__ import annotations

from .. import cli
from ..card import set_card_section
from ..data import carved_split, image_sources
from ..modeling import ModelSource, load_model_and_processor
from ..ood import OOD_SECTION, card_section, fit_for_model
from .calibrate import local_model_dir


def add_arguments(parser) -> None:
    cli.add_model_dir_options(parser, "Local model directory; the detector is saved into it.")
    parser.add_argument("--num_train", type=int, default=1000, help="Training images used for the Gaussian.")
    parser.add_argument("--quantile", type=float, default=0.99, help="Validation quantile behind the threshold.")
    parser.add_argument("--margin", type=float, default=1.5, help="Threshold = margin x that quantile.")


def run(args) -> None:
    model_dir = local_model_dir(args.model_name_or_path)
    train, validation = carved_split(args.dataset_name_or_dir, args.validation_fraction, args.seed)
    train = train.shuffle(seed=args.seed).select(range(min(args.num_train, len(train))))
    model, processor = load_model_and_processor(ModelSource(str(model_dir)), attention="sdpa")
    detector = fit_for_model(model, processor, image_sources(train), image_sources(validation), args.quantile,
                             args.margin, seed=args.seed)
    print(f"saved {detector.save(model_dir)} (threshold {detector.threshold:.3f})")
    card = model_dir / "README.md"
    if card.is_file():
        set_card_section(card, OOD_SECTION, card_section(detector, len(train), len(validation), args.command_line))
