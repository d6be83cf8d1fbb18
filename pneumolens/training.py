"""The Trainer as this project uses it: checkpoint weights restored correctly, and a class-weighted loss.

Transformers 5 renames some weights in memory (DINOv2's `attention.attention.query` becomes
`attention.q_proj`) and renames them back when saving. The Trainer's own resume and best-model loading
call `load_state_dict` on the saved file directly, skip that conversion, and with `strict=False`
silently leave the attention weights as they were (huggingface/transformers#43701). `from_pretrained`
does convert, so checkpoints are restored through it.
"""

from __future__ import annotations

import logging

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
