"""Data loading: a Hub data set by name or a local `imagefolder` directory, checked, and split by patient.

Images stay undecoded (`{"path", "bytes"}`) in the data set and are decoded by `images.load_image`
when a batch is formed, so training reads pictures exactly the way serving does.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, load_dataset
from datasets import Image as ImageFeature
from huggingface_hub import HfApi
from sklearn.model_selection import StratifiedGroupKFold

from .errors import PneumoLensError
from .images import PICTURE_SUFFIXES, load_image, undecoded_source

# train_hf.py carves its validation split by patient with these; every command that reuses the carved
# split must carve it the same way (`cli`'s split options default to them). SEED is the Trainer's default
# seed (`TrainingArguments.seed`).
VALIDATION_FRACTION = 0.15
SEED = 42

logger = logging.getLogger(__name__)


# Kermany file names: personNNN_bacteria_MMM / personNNN_virus_MMM (pneumonia), IM-NNNN-MMMM and
# NORMAL2-IM-NNNN-MMMM (normal). The part before the last number identifies the patient.
_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_"),
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+"),
)


def patient_id(file_name: str) -> str:
    """The patient a Kermany image belongs to; unknown naming schemes count as one patient per file."""
    stem = Path(file_name).stem
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return stem


def check_imagefolder(data_dir: str | Path) -> list[str]:
    """Check an imagefolder layout and return its class names, sorted.

    Two layouts: SPLIT/CLASS/IMAGE, or CLASS/IMAGE (one split). Raises `PneumoLensError` for a
    missing directory, a split with fewer than two class folders or splits whose class folders differ.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise PneumoLensError(f"Data directory not found: {root}")
    if _class_folders(root):
        splits = {".": _class_folders(root)}
    else:
        splits = {p.name: _class_folders(p) for p in sorted(root.iterdir()) if p.is_dir()}
    splits = {name: classes for name, classes in splits.items() if classes}
    if not splits:
        raise PneumoLensError(f"No CLASS/IMAGE or SPLIT/CLASS/IMAGE folders with images under {root}")
    reference_split, reference = next(iter(splits.items()))
    for name, classes in splits.items():
        if len(classes) < 2:
            raise PneumoLensError(
                f"{root / name} has only the class folder(s) {classes}; a binary classifier needs two."
            )
        if classes != reference:
            missing = sorted(set(reference) ^ set(classes))
            raise PneumoLensError(
                f"Class folders differ between {root / reference_split} {reference} and "
                f"{root / name} {classes} (missing: {missing})."
            )
    return reference


def _class_folders(split_dir: Path) -> list[str]:
    # Pictures only: datasets' imagefolder reads no DICOM.
    return sorted(
        p.name for p in split_dir.iterdir()
        if p.is_dir() and any(f.suffix.lower() in PICTURE_SUFFIXES for f in p.iterdir())
    )


# datasets' names for split folders (its SPLIT_KEYWORDS); any other folder name is the split's name.
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "dev": "validation", "val": "validation", "test": "test", "testing": "test", "eval": "test",
               "evaluation": "test"}


def linked_image_files(root: Path) -> dict[str, list[str]] | None:
    """{split: image files} where a split or class folder under `root` is a symbolic link (how people point at
    data on a shared disk without copying it), else None. datasets' imagefolder does not follow linked
    folders and would find no file; named through the link, each file keeps its class folder's name as label."""
    folders = [root, *(p for p in root.iterdir() if p.is_dir())]
    if not any(child.is_symlink() for folder in folders for child in folder.iterdir() if child.is_dir()):
        return None
    split_dirs = {".": root} if _class_folders(root) else {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}
    files = {}
    for name, split_dir in split_dirs.items():
        chosen = sorted(str(split_dir / label / image.name) for label in _class_folders(split_dir)
                        for image in (split_dir / label).iterdir() if image.suffix.lower() in PICTURE_SUFFIXES)
        if chosen:
            files[SPLIT_NAMES.get(name.lower(), "train" if name == "." else name)] = chosen
    return files


