"""Read it yourself first: case sets with known labels, and one student's session over them.

A case set is a folder of class folders (`PNEUMOLENS_CASES=DIR`, `DIR/NORMAL/*.jpeg`, `DIR/PNEUMONIA/*.dcm`) or
a split of a Hub data set (`PNEUMOLENS_CASES=hf-vision/chest-xray-pneumonia:test`, loaded through `datasets`
at the first case). A training split is refused by name: a student should never be quizzed on films the
model learnt from. A session serves every case once, in an order seeded for that session, and keeps its own
tally; nothing is stored on the server beyond the session (docs/teaching.md).
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PneumoLensError
from .data import SPLIT_NAMES
from .images import image_files_under

NOT_SURE = "not sure"


def is_training_split(name: str) -> bool:
    """Whether a split or folder name is a training split, by the names `datasets` gives splits."""
    return SPLIT_NAMES.get(name.lower()) == "train"


@dataclass(frozen=True)
class Case:
    index: int  # in its case set
    label: str | None


class CaseSet:
    """The cases of a folder of class folders, or of a Hub split; `image_bytes(index)` reads one."""

    def __init__(self, setting: str, labels: list[str], files: list[Path] | None = None, hub: tuple | None = None):
        self.setting = setting
        self.labels = labels  # per case
        self._files = files
        self._hub = hub  # (name, split): loaded at the first case
        self._dataset = None

    @classmethod
    def from_setting(cls, setting: str | None) -> "CaseSet | None":
        """The case set `PNEUMOLENS_CASES` names, checked at start-up; None where it is unset."""
        if not setting:
            return None
        setting = setting.strip()
        path = Path(setting).expanduser()
        if path.exists() or setting.startswith((".", "/", "~")):
            return cls._folder(setting, path)
        return cls._hub_split(setting)

    @classmethod
    def _folder(cls, setting: str, path: Path) -> "CaseSet":
        if not path.is_dir():
            raise PneumoLensError(f"PNEUMOLENS_CASES={setting}: no such folder.")
        if any(is_training_split(part) for part in path.resolve().parts):
            raise PneumoLensError(f"PNEUMOLENS_CASES={setting} is a training split: quiz students on films the "
                                  "model never learnt from (a validation or test folder).")
        files, labels = [], []
        for folder in sorted(p for p in path.iterdir() if p.is_dir()):
            found = image_files_under(folder)
            files += found
            labels += [folder.name] * len(found)
        if not files:
            raise PneumoLensError(f"PNEUMOLENS_CASES={setting} holds no images in class folders (e.g. NORMAL/, "
                                  "PNEUMONIA/).")
        return cls(setting, labels, files=files)

    @classmethod
    def _hub_split(cls, setting: str) -> "CaseSet":
        name, _, split = setting.partition(":")
        if not split or "/" not in name:
            raise PneumoLensError(f"PNEUMOLENS_CASES={setting}: name a folder, or a Hub data set and its split "
                                  "('hf-vision/chest-xray-pneumonia:test').")
        if is_training_split(split.split("[")[0].strip()):
            raise PneumoLensError(f"PNEUMOLENS_CASES={setting} is a training split: quiz students on films the "
                                  "model never learnt from (validation or test).")
        return cls(setting, [], hub=(name, split))

    def __len__(self) -> int:
        return len(self._loaded_labels())

    def case(self, index: int) -> Case:
        return Case(index, self._loaded_labels()[index])

    def image_source(self, index: int):
        """The case's picture as `load_image` takes it: a path for a folder, bytes or a path for a Hub row."""
        if self._files is not None:
            return self._files[index]
        from .data import undecoded_source

        return undecoded_source(self._hub_rows()[index]["image"])

    def suffix(self, index: int) -> str:
        """The file suffix the case's picture keeps when it is served (never its name, which can tell the label)."""
        if self._files is not None:
            return self._files[index].suffix.lower()
        path = self._hub_rows()[index]["image"].get("path") or ""
        return Path(path).suffix.lower() or ".png"

    def _loaded_labels(self) -> list[str]:
        if self._hub is not None and not self.labels:
            rows = self._hub_rows()
            names = rows.features["label"].names
            self.labels = [names[label] for label in rows["label"]]
        return self.labels

    def _hub_rows(self):
        if self._dataset is None:
            from datasets import Image as ImageFeature
            from datasets import load_dataset

            name, split = self._hub
            try:
                rows = load_dataset(name, split=split)
            except Exception as err:  # datasets raises many types for "not reachable / not found"
                raise PneumoLensError(f"The case set {self.setting} could not be loaded from the Hub; offline? "
                                      "Name a local folder instead.") from err
            image = next(column for column, feature in rows.features.items() if isinstance(feature, ImageFeature))
            self._dataset = rows.rename_column(image, "image").cast_column("image", ImageFeature(decode=False))
        return self._dataset


