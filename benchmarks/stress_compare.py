#!/usr/bin/env python
"""Models side by side under the stress suite, on the carved validation split train_hf.py selects on.

    python benchmarks/stress_compare.py --models models/pneumolens-dinov2-small outputs/candidate \
        [--changes NAME ...] [--max_images N]

The split is carved exactly as train_hf.py carves it (patient-disjoint, --validation_fraction, --seed),
so the figures are the ones selection sees, never the held-out test split. Each model is scored at its
own saved threshold; per change the table gives ROC-AUC, specificity, sensitivity and the share of
NORMAL decisions that flip, then each model's robust ROC-AUC over the selection changes pooled.

    python benchmarks/stress_compare.py --models A B --selection_pool 300

instead scores the exact pool train_hf.py selects checkpoints on (every carved image, plus stressed
copies of 300 of them under each selection change, same images and seeds) and prints each model's
selection metrics, the figure `best_metric` in a run's trainer_state.json is.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402

from pneumolens import cli  # noqa: E402
from pneumolens.data import drop_unreadable, image_sources, load_image_dataset, split_by_patient  # noqa: E402
from pneumolens.metrics import binary_metrics  # noqa: E402
from pneumolens.decision import operating_threshold  # noqa: E402
from pneumolens.modeling import ModelSource, load_model_and_processor, positive_index  # noqa: E402
from pneumolens.checkpoint_selection import selection_metrics, stressed_transform, with_stressed_copies  # noqa: E402
from pneumolens.stress import (  # noqa: E402
    CLEAN, SELECTION_CHANGES, STRESS_SUITE, predict_stressed, stress_change, stress_report,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True)
    cli.add_option(parser, cli.DATASET, default=str(REPO.parent / "shared" / "data" / "chest_xray"))
    parser.add_argument("--changes", nargs="*", default=[change.name for change in STRESS_SUITE])
    parser.add_argument("--max_images", type=int, default=None, help="A seeded subset of the carved split.")
    parser.add_argument("--validation_fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--selection_pool", type=int, default=None,
                        help="Score train_hf.py's selection pool with this many stressed images per change instead.")
    args = parser.parse_args()

    train = drop_unreadable(load_image_dataset(args.dataset_name_or_dir)["train"], "train")
    _, validation = split_by_patient(train, args.validation_fraction, args.seed)
    if args.selection_pool:
        compare_selection(args.models, validation, args.selection_pool, args.seed)
        return
    if args.max_images and args.max_images < len(validation):
        validation = validation.shuffle(seed=args.seed).select(range(args.max_images))
    changes = [stress_change(name) for name in args.changes]
    names = [CLEAN, *args.changes]
    reports, robust = {}, {}
    for model_dir in args.models:
        source = ModelSource(model_dir)
        model, processor = load_model_and_processor(source, "sdpa")
        positive = positive_index(model.config)
        labels = validation.features["label"].names
        truth = np.array([labels[label] == model.config.id2label[positive] for label in validation["label"]], int)
        probabilities = predict_stressed(model, processor, image_sources(validation), changes, args.seed)
        reports[model_dir] = stress_report(truth, probabilities, positive, operating_threshold(model.config))
        pooled = [name for name in (CLEAN, *SELECTION_CHANGES) if name in probabilities]
        robust[model_dir] = binary_metrics(np.tile(truth, len(pooled)),
                                           np.concatenate([probabilities[n][:, positive] for n in pooled]))["roc_auc"]
    print(f"{len(validation)} carved validation images ({int((truth == 0).sum())} negative), seed {args.seed}")
    print("metric per model: " + " | ".join(args.models))
    print(f"{'change':22s} {'ROC-AUC':>16s} {'specificity':>16s} {'sensitivity':>16s} {'flipped neg':>16s}")
    for name in names:
        cells = [" / ".join(f"{reports[m][name][metric]:.3f}" for m in args.models)
                 for metric in ("roc_auc", "specificity", "sensitivity", "flip_rate_negative")]
        print(f"{name:22s} " + " ".join(f"{cell:>16s}" for cell in cells))
    print("robust ROC-AUC (clean + selection changes pooled): "
          + " / ".join(f"{robust[m]:.4f}" for m in args.models))


def compare_selection(models: list[str], validation, images_per_change: int, seed: int) -> None:
    import torch
    from types import SimpleNamespace

    pool = with_stressed_copies(validation, SELECTION_CHANGES, images_per_change, seed)
    names = pool.with_format(None)["stress"]
    labels = np.asarray(pool.with_format(None)["label"])
    print(f"selection pool: {len(validation)} carved images + {images_per_change} x {len(SELECTION_CHANGES)} stressed")
    for model_dir in models:
        source = ModelSource(model_dir)
        model, processor = load_model_and_processor(source, "sdpa")
        pool.set_transform(stressed_transform(processor, seed))
        logits = []
        with torch.no_grad():
            for start in range(0, len(pool), 32):
                logits.append(model(pixel_values=pool[start:start + 32]["pixel_values"]).logits.float().numpy())
        metrics = selection_metrics(positive_index(model.config), names)(
            SimpleNamespace(predictions=np.concatenate(logits), label_ids=labels))
        print(f"{model_dir}: robust_roc_auc {metrics['robust_roc_auc']:.4f}, clean roc_auc {metrics['roc_auc']:.4f}, "
              f"worst {metrics['worst_roc_auc']:.4f}; "
              + ", ".join(f"{name} {metrics['roc_auc_' + name]:.4f}" for name in SELECTION_CHANGES))


if __name__ == "__main__":
    main()