def is_local(name_or_dir: str) -> bool:
    """A directory (or something written like a path) rather than a Hub data set id."""
    return Path(name_or_dir).exists() or name_or_dir.startswith((".", "/", "~"))


def hub_revision(name: str, revision: str | None = None, token: str | None = None) -> str:
    """The commit a Hub data set's revision (branch, tag or sha; default main) points to now, so a card
    can name exactly what a model was trained on and the data can be loaded at that commit."""
    try:
        return HfApi().dataset_info(name, revision=revision, token=token).sha
    except Exception as err:  # offline, unknown id, unknown revision, no access: all end the run here
        raise PneumoLensError(
            f"Could not reach data set '{name}'" + (f" at revision {revision}" if revision else "")
            + f" ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            "Offline? Pass a local imagefolder directory instead."
        ) from err


def load_image_dataset(name_or_dir: str, revision: str | None = None, token: str | None = None) -> DatasetDict:
    """Load a local imagefolder directory, or else a Hub data set (at `revision`), with undecoded images."""
    if is_local(name_or_dir):
        check_imagefolder(name_or_dir)
        linked = linked_image_files(Path(name_or_dir))
        dataset = load_dataset("imagefolder", data_files=linked) if linked else \
            load_dataset("imagefolder", data_dir=str(Path(name_or_dir)))
    else:
        try:
            dataset = load_dataset(name_or_dir, revision=revision, token=token)
        except Exception as err:  # datasets raises many types for "not reachable / not found"
            raise PneumoLensError(
                f"Could not load data set '{name_or_dir}' ({type(err).__name__}: {err}). "
                "Offline? Pass a local imagefolder directory instead."
            ) from err
    for split in dataset:
        dataset[split] = _standardise(dataset[split], split)
    return dataset


def _standardise(dataset: Dataset, split: str) -> Dataset:
    image_column = next((c for c, f in dataset.features.items() if isinstance(f, ImageFeature)), None)
    label_column = next((c for c, f in dataset.features.items() if isinstance(f, ClassLabel)), None)
    if image_column is None or label_column is None:
        raise PneumoLensError(f"Split '{split}' needs an image column and a ClassLabel column.")
    dataset = dataset.rename_columns({c: n for c, n in ((image_column, "image"), (label_column, "label")) if c != n})
    return dataset.cast_column("image", ImageFeature(decode=False))


def image_name(image: dict) -> str:
    return Path(image.get("path") or "").name


def image_sources(dataset: Dataset) -> list:
    """The images of an undecoded data set as `load_image` takes them: bytes, else paths."""
    return [undecoded_source(image) for image in dataset.with_format(None)["image"]]


def drop_unreadable(dataset: Dataset, split: str) -> Dataset:
    """Remove images PIL cannot read, with a warning that counts and names them.

    A few corrupt files in a folder of thousands should not cost a training run; the count is logged
    so they do not go unnoticed. A split with no readable image is an error.
    """
    readable = np.array([_is_readable(image) for image in dataset["image"]], dtype=bool)
    if not readable.any():
        raise PneumoLensError(f"No readable image in split '{split}'.")
    skipped = np.flatnonzero(~readable)
    if skipped.size:
        names = [image_name(dataset[int(i)]["image"]) for i in skipped[:5]]
        logger.warning("Skipping %d unreadable image(s) in split '%s', e.g. %s", skipped.size, split, names)
        dataset = dataset.select(np.flatnonzero(readable))
    return dataset


def _is_readable(image: dict) -> bool:
    # A full decode through the path training uses: `verify()` passes truncated files, which would
    # then abort training in the middle of an epoch.
    try:
        load_image(undecoded_source(image))
        return True
    except Exception:  # any decoder error means "unreadable"; the caller counts them
        return False


def _file_names(dataset: Dataset) -> list[str]:
    return [image_name(image) for image in dataset.with_format(None)["image"]]


