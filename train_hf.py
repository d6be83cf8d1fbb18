#!/usr/bin/env python
"""Fine-tune a vision transformer on chest X-rays with the Transformers `Trainer`.

Reads top-down: load the data and carve a patient-disjoint validation split, build the model and the
transforms from its image processor, train with early stopping on ROC-AUC, choose the operating
threshold on validation data, evaluate, write the model card, push.

    python train_hf.py --dataset_name_or_dir ../shared/data/chest_xray \
        --model_name_or_path ../shared/models/dinov2-small --output_dir outputs/smoke --max_steps 20

`python train_hf.py --help` lists every option, the Trainer's included.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import concatenate_datasets
from transformers import EarlyStoppingCallback, HfArgumentParser, TrainingArguments

from pneumolens import cli
from pneumolens.calibration import recalibrated, shown_after, write_card_section as write_calibration_section
from pneumolens.card import CardFacts, build_card
from pneumolens.commands.calibrate import calibrate_saved_model
from pneumolens.commands.fit_ood import fit_detector
from pneumolens.data import (
    drop_unreadable, grouping_note, hub_revision, image_sources, is_local, load_image_dataset,
    split_by_patient,
)
from pneumolens.errors import PneumoLensError
from pneumolens.evaluation import evaluate_model
from pneumolens.explain.selection import choose_and_confirm
from pneumolens.hub import push_model_dir, resolve_token
from pneumolens.ood import STRESSED_IMAGES, write_card_section as write_ood_section
from pneumolens.similar import index_training_films
from pneumolens.referral import (
    CONFIDENCE, STABILITY_CHANGES, TARGET_ERROR, checked_probabilities, update_model_referral, write_card_sections,
)
from pneumolens.decision import CALIBRATION_KEY, REFERRAL_KEY, THRESHOLD_KEY
from pneumolens.modeling import (
    POSITIVE_LABEL_KEY, ModelSource, freeze_early_layers, load_model, load_model_and_processor, save_model,
)
from pneumolens.preprocessing import batch_transform, input_size, radiograph_augmentation, square_resize
from pneumolens.checkpoint_selection import robust_threshold, selection_metrics, stressed_transform, with_stressed_copies
from pneumolens.stress import CLEAN, STRESS_SUITE, SELECTION_CHANGES, predict_stressed, run_stress_suite, stress_table
from pneumolens.training import CheckpointSafeTrainer, class_weighted_loss, last_complete_checkpoint, save_atomically

logger = logging.getLogger("train_hf")


@dataclass
class ModelArguments:
    """The model to fine-tune, and how it is stored."""

    model_name_or_path: str = field(
        default="facebook/dinov2-small",
        metadata={"help": "Hub id or local directory of a ViT, DeiT, DINOv2 or ConvNeXt checkpoint; "
                          "here ../shared/models/dinov2-small stands in for facebook/dinov2-small.",
                  "aliases": [cli.ALIASES[cli.MODEL]]},
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "Hub model revision.", "aliases": [cli.ALIASES[cli.MODEL_REVISION]]}
    )
    freeze_layers: int = field(
        default=0,
        metadata={"help": "Freeze the embeddings and this many early blocks (ViT family) or stages "
                          "(ConvNeXt); 0 fine-tunes everything."},
    )
    save_dtype: str = field(
        default="float32",
        metadata={"help": "Storage dtype of the saved weights: float32, float16 or bfloat16. The model is "
                          "evaluated after the round trip, and PneumoLens loads it as float32.",
                  "choices": ["float32", "float16", "bfloat16"]},
    )


@dataclass
class DataArguments:
    dataset_name_or_dir: str = field(
        default="hf-vision/chest-xray-pneumonia",
        metadata={"help": "A Hub data set id, or a local imagefolder directory (SPLIT/CLASS/IMAGE), "
                          "e.g. ../shared/data/chest_xray.", "aliases": [cli.ALIASES[cli.DATASET]]},
    )
    dataset_revision: str | None = field(
        default=None,
        metadata={"help": "Hub data set revision (branch, tag or commit; default main). It is resolved to the "
                          "commit, which is loaded and written into the card."},
    )
    positive_label: str = field(
        default="PNEUMONIA", metadata={"help": "The class whose probability is the score (the finding)."}
    )
    validation_fraction: float = field(
        default=cli.VALIDATION_FRACTION,
        metadata={"help": "Share of the training split carved out, by patient, for early stopping, "
                          "checkpoint selection and the threshold."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only this many training images (for smoke runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only this many carved validation images (for smoke runs)."}
    )
    augment: bool = field(
        default=True,
        metadata={"help": "Shortcut augmentation while training: zoom/crop, borders, burned-in text, exposure, "
                          "blur/sharpen, noise, JPEG, down-up sampling (pneumolens/augmentation.py)."},
    )
    zoom_probability: float = field(
        default=0.5, metadata={"help": "Share of training images zoomed/cropped by the shortcut augmentation."}
    )
    stress_selection_images: int | None = field(
        default=300,
        metadata={"help": "Carved validation images that get a stressed copy per selection change "
                          f"({', '.join(SELECTION_CHANGES)}) for checkpoint selection; 0 selects on clean "
                          "images only."},
    )
    stress_suite: bool = field(
        default=True,
        metadata={"help": "After training, run the whole stress suite on the carved validation split: it sets "
                          "the threshold (clean and selection changes pooled) and goes into the card."},
    )
    stress_suite_images: int | None = field(
        default=None,
        metadata={"help": "Run the post-training stress suite (and so the threshold) on a seeded subset of this "
                          "many carved validation images instead of all of them: the suite scores every image "
                          "once per change, which takes long on a CPU. Clean metrics still use every image."},
    )


@dataclass
class PneumoTrainingArguments(TrainingArguments):
    """The Trainer's arguments, with defaults that suit this task on a CPU."""

    output_dir: str | None = field(default="outputs/pneumolens", metadata={"help": "Where the model goes."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate: steps or epoch."})
    eval_steps: float | None = field(default=100, metadata={"help": "Evaluate every N steps."})
    save_steps: float = field(default=100, metadata={"help": "Save a checkpoint every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best one too)."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the best validation model."})
    metric_for_best_model: str | None = field(
        default="robust_roc_auc",
        metadata={"help": "Selection metric. robust_roc_auc: ROC-AUC of clean and stressed validation copies "
                          "pooled (drops when framing or text shifts scores); roc_auc: clean only. Not "
                          "accuracy, which rewards the majority class."},
    )
    greater_is_better: bool | None = field(default=True, metadata={"help": "Higher metric is better."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Evaluation batch size per device."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warm-up steps, or a fraction of all steps if < 1."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs to train."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the transform needs the image column."}
    )
    # Measured (benchmarks/train_throughput.py, 2 cores): decoding + augmentation + processor run at
    # 342 images/s against 6.5 for a training step, so a worker process only takes a core from the model
    # (6.0 vs 6.5 images/s). More cores change that: raise it there.
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "Processes that decode and augment the next batch while the model trains."}
    )

    class_weighting: bool = field(
        default=True,
        metadata={"help": "Weight the loss by inverse class frequency (the data is ~3:1 PNEUMONIA:NORMAL)."},
    )
    consistency_weight: float = field(
        default=0.0,
        metadata={"help": "Show each training image twice, independently augmented, and add this weight x the "
                          "Jensen-Shannon divergence of the two predictions to the loss (AugMix-style), so "
                          "framing, text and exposure stop moving the score. 0: one view, no term. Doubles "
                          "the compute per image."},
    )
    early_stopping_patience: int = field(
        default=3, metadata={"help": "Stop after this many evaluations without a better selection metric "
                                     "(--metric_for_best_model, robust_roc_auc by default: ROC-AUC on the carved "
                                     "validation split and its stressed copies)."}
    )


@dataclass
class AfterTrainingArguments:
    """What is chosen, fitted and written after training, on the carved validation split: calibration,
    referral band, out-of-distribution detector, the training films' index, the maps' settings, the card."""

    calibrate: bool = field(
        default=True,
        metadata={"help": "Fit Platt scaling of the probabilities on the carved validation split and fold the "
                          "operating threshold into the classifier's bias, so the top label is the decision "
                          "everywhere, a plain transformers pipeline included (pneumolens/calibration.py)."},
    )
    referral_target_error: float = field(
        default=TARGET_ERROR,
        metadata={"help": "After calibration, choose the referral band (pneumolens/referral.py): the narrowest band "
                          "around the threshold that keeps the error rate among the films decided at or below this, "
                          "with --referral_confidence, on the carved validation split and each of its stressed "
                          "copies. 0: no band (every film is decided)."},
    )
    referral_confidence: float = field(default=CONFIDENCE, metadata={"help": "See --referral_target_error."})
    referral_stability_changes: str = field(
        default=",".join(STABILITY_CHANGES),
        metadata={"help": "With the band, choose the stability rule (pneumolens/referral.py): a decided film is also "
                          "referred when enough of these stress changes (comma-separated, in the order the rule's "
                          "nested sets take them) move it into the band or across the threshold. Empty: the band "
                          "alone."},
    )
    ood_num_train: int = field(
        default=1000,
        metadata={"help": "Training images whose features define the out-of-distribution detector saved "
                          "with the model (0: none)."},
    )
    index_training_films: bool = field(
        default=True,
        metadata={"help": "After training, index the training films by the model's own features "
                          "(similar_films.faiss, pneumolens/similar.py): the app shows the most similar ones "
                          "beside the maps, and the card the retrieval measured on the carved split. Sized to "
                          "the run: with --max_train_samples or --max_eval_samples, the films it used only."},
    )
    explanation_settings_images: int = field(
        default=0,
        metadata={"help": "After training, choose Grad-CAM's layer and rollout's settings by faithfulness on this "
                          "many images of one half of the carved validation split (what `explain.py select` "
                          "does) and measure every map's faithfulness on --faithfulness_images of the other "
                          "half; both are stored with the model, where the app reads them. 0: skip (hours on "
                          "a CPU, minutes on a GPU)."},
    )
    faithfulness_images: int = field(
        default=100, metadata={"help": "Images that confirm the chosen settings (with --explanation_settings_images)."}
    )
    card_title: str | None = field(
        default=None,
        metadata={"help": "The model's name in its card title and model-index (default: --hub_model_id, else "
                          "pneumolens-<base model name>; never the output directory)."},
    )
    card_base_model: str | None = field(
        default=None,
        metadata={"help": "Hub id written as base_model in the card when --model_name_or_path is a local "
                          "copy of a Hub model (e.g. facebook/dinov2-small)."},
    )


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser((ModelArguments, DataArguments, PneumoTrainingArguments, AfterTrainingArguments))
    model_args, data_args, training_args, after = parser.parse_args_into_dataclasses(args=argv)
    # The command as a person types it, for the card: the arguments given, else the process's own.
    command = "python train_hf.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    cli.setup_logging()
    started = time.time()
    push_token = _take_over_push(training_args)

    # Data, pinned to one commit when it comes from the Hub
    if not is_local(data_args.dataset_name_or_dir):
        data_args.dataset_revision = hub_revision(data_args.dataset_name_or_dir, data_args.dataset_revision)
    dataset = load_image_dataset(data_args.dataset_name_or_dir, data_args.dataset_revision)
    if "train" not in dataset:
        raise PneumoLensError(f"{data_args.dataset_name_or_dir} has no 'train' split (splits: {list(dataset)}).")
    labels = dataset["train"].features["label"].names
    if data_args.positive_label not in labels:
        raise PneumoLensError(f"--positive_label {data_args.positive_label} is not a class: {labels}")
    split_rule = grouping_note(dataset["train"])
    training_films = drop_unreadable(dataset["train"], "train")
    train_split, validation_split = split_by_patient(training_films, data_args.validation_fraction, training_args.seed)
    train_split = _limit(train_split, data_args.max_train_samples, training_args.seed)
    validation_split = _limit(validation_split, data_args.max_eval_samples, training_args.seed)
    official_validation = drop_unreadable(dataset["validation"], "validation") if "validation" in dataset else None
    # Evaluated once, after training, selection and threshold; nothing is chosen on it.
    test_split = drop_unreadable(dataset["test"], "test") if "test" in dataset else None

    # Model and transforms, both resolved from the checkpoint
    source = ModelSource(model_args.model_name_or_path, model_args.model_revision)
    # SDPA attention while training: nothing reads attention maps here, and it is faster on a CPU.
    model, processor = load_model_and_processor(
        source, "sdpa", num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, **{POSITIVE_LABEL_KEY: data_args.positive_label},
        # A PneumoLens model fine-tuned again starts without the old head's threshold, calibration and band.
        **{THRESHOLD_KEY: None, CALIBRATION_KEY: None, REFERRAL_KEY: None},
    )
    trainable = freeze_early_layers(model, model_args.freeze_layers)
    logger.info("%s: %.2f M of %.2f M parameters trainable", model.config.model_type, trainable / 1e6,
                sum(p.numel() for p in model.parameters()) / 1e6)
    processor = square_resize(processor)
    augmentation = radiograph_augmentation(p_zoom=data_args.zoom_probability) if data_args.augment else None
    paired = training_args.consistency_weight > 0
    train_split.set_transform(batch_transform(processor, augmentation, paired=paired))
    # Selection data: the carved validation split, then stressed copies of part of it
    selection_changes = SELECTION_CHANGES if data_args.stress_selection_images else ()
    selection_split = with_stressed_copies(validation_split, selection_changes, data_args.stress_selection_images,
                                           training_args.seed)
    selection_split.set_transform(stressed_transform(processor, training_args.seed))

    # Train
    positive = labels.index(data_args.positive_label)
    trainer = CheckpointSafeTrainer(
        model=model,
        args=training_args,
        train_dataset=train_split,
        eval_dataset=selection_split,
        compute_metrics=selection_metrics(positive, selection_split.with_format(None)["stress"]),
        compute_loss_func=class_weighted_loss(train_split.with_format(None)["label"], len(labels))
        if training_args.class_weighting else None,
        callbacks=[EarlyStoppingCallback(training_args.early_stopping_patience)],
        consistency_weight=training_args.consistency_weight,
    )
    trainer.train(resume_from_checkpoint=_checkpoint_to_resume(training_args))
    trainer.save_state()
    if not trainer.is_world_process_zero():
        return

    # Save the model as it will ship, then reload it the way its users will
    output_dir = Path(training_args.output_dir)
    with save_atomically(output_dir) as staging:
        save_model(model, staging, getattr(torch, model_args.save_dtype))
        processor.save_pretrained(staging)
    # Scored where it trained: the stress suite and the detector fit take minutes on a CPU, seconds on a GPU.
    model = load_model(ModelSource(str(output_dir)), attention="sdpa").to(training_args.device)

    # Operating threshold: Youden's J on the carved validation split and its stressed copies pooled, so
    # the operating point holds when framing, text or exposure change
    validation_split.reset_format()
    suite_split = _limit(validation_split, data_args.stress_suite_images, training_args.seed)
    truth = np.array(suite_split["label"]) == positive
    if truth.all() or not truth.any():
        raise PneumoLensError(f"The {len(truth)} validation images the threshold is chosen on hold one class only: "
                              "raise --stress_suite_images (or --max_eval_samples).")
    changes = STRESS_SUITE if data_args.stress_suite else ()
    probabilities = predict_stressed(model, processor, image_sources(suite_split), changes,
                                     training_args.seed, training_args.per_device_eval_batch_size)
    pooled = [name for name in selection_changes if name in probabilities]
    setattr(model.config, THRESHOLD_KEY, robust_threshold(truth, probabilities, positive, pooled))
    model.config.save_pretrained(output_dir)
    calibration = None
    if after.calibrate:
        clean = probabilities[CLEAN] if suite_split is validation_split else None
        calibration = calibrate_saved_model(model, processor, output_dir, validation_split, command, clean,
                                            training_args.per_device_eval_batch_size)
        # Reloaded as users load it; the stress suite's probabilities re-expressed as the calibrated ones the
        # folded model shows (the same decisions).
        model = load_model(ModelSource(str(output_dir)), attention="sdpa").to(training_args.device)
        shown = shown_after(calibration)
        probabilities = {name: recalibrated(p, shown, positive) for name, p in probabilities.items()}

    referral = _choose_referral_band(model, output_dir, truth, probabilities, positive, pooled, after, command,
                                     processor, image_sources(suite_split), training_args.seed,
                                     training_args.per_device_eval_batch_size)

    # Out-of-distribution detector: training images (and augmented copies) define the distribution
    # (its stressed calibration copies as many as the stress suite's images: sized to the run)
    stressed_for_ood = min(STRESSED_IMAGES, len(suite_split))
    detector = fit_detector(model, processor, output_dir, train_split, validation_split, command,
                            after.ood_num_train, seed=training_args.seed,
                            stressed_images=stressed_for_ood) if after.ood_num_train > 0 else None

    # Evaluate, write the card, push
    results = {"carved_validation": evaluate_model(
        model, processor, validation_split, output_dir / "eval" / "carved_validation",
        "validation (carved from train)",
        probabilities=probabilities[CLEAN] if suite_split is validation_split else None)}
    if official_validation is not None:
        results["official_validation"] = evaluate_model(
            model, processor, official_validation, output_dir / "eval" / "official_validation",
            f"official validation ({len(official_validation)} images)", batch_size=training_args.per_device_eval_batch_size)
    if test_split is not None:
        results["test"] = evaluate_model(model, processor, test_split, output_dir / "eval" / "test",
                                         f"test ({len(test_split)} images)",
                                         batch_size=training_args.per_device_eval_batch_size)
    # The example sheet goes into the card, which may be published: show an official validation image
    # (public, CC BY 4.0) rather than one of the training images when there is one.
    example = image_sources(official_validation)[0] if official_validation is not None else None
    stress = run_stress_suite(model, processor, suite_split, output_dir / "eval" / "stress",
                              probabilities=probabilities, seed=training_args.seed, example=example) if changes else None
    if after.explanation_settings_images > 0:
        choose_and_confirm(output_dir, validation_split, training_args.seed, after.explanation_settings_images,
                           after.faithfulness_images)
    all_args = {**asdict(model_args), **asdict(data_args), **training_args.to_dict(), **asdict(after)}
    (output_dir / "training_args.json").write_text(json.dumps(all_args, indent=2, default=str) + "\n")
    run = TrainingRun(command, started, split_rule, augmentation, pooled, calibration, stress, results,
                      {"train": train_split, "validation (carved)": validation_split,
                       "official validation": official_validation, "test": test_split})
    build_card(_card_facts(model_args, data_args, training_args, after, model, processor, run)).save(
        output_dir / "README.md")
    # The sections measured after training, each by the writer its own command uses.
    if calibration:
        write_calibration_section(output_dir, calibration, command)
    if referral:
        write_card_sections(output_dir / "README.md", referral, model.config, command)
    if detector is not None:
        write_ood_section(output_dir, detector, min(after.ood_num_train, len(train_split)), len(validation_split),
                          command, stressed_for_ood)
    # The training films, indexed by the model's own features: the app's similar films beside the maps (its card section too)
    if after.index_training_films:
        data_name = Path(data_args.dataset_name_or_dir).name if is_local(data_args.dataset_name_or_dir) \
            else data_args.dataset_name_or_dir
        index_training_films(model, processor, _films_of_the_run(training_films, train_split, validation_split, data_args),
                             validation_split, output_dir, data_name, command,
                             training_args.per_device_eval_batch_size, across_processes=False)
    logger.info("Model, processor and card saved to %s", output_dir)
    if push_token:
        commit = push_model_dir(str(output_dir), training_args.hub_model_id, push_token,
                                private=training_args.hub_private_repo)
        logger.info("Pushed: %s (pin revision=%s)", commit.commit_url, commit.oid)


def _take_over_push(training_args: TrainingArguments) -> str | None:
    """Check the push options up front and return the token; the push itself happens once, at the end.

    The Trainer's own push would upload every checkpoint and overwrite README.md with its auto card.
    """
    if not training_args.push_to_hub:
        return None
    if not training_args.hub_model_id:
        raise PneumoLensError("--push_to_hub needs --hub_model_id (e.g. your-name/pneumolens-dinov2-small).")
    token = resolve_token(training_args.hub_token)
    training_args.push_to_hub = False
    return token


def _limit(dataset, max_samples: int | None, seed: int):
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_samples))


