"""The Trainer as this project uses it: checkpoint weights restored correctly, and a class-weighted loss.

Transformers 5 renames some weights in memory (DINOv2's `attention.attention.query` becomes
`attention.q_proj`) and renames them back when saving. The Trainer's own resume and best-model loading
call `load_state_dict` on the saved file directly, skip that conversion, and with `strict=False`
silently leave the attention weights as they were (huggingface/transformers#43701). `from_pretrained`
does convert, so checkpoints are restored through it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForImageClassification, Trainer

logger = logging.getLogger(__name__)


def restore_weights(model: torch.nn.Module, checkpoint_dir: str) -> None:
    """Load a checkpoint directory's weights into `model` in place, every key accounted for."""
    saved = AutoModelForImageClassification.from_pretrained(
        checkpoint_dir, config=model.config, use_safetensors=True, trust_remote_code=False
    )
    model.load_state_dict(saved.state_dict(), strict=True)
    logger.info("Restored weights from %s", checkpoint_dir)


class CheckpointSafeTrainer(Trainer):
    """A `Trainer` whose resume and `load_best_model_at_end` restore every weight (see module doc)."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        restore_weights(model if model is not None else self.model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        logger.info("Best checkpoint: %s (%s = %s)", self.state.best_model_checkpoint,
                    self.args.metric_for_best_model, self.state.best_metric)
        restore_weights(self.model, self.state.best_model_checkpoint)


def class_weighted_loss(labels, num_labels: int):
    """A `compute_loss_func`: cross-entropy weighted by inverse class frequency in `labels`.

    Each class then weighs the same in total, so the 3:1 PNEUMONIA:NORMAL imbalance of the Kermany
    training split does not push the model towards always answering PNEUMONIA.
    """
    counts = np.bincount(np.asarray(labels), minlength=num_labels)
    weights = torch.tensor(counts.sum() / (num_labels * np.maximum(counts, 1)), dtype=torch.float32)
    logger.info("Class counts %s -> loss weights %s", counts.tolist(), [round(w, 3) for w in weights.tolist()])

    def loss(outputs, target, num_items_in_batch=None):
        logits = outputs["logits"]
        return torch.nn.functional.cross_entropy(logits.float(), target, weight=weights.to(logits.device))

    return loss


# What a checkpoint directory holds once the Trainer has finished writing it; trainer_state.json is
# written last, so a run killed while saving leaves a directory without it.
CHECKPOINT_FILES = ("model.safetensors", "trainer_state.json")


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` in `output_dir` whose files are all there, skipping half-written ones."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    numbered = [(int(match.group(1)), path) for path in root.iterdir()
                if path.is_dir() and (match := re.fullmatch(r"checkpoint-(\d+)", path.name))]
    for _, path in sorted(numbered, reverse=True):
        if all((path / name).is_file() and (path / name).stat().st_size > 0 for name in CHECKPOINT_FILES):
            return str(path)
        logger.warning("Skipping incomplete checkpoint %s", path)
    return None


@contextmanager
def save_atomically(output_dir: str | Path):
    """Yield a staging directory; when the block succeeds, move each file it holds into `output_dir`
    with `os.replace` (atomic per file). A save that fails half-way leaves the model that was there."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output))
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            os.replace(path, output / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