def patient_groups(dataset: Dataset) -> list[str]:
    """The patient of each image, from its file name; one group per image where names are missing.

    Parquet copies of a data set may carry no file name in the image column. Reading the patient from
    an empty name would put every image in one group; per image is the honest fallback (images of one
    patient may then land on both sides of a split, which `grouping_note` says).
    """
    names = _file_names(dataset)
    if all(names):
        return [patient_id(name) for name in names]
    logger.warning("%d of %d images carry no file name, so patients are unknown: splitting per image "
                   "(images of one patient may fall on both sides of the carved validation split).",
                   sum(not name for name in names), len(names))
    return [f"image-{index}" for index in range(len(names))]


def grouping_note(dataset: Dataset) -> str:
    """How `split_by_patient` grouped this data set, in a sentence for the model card."""
    names = _file_names(dataset)
    if all(names):
        return "with every patient on one side (patient id from the file name)"
    return (f"per image, because {sum(not name for name in names)} of {len(names)} images carry no file name to "
            "read the patient from: images of one patient may be on both sides, so the validation figures "
            "may be optimistic")


def split_by_patient(dataset: Dataset, validation_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Carve a validation set from `dataset`, stratified by label, with each patient on one side."""
    if not 0.0 < validation_fraction < 0.5:
        raise PneumoLensError(f"validation_fraction must be in (0, 0.5), not {validation_fraction}")
    groups = patient_groups(dataset)
    labels = np.asarray(dataset["label"])
    n_splits = max(2, round(1.0 / validation_fraction))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_index, validation_index = next(folds.split(np.zeros(len(labels)), labels, groups))
    names = dataset.features["label"].names
    for side, index in (("training", train_index), ("validation", validation_index)):
        missing = sorted(set(labels.tolist()) - set(labels[index].tolist()))
        if missing:
            raise PneumoLensError(
                f"The carved {side} split has no image of {[names[m] for m in missing]}: the model could not "
                "learn it, or a checkpoint and threshold could not be chosen. Use more images of that class.")
    return dataset.select(train_index), dataset.select(validation_index)


def carved_split(name_or_dir: str, validation_fraction: float = VALIDATION_FRACTION, seed: int = SEED,
                 revision: str | None = None) -> tuple[Dataset, Dataset]:
    """(train, validation) as `train_hf.py` carves them from the training images (same fraction and seed,
    same images)."""
    dataset = load_image_dataset(name_or_dir, revision)
    if "train" not in dataset:
        raise PneumoLensError(f"{name_or_dir} has no 'train' split to carve a validation split from (splits: {list(dataset)}).")
    return split_by_patient(drop_unreadable(dataset["train"], "train"), validation_fraction, seed)


def carved_validation(name_or_dir: str, validation_fraction: float = VALIDATION_FRACTION, seed: int = SEED,
                      revision: str | None = None) -> Dataset:
    """The validation split `train_hf.py` carves from the training images."""
    return carved_split(name_or_dir, validation_fraction, seed, revision)[1]


def model_label_ids(dataset: Dataset, config) -> list[int | None]:
    """Each image's class as the model's index, matched by name (None where the model has no such class)."""
    names = dataset.features["label"].names
    return [config.label2id.get(names[label]) for label in dataset["label"]]


VALIDATION_PARTS = ("selection", "confirmation")


def validation_parts(dataset: Dataset, seed: int) -> dict[str, Dataset]:
    """Two disjoint halves of a validation split, stratified by label, each patient in one: settings are
    chosen on "selection" (`explain.py select`) and confirmed on "confirmation" (`explain.py faithfulness`)."""
    labels = np.asarray(dataset["label"])
    folds = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed)
    first, second = next(folds.split(np.zeros(len(labels)), labels, patient_groups(dataset)))
    return dict(zip(VALIDATION_PARTS, (dataset.select(sorted(first)), dataset.select(sorted(second)))))


def balanced_sample(dataset: Dataset, num_images: int, seed: int) -> Dataset:
    """Up to `num_images` images, split between the classes as evenly as they allow, chosen with `seed`."""
    labels = np.asarray(dataset["label"])
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == label)).tolist() for label in np.unique(labels)]
    chosen = []
    while len(chosen) < num_images and any(pools):
        for pool in pools:
            if pool and len(chosen) < num_images:
                chosen.append(pool.pop(0))
    return dataset.select(sorted(chosen))