def _films_of_the_run(training_films, train_split, validation_split, data_args):
    """The training films to index: all of them, or, where the run was limited to a sample (a smoke run),
    the sampled training and carved validation films it used."""
    if data_args.max_train_samples is None and data_args.max_eval_samples is None:
        return training_films
    return concatenate_datasets([train_split.with_format(None), validation_split.with_format(None)])


def _checkpoint_to_resume(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint last` means the newest checkpoint in the output directory."""
    requested = training_args.resume_from_checkpoint
    if requested != "last":
        if requested and not Path(requested).is_dir():
            raise PneumoLensError(f"--resume_from_checkpoint: no such checkpoint directory {requested}")
        return requested
    last = last_complete_checkpoint(training_args.output_dir)
    if last is None:
        logger.warning("No complete checkpoint in %s to resume from; training from the start.",
                       training_args.output_dir)
    return last


def _choose_referral_band(model, output_dir, truth, probabilities, positive, pooled, after, command, processor=None,
                          images=(), seed: int = 0, batch_size: int = 32) -> dict | None:
    """The referral band and the stability rule on the carved split and its stressed copies (as shown after
    calibration), saved in the config; None where none is asked for, or none meets the target (the model then
    decides every film)."""
    if after.referral_target_error <= 0 or model.config.num_labels != 2:
        return None
    changes = tuple(name for name in after.referral_stability_changes.split(",") if name)
    stressed = {name: probabilities[name] for name in (CLEAN, *pooled)}
    chosen = checked_probabilities(model, processor, list(images), stressed, changes, seed, batch_size) if changes \
        else {name: {CLEAN: p[:, positive]} for name, p in stressed.items()}
    try:
        return update_model_referral(output_dir, model.config, truth, chosen, changes, after.referral_target_error,
                                     after.referral_confidence, command)
    except PneumoLensError as reason:
        logger.warning("No referral band: %s", reason)
        return None


def card_title(model_args, after, training_args) -> str:
    """What the card calls the model: its own id, not where a run happened to write it."""
    base = Path((after.card_base_model or model_args.model_name_or_path).rstrip("/")).name
    return after.card_title or training_args.hub_model_id or f"pneumolens-{base}"


@dataclass
class TrainingRun:
    """What a run found on its way, for the card."""
    command: str
    started: float  # time.time() at the start
    split_rule: str  # how the carved validation split was grouped
    augmentation: object | None
    pooled: list[str]  # the stressed copies pooled with the clean split for the threshold
    calibration: dict | None
    stress: dict | None
    results: dict
    splits: dict


def _card_facts(model_args, data_args, training_args, after, model, processor, run: TrainingRun) -> CardFacts:
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    split_sizes = {
        name: {labels[k]: v for k, v in sorted(Counter(split.with_format(None)["label"]).items())}
        for name, split in run.splits.items() if split is not None
    }
    height, width = input_size(processor)
    calibration = run.calibration
    return CardFacts(
        model_name=card_title(model_args, after, training_args),
        base_model=after.card_base_model or model_args.model_name_or_path,
        dataset_id="hf-vision/chest-xray-pneumonia" if Path(data_args.dataset_name_or_dir).exists()
        else data_args.dataset_name_or_dir,
        dataset_revision=data_args.dataset_revision, split_rule=run.split_rule,
        labels=labels, positive_label=data_args.positive_label,
        threshold=getattr(model.config, THRESHOLD_KEY),
        threshold_rule="maximising Youden's J (sensitivity + specificity - 1)" + (
            f" over the carved validation images and their stressed copies ({', '.join(run.pooled)}) pooled"
            if run.pooled else ""),
        image_size=f"{height}x{width}", command=run.command,
        training_procedure=_procedure(model_args, data_args, training_args, run), split_sizes=split_sizes,
        results=run.results, repo_id=training_args.hub_model_id or training_args.output_dir,
        folded=calibration is not None, calibrated=bool(calibration and calibration["calibration"]),
        softmax_threshold=calibration["threshold_before"] if calibration else None,
        extra_sections=[_figures_section(run.results), *([_stress_section(run.stress)] if run.stress else [])],
    )


def _procedure(model_args, data_args, training_args, run: TrainingRun) -> str:
    """The card's training procedure: the hyper-parameters, and how long it took on what."""
    hyper_parameters = {
        "learning rate": training_args.learning_rate,
        "length": f"{training_args.max_steps} steps" if training_args.max_steps > 0
        else f"{training_args.num_train_epochs:g} epochs",
        "batch size": training_args.per_device_train_batch_size,
        "weight decay": training_args.weight_decay, "warm-up": training_args.warmup_steps,
        "scheduler": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type), "seed": training_args.seed,
        "frozen layers": model_args.freeze_layers, "class-weighted loss": training_args.class_weighting,
        "consistency term": f"{training_args.consistency_weight:g} x Jensen-Shannon divergence between two augmented "
        "views of each image" if training_args.consistency_weight > 0 else "none",
        "augmentation": run.augmentation.describe() if run.augmentation else "none",
        "checkpoint selection": f"{training_args.metric_for_best_model} on the carved validation split"
        + (f" and stressed copies of {data_args.stress_selection_images} of its images ({', '.join(SELECTION_CHANGES)})"
           if data_args.stress_selection_images else ""),
        "attention while training": "SDPA",
        "early stopping": f"patience {training_args.early_stopping_patience} evaluations",
    }
    minutes = (time.time() - run.started) / 60
    return ("\n".join(f"- {name}: {value}" for name, value in hyper_parameters.items())
            + f"\n\nTraining took {minutes:.1f} minutes on {_hardware()} (torch {torch.__version__}).")


def _figures_section(results: dict) -> str:
    """Links to the plots `evaluate_model` wrote under eval/FOLDER/ (results are keyed by folder)."""
    lines = ["### Figures", ""]
    for folder, metrics in results.items():
        name = metrics["split"]
        lines.append(f"![ROC curve, {name}](eval/{folder}/roc_curve.png) "
                     f"![Confusion matrix, {name}](eval/{folder}/confusion_matrix.png)")
    return "\n".join(lines)


def _stress_section(stress: dict) -> str:
    return "\n".join([
        "### Stress suite (shortcut check)", "",
        f"The carved validation split ({stress['num_images']} images) under acquisition changes that must not change "
        f"a diagnosis, at the operating threshold {stress['threshold']:.4f}, seed {stress['seed']}. "
        f"\"Flipped\" is the share of decisions that differ from the unchanged image's.", "",
        stress_table(stress["changes"], stress["negative_label"], stress["positive_label"]), "",
        "![Stress suite](eval/stress/stress.png) ![The changes on one image](eval/stress/stress_examples.png)",
    ])


def _hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


if __name__ == "__main__":
    cli.run(main)
