"""Checkpoint selection and the operating threshold while training, robust to acquisition changes: the
carved validation split with stressed copies of part of it (`stress.SELECTION_CHANGES`), the Trainer's
metrics over both, and the threshold chosen on both pooled."""

from __future__ import annotations

import random
from typing import Callable

import numpy as np
from datasets import Dataset, concatenate_datasets

from .images import load_image, undecoded_source
from .metrics import binary_metrics, scalar_metrics, softmax, youden_threshold
from .preprocessing import processed_batch
from .stress import CLEAN, SELECTION_CHANGES, stress_change


def with_stressed_copies(dataset: Dataset, changes=SELECTION_CHANGES, max_images: int | None = None,
                         seed: int = 0) -> Dataset:
    """`dataset` (undecoded images) followed by one stressed copy per change of the same `max_images`
    images (all if None), with columns `stress` (the change's name, or "none") and `stress_index` (the
    image's index in `dataset`, which seeds the change). Use with `stressed_transform`."""
    plain = dataset.with_format(None)
    count = len(plain)
    chosen = sorted(random.Random(seed).sample(range(count), min(count, max_images or count)))
    parts = [plain.add_column("stress", [CLEAN] * count).add_column("stress_index", list(range(count)))]
    for name in changes:
        stress_change(name)  # fail early on an unknown name
        part = plain.select(chosen)
        parts.append(part.add_column("stress", [name] * len(chosen)).add_column("stress_index", chosen))
    return concatenate_datasets(parts)


def stressed_transform(processor, seed: int = 0):
    """A `Dataset.set_transform` function for `with_stressed_copies` data: each row's change applied."""
    def transform(batch: dict) -> dict:
        images = [load_image(undecoded_source(image)) for image in batch["image"]]
        images = [image if name == CLEAN else stress_change(name)(image, seed, index)
                  for image, name, index in zip(images, batch["stress"], batch["stress_index"])]
        return processed_batch(processor, images, batch["label"])

    return transform


def selection_metrics(positive_index: int, stress_names) -> Callable:
    """A Trainer `compute_metrics` for `with_stressed_copies` data, in its order (`stress_names`).

    The clean rows give the usual metrics (accuracy, roc_auc, ...); `robust_roc_auc` is the ROC-AUC of
    clean and stressed rows pooled, which drops when a change shifts scores even if it keeps their
    order, so it is the one to select on; `worst_roc_auc` is the lowest per-change ROC-AUC.
    """
    names = np.asarray(stress_names)

    def compute_metrics(eval_prediction) -> dict:
        scores = softmax(np.asarray(eval_prediction.predictions))[:, positive_index]
        truth = (np.asarray(eval_prediction.label_ids) == positive_index).astype(int)
        clean = names == CLEAN
        metrics = scalar_metrics(binary_metrics(truth[clean], scores[clean]))
        per_change = {}
        for name in dict.fromkeys(names[~clean].tolist()):
            rows = names == name
            per_change[name] = binary_metrics(truth[rows], scores[rows])["roc_auc"]
            metrics[f"roc_auc_{name}"] = per_change[name]
        metrics["worst_roc_auc"] = min([metrics["roc_auc"], *per_change.values()])
        metrics["robust_roc_auc"] = binary_metrics(truth, scores)["roc_auc"]
        return metrics

    return compute_metrics



def robust_threshold(truth, probabilities: dict[str, np.ndarray], positive_index: int,
                     changes=SELECTION_CHANGES) -> float:
    """Youden's J threshold on clean and stressed images pooled: an operating point that holds when
    framing, text or exposure change, not only on the clean split."""
    pooled = [CLEAN, *changes]
    scores = np.concatenate([probabilities[name][:, positive_index] for name in pooled])
    return youden_threshold(np.tile(np.asarray(truth), len(pooled)), scores)
