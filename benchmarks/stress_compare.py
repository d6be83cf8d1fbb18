#!/usr/bin/env python
"""Models side by side under the stress suite, on the carved validation split train_hf.py selects on.

    python benchmarks/stress_compare.py --models models/pneumolens-dinov2-small outputs/candidate \
        [--changes NAME ...] [--max_images N]

The split is carved exactly as train_hf.py carves it (patient-disjoint, --validation_fraction, --seed),
so the figures are the ones selection sees, never the held-out test split. Each model is scored at its
own saved threshold; per change the table gives ROC-AUC, specificity, sensitivity and the share of
NORMAL decisions that flip, then each model's robust ROC-AUC over the selection changes pooled.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from pneumolens.data import drop_unreadable, image_sources, load_image_dataset, split_by_patient  # noqa: E402
from pneumolens.metrics import binary_metrics  # noqa: E402
from pneumolens.modeling import ModelSource, load_image_processor, load_model, operating_threshold, positive_index  # noqa: E402
from pneumolens.stress import CLEAN, SELECTION_CHANGES, STRESS_SUITE, predict_stressed, stress_change, stress_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "chest_xray"))
    parser.add_argument("--changes", nargs="*", default=[change.name for change in STRESS_SUITE])
    parser.add_argument("--max_images", type=int, default=None, help="A seeded subset of the carved split.")
    parser.add_argument("--validation_fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    train = drop_unreadable(load_image_dataset(args.data_dir)["train"], "train")
    _, validation = split_by_patient(train, args.validation_fraction, args.seed)
    if args.max_images and args.max_images < len(validation):
        validation = validation.shuffle(seed=args.seed).select(range(args.max_images))
    changes = [stress_change(name) for name in args.changes]
    names = [CLEAN, *args.changes]
    reports, robust = {}, {}
    for model_dir in args.models:
        source = ModelSource(model_dir)
        model, processor = load_model(source, attention="sdpa"), load_image_processor(source)
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


if __name__ == "__main__":
    main()
