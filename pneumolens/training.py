"""The Trainer as this project uses it: checkpoint weights restored correctly, a class-weighted loss, and
an optional consistency term between two augmented views of each training image.

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

from .errors import PneumoLensError
from .preprocessing import PAIRED_KEY

logger = logging.getLogger(__name__)


def restore_weights(model: torch.nn.Module, checkpoint_dir: str) -> None:
    """Load a checkpoint directory's weights into `model` in place, every key accounted for."""
    saved = AutoModelForImageClassification.from_pretrained(
        checkpoint_dir, config=model.config, use_safetensors=True, trust_remote_code=False
    )
    model.load_state_dict(saved.state_dict(), strict=True)
    logger.info("Restored weights from %s", checkpoint_dir)


# The private Trainer methods `CheckpointSafeTrainer` overrides (transformers 5.23, as pinned), with the
# parameters it takes: a transformers that renames them would silently skip the override, so their shape is
# checked when this module loads.
TRAINER_INTERNALS = {"_load_from_checkpoint": ("self", "resume_from_checkpoint", "model"), "_load_best_model": ("self",)}


def check_trainer(internals=TRAINER_INTERNALS, trainer=Trainer) -> None:
    """Raise `PneumoLensError` naming each overridden private method `trainer` lacks or calls otherwise."""
    import inspect

    import transformers

    changed = [f"Trainer.{name}{tuple(parameters)}" for name, parameters in internals.items()
               if not callable(getattr(trainer, name, None))
               or tuple(inspect.signature(getattr(trainer, name)).parameters) != parameters]
    if changed:
        raise PneumoLensError(f"transformers {transformers.__version__} changed what pneumolens/training.py overrides: "
                              f"{', '.join(changed)}. Pin the transformers of requirements.txt, or update the override.")


check_trainer()


class CheckpointSafeTrainer(Trainer):
    """A `Trainer` whose resume and `load_best_model_at_end` restore every weight (see module doc).

    With `consistency_weight` > 0 and batches that carry `PAIRED_KEY` (see
    `preprocessing.batch_transform(paired=True)`), the loss is the mean of both views' losses plus
    `consistency_weight` x the Jensen-Shannon divergence of their predictions (see `consistency_loss`).
    """

    def __init__(self, *args, consistency_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.consistency_weight = consistency_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        paired = inputs.pop(PAIRED_KEY, None)
        if paired is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        # One forward pass over both views: the same weights, dropout and normalisation for each.
        outputs = model(pixel_values=torch.cat([inputs["pixel_values"], paired]))
        logits, paired_logits = outputs["logits"].chunk(2)
        label_loss = self.compute_loss_func or _plain_cross_entropy
        loss = 0.5 * (label_loss({"logits": logits}, labels) + label_loss({"logits": paired_logits}, labels))
        loss = loss + self.consistency_weight * consistency_loss(logits, paired_logits)
        return (loss, {"logits": logits}) if return_outputs else loss

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


def consistency_loss(logits: torch.Tensor, paired_logits: torch.Tensor) -> torch.Tensor:
    """Mean Jensen-Shannon divergence between the class distributions of two views of the same images.

    Augmentation alone lets the model keep a shortcut as long as the label loss stays low on both views
    (measured: zoomed NORMAL films still drifted towards PNEUMONIA). This term asks directly that a zoom,
    a burned-in marker or an exposure change leave the prediction where it was, as AugMix's consistency
    loss does (Hendrycks et al. 2020). It is bounded (at most log 2), so it cannot swamp the label loss
    on images the model is sure about.
    """
    log_p, log_q = logits.float().log_softmax(-1), paired_logits.float().log_softmax(-1)
    log_mixture = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - np.log(2.0)
    kl = torch.nn.functional.kl_div
    return 0.5 * (kl(log_mixture, log_p, reduction="batchmean", log_target=True)
                  + kl(log_mixture, log_q, reduction="batchmean", log_target=True))


def _plain_cross_entropy(outputs, target, num_items_in_batch=None):
    return torch.nn.functional.cross_entropy(outputs["logits"].float(), target)


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
