"""Out-of-distribution warning: does an input look like the chest radiographs the model was trained on?

The model's own features of training images define a Gaussian; the Mahalanobis distance of a new
image's features to it is the score. The features are those of the middle block (ViT family: class
token and mean token; ConvNeXt: mean over the feature map): the last layers of a fine-tuned classifier
keep only what separates NORMAL from PNEUMONIA, and noise or a drawing lands right beside the
PNEUMONIA cluster there, while the middle layers still describe what the image looks like.

The warning threshold is `margin` (1.5) times the 99th percentile of the scores of held-out
validation radiographs: radiographs from another scanner or at another resolution land a little
outside the training cloud, photos, drawings and noise land several times further out. The statistics
are saved beside the model as `ood_detector.safetensors`.

    python -m pneumolens fit-ood --model_name_or_path models/pneumolens-dinov2-small \\
        --dataset_name_or_dir ../shared/data/chest_xray
"""

from __future__ import annotations

import logging
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from sklearn.covariance import LedoitWolf

from .images import load_image
from .modeling import ModelSource, attention_kernel, backbone_blocks, is_transformer, model_file
from .preprocessing import pixel_values, radiograph_augmentation
from .progress import progress
from .stress import STRESS_SUITE

logger = logging.getLogger(__name__)

OOD_FILE = "ood_detector.safetensors"
STRESSED_IMAGES = 60  # calibration images copied under every stress-suite change


class _FeaturesTaken(Exception):
    """Ends a forward pass at the middle block, where the detector's features are: the rest is not needed."""


@contextmanager
def captured_features(model: torch.nn.Module, stop: bool = False):
    """Collect (batch, D) middle-block features during forward passes in the yielded list; with `stop`,
    each pass ends there by raising `_FeaturesTaken` (see `image_features`)."""
    features: list[torch.Tensor] = []
    blocks = backbone_blocks(model)
    middle = blocks[len(blocks) // 2 - 1]
    transformer = is_transformer(model.config)

    def take(module, args, output):
        features.append(_pooled(output, transformer))
        if stop:
            raise _FeaturesTaken

    handle = middle.register_forward_hook(take)
    try:
        yield features
    finally:
        handle.remove()


def _pooled(output, transformer: bool) -> torch.Tensor:
    hidden = (output[0] if isinstance(output, tuple) else output).detach()
    if not transformer:  # a convolutional stage: (B, C, H, W)
        return hidden.mean(dim=(2, 3))
    return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1)  # (B, tokens, C): CLS and mean


@torch.no_grad()
def image_features(model, processor, images, batch_size: int = 32, description: str = "Detector features"
                   ) -> np.ndarray:
    """(N, D) middle-block features of images in any form `load_image` accepts."""
    starts = progress(range(0, len(images), batch_size), len(images), description, "images", batch_size, logger)
    # SDPA: nothing reads the attention maps here.
    with captured_features(model, stop=True) as features, attention_kernel(model, "sdpa"):
        for start in starts:
            try:  # only the blocks up to the middle one run: half a forward pass for a ViT
                model(pixel_values=pixel_values(processor, images[start:start + batch_size]).to(model.device, model.dtype))
            except _FeaturesTaken:
                pass
    return np.concatenate([f.float().cpu().numpy() for f in features])


