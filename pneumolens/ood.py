"""Out-of-distribution warning: does an input look like the chest radiographs the model was trained on?

The model's own features (the classifier head's input) of training images define a Gaussian; the
Mahalanobis distance of a new image's features to it is the score. The warning threshold is a high
quantile of the distances of held-out validation radiographs, so about 1 % of real radiographs are
flagged and photos, drawings or noise, far outside, are. The statistics are saved beside the model as
`ood_detector.safetensors`.

    python -m pneumolens.ood --model models/pneumolens-dinov2-small --data_dir ../shared/data/chest_xray
"""

from __future__ import annotations

import argparse
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from sklearn.covariance import LedoitWolf

from .errors import PneumoLensError
from .modeling import ModelSource
from .preprocessing import pixel_values

logger = logging.getLogger(__name__)

OOD_FILE = "ood_detector.safetensors"


@contextmanager
def captured_features(model: torch.nn.Module):
    """Collect the classifier head's input during forward passes in the yielded list."""
    features: list[torch.Tensor] = []
    head = model.classifier
    handle = head.register_forward_pre_hook(lambda module, args: features.append(args[0].detach().flatten(1)))
    try:
        yield features
    finally:
        handle.remove()


@torch.no_grad()
def image_features(model, processor, images, batch_size: int = 32) -> np.ndarray:
    """(N, D) head-input features of images in any form `load_image` accepts."""
    chunks = []
    with captured_features(model) as features:
        for start in range(0, len(images), batch_size):
            model(pixel_values=pixel_values(processor, images[start:start + batch_size]).to(model.device, model.dtype))
        chunks = [f.float().cpu().numpy() for f in features]
    return np.concatenate(chunks)


@dataclass
class OODDetector:
    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float

    @classmethod
    def fit(cls, train_features: np.ndarray, calibration_features: np.ndarray, quantile: float = 0.99) -> "OODDetector":
        estimator = LedoitWolf().fit(train_features)
        detector = cls(estimator.location_.astype(np.float32), estimator.precision_.astype(np.float32), 0.0, quantile)
        detector.threshold = float(np.quantile(detector.distance(calibration_features), quantile))
        return detector

    def distance(self, features: np.ndarray) -> np.ndarray:
        centred = np.atleast_2d(features).astype(np.float32) - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", centred, self.precision, centred), 0.0))

    def is_out_of_distribution(self, features: np.ndarray) -> np.ndarray:
        return self.distance(features) > self.threshold

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / OOD_FILE
        save_file({"mean": self.mean, "precision": self.precision},
                  str(path), metadata={"threshold": repr(self.threshold), "quantile": repr(self.quantile)})
        return path

    @classmethod
    def load(cls, source: ModelSource) -> "OODDetector | None":
        """The detector saved with a model (local directory or Hub repository), or None if it has none."""
        path = Path(source.name_or_path) / OOD_FILE
        if not path.is_file():
            path = _hub_file(source)
            if path is None:
                return None
        from safetensors import safe_open

        with safe_open(str(path), "np") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(path))
        return cls(tensors["mean"], tensors["precision"], float(metadata["threshold"]), float(metadata["quantile"]))


def _hub_file(source: ModelSource) -> Path | None:
    if Path(source.name_or_path).exists():
        return None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source.name_or_path, OOD_FILE, revision=source.revision, token=source.token))
    except Exception:  # no such file in the repo, offline, ...: the app then shows no OOD warning
        logger.info("No %s for %s; out-of-distribution warnings are off.", OOD_FILE, source.name_or_path)
        return None


def fit_for_model(model, processor, train_images, calibration_images, quantile: float = 0.99) -> OODDetector:
    train = image_features(model, processor, train_images)
    calibration = image_features(model, processor, calibration_images)
    detector = OODDetector.fit(train, calibration, quantile)
    logger.info("OOD detector: %d training and %d calibration images, threshold %.2f (%.0f%% quantile)",
                len(train), len(calibration), detector.threshold, quantile * 100)
    return detector


def main(argv: list[str] | None = None) -> None:
    from . import cli
    from .data import drop_unreadable, image_sources, load_image_dataset, split_by_patient
    from .modeling import load_image_processor, load_model

    parser = argparse.ArgumentParser(prog="python -m pneumolens.ood", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Local model directory; the detector is saved into it.")
    parser.add_argument("--data_dir", required=True, help="Imagefolder with a train split (as for train_hf.py).")
    parser.add_argument("--num_train", type=int, default=1000, help="Training images used for the Gaussian.")
    parser.add_argument("--validation_fraction", type=float, default=0.15, help="As in train_hf.py.")
    parser.add_argument("--seed", type=int, default=42, help="As in train_hf.py: the same patient split.")
    parser.add_argument("--quantile", type=float, default=0.99, help="Validation quantile used as threshold.")
    args = parser.parse_args(argv)
    cli.setup_logging()
    if not Path(args.model).is_dir():
        raise PneumoLensError(f"Model directory not found: {args.model}")
    train, validation = split_by_patient(drop_unreadable(load_image_dataset(args.data_dir)["train"], "train"),
                                         args.validation_fraction, args.seed)
    train = train.shuffle(seed=args.seed).select(range(min(args.num_train, len(train))))
    source = ModelSource(args.model)
    model, processor = load_model(source), load_image_processor(source)
    detector = fit_for_model(model, processor, image_sources(train), image_sources(validation), args.quantile)
    print(f"saved {detector.save(args.model)} (threshold {detector.threshold:.3f})")


if __name__ == "__main__":
    from . import cli as _cli

    _cli.run(main)