@dataclass
class Read:
    """One case read: the student's read, the model's answer and the film's label."""
    number: int  # 1, 2, ... in the session
    case: int
    label: str | None
    student: str
    model: str  # the decided class (where referred, the class it leans to)
    referred: bool

    @property
    def disagree(self) -> bool:
        return self.student != NOT_SURE and self.student != self.model


@dataclass
class QuizSession:
    """One student's way through a case set: an order seeded for the session, the reads made."""
    seed: int
    size: int
    served: list[int] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)

    def __post_init__(self):
        self.order = list(range(self.size))
        random.Random(self.seed).shuffle(self.order)

    @property
    def finished(self) -> bool:
        return len(self.served) >= self.size

    def next_case(self) -> int:
        """The next case this session has not been served; `PneumoLensError` once every case was."""
        if self.finished:
            raise PneumoLensError(f"Every case of this set ({self.size}) has been read in this session.")
        index = self.order[len(self.served)]
        self.served.append(index)
        return index

    def record(self, case: Case, student: str, model: str, referred: bool) -> Read:
        read = Read(len(self.reads) + 1, case.index, case.label, student, model, referred)
        self.reads.append(read)
        return read

    def tally(self) -> dict:
        """What the tally shows: reads, the student's right reads, the model's on the same cases (its
        referrals counted apart), and where the two disagreed."""
        labelled = [read for read in self.reads if read.label is not None]
        committed = [read for read in labelled if read.student != NOT_SURE]
        decided = [read for read in labelled if not read.referred]
        return {"read": len(self.reads), "labelled": len(labelled), "not_sure": sum(r.student == NOT_SURE for r in labelled),
                "student_right": sum(read.student == read.label for read in committed), "student_committed": len(committed),
                "model_right": sum(read.model == read.label for read in decided), "model_decided": len(decided),
                "model_referred": len(labelled) - len(decided),
                "disagreements": [read.number for read in self.reads if read.disagree]}

    def csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["read", "label", "your_read", "model", "model_referred", "you_and_model_disagree"])
        for read in self.reads:
            writer.writerow([read.number, read.label or "", read.student, read.model, read.referred, read.disagree])
        return buffer.getvalue()


def comparison_sentence(read: Read) -> str:
    """One calm line: the read against the model's answer, and against the label where it is known."""
    model = f"the model says {read.model}" + (" but refers the film to a person" if read.referred else "")
    yours = "You were not sure" if read.student == NOT_SURE else f"You read {read.student}"
    label = f"; the film's label is {read.label}" if read.label else ""
    agreement = "" if read.student == NOT_SURE else (" (you agree)" if read.student == read.model else " (you differ)")
    return f"{yours}; {model}{agreement}{label}."


def tally_markdown(tally: dict) -> str:
    if not tally["read"]:
        return ""
    parts = [f"**Cases read: {tally['read']}.**"]
    if tally["labelled"]:
        parts.append(f"Your reads matched the label in {tally['student_right']} of {tally['student_committed']}"
                     + (f" (not sure: {tally['not_sure']})" if tally["not_sure"] else "") + ".")
        decided = (f"{tally['model_right']} of the {tally['model_decided']} it decided" if tally["model_decided"]
                   else "it decided none")
        parts.append(f"The model's, on the same cases: {decided}"
                     + (f"; it referred {tally['model_referred']} to a person" if tally["model_referred"] else "") + ".")
    if tally["disagreements"]:
        parts.append(f"You and the model differed on {len(tally['disagreements'])}: worth a second look.")
    return " ".join(parts)