@dataclass
class OODDetector:
    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float
    margin: float

    @classmethod
    def fit(cls, train_features: np.ndarray, calibration_features: np.ndarray, quantile: float = 0.99,
            margin: float = 1.5) -> "OODDetector":
        estimator = LedoitWolf().fit(train_features)
        detector = cls(estimator.location_.astype(np.float32), estimator.precision_.astype(np.float32), 0.0,
                       quantile, margin)
        detector.threshold = margin * float(np.quantile(detector.distance(calibration_features), quantile))
        return detector

    def distance(self, features: np.ndarray) -> np.ndarray:
        centred = np.atleast_2d(features).astype(np.float32) - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", centred, self.precision, centred), 0.0))

    def is_out_of_distribution(self, features: np.ndarray) -> np.ndarray:
        return self.distance(features) > self.threshold

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / OOD_FILE
        save_file({"mean": self.mean, "precision": self.precision},
                  str(path), metadata={"threshold": repr(self.threshold), "quantile": repr(self.quantile),
                                       "margin": repr(self.margin)})
        return path

    @classmethod
    def load(cls, source: ModelSource) -> "OODDetector | None":
        """The detector saved with a model (local directory or Hub repository), or None if it has none."""
        path = model_file(source, OOD_FILE)
        if path is None:
            logger.info("No %s for %s; out-of-distribution warnings are off.", OOD_FILE, source.name_or_path)
            return None
        from safetensors import safe_open

        with safe_open(str(path), "np") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(path))
        return cls(tensors["mean"], tensors["precision"], float(metadata["threshold"]), float(metadata["quantile"]),
                   float(metadata["margin"]))


def fit_for_model(model, processor, train_images, calibration_images, quantile: float = 0.99,
                  margin: float = 1.5, acquisition_changes: bool = True, seed: int = 0,
                  stressed_images: int = STRESSED_IMAGES) -> OODDetector:
    """Fit the Gaussian on `train_images` and the threshold on `calibration_images` (held-out radiographs).

    With `acquisition_changes`, the Gaussian also covers an augmented copy of every training image and the
    threshold also covers copies of `stressed_images` of the calibration images under each stress-suite
    change: a zoomed, text-marked or re-exposed radiograph is still a radiograph and must not be flagged.
    """
    if acquisition_changes:
        augment = radiograph_augmentation(random.Random(seed))
        train_images = [*train_images, *(augment(load_image(image)) for image in train_images)]
        chosen = random.Random(seed).sample(range(len(calibration_images)),
                                            min(stressed_images, len(calibration_images)))
        decoded = {index: load_image(calibration_images[index]) for index in chosen}
        calibration_images = [*calibration_images, *(
            change(image, seed, index) for change in STRESS_SUITE for index, image in decoded.items())]
    train = image_features(model, processor, train_images, description="Detector features (training)")
    calibration = image_features(model, processor, calibration_images, description="Detector features (calibration)")
    detector = OODDetector.fit(train, calibration, quantile, margin)
    logger.info("OOD detector: %d training and %d calibration images, threshold %.2f (%.1f x the %.0f%% quantile)",
                len(train), len(calibration), detector.threshold, margin, quantile * 100)
    return detector


OOD_SECTION = "Out-of-distribution detector"


def card_section(detector: OODDetector, num_train: int, num_validation: int, command: str,
                 stressed_images: int = STRESSED_IMAGES) -> str:
    """The card's section on the detector: what it holds, its threshold and how that was chosen."""
    return (f"`{OOD_FILE}` holds a Gaussian over the middle-block features of {num_train} training images and an "
            f"augmented copy of each (zoom, text, exposure, detector changes); the PneumoLens app warns when an "
            f"image's Mahalanobis distance exceeds {detector.threshold:.2f} ({detector.margin} x the "
            f"{detector.quantile:.0%} quantile over the {num_validation} carved validation images and stressed "
            f"copies of {min(stressed_images, num_validation)} of them under each stress-suite change).\n\n"
            f"Command: `{command}`")


if __name__ == "__main__":  # the command's earlier name: say where it went rather than do nothing
    raise SystemExit("error: this command is `python -m pneumolens fit-ood` now, with the same options")


def write_card_section(model_dir: str | Path, detector: OODDetector, num_train: int, num_validation: int,
                       command: str, stressed_images: int = STRESSED_IMAGES) -> None:
    """The detector's section in the model's card, where the model has one."""
    from .card import set_card_section

    card = Path(model_dir) / "README.md"
    if card.is_file():
        set_card_section(card, OOD_SECTION,
                         card_section(detector, num_train, num_validation, command, stressed_images))
