import logging
from collections import Counter
from pathlib import Path

import pytest

from pneumolens.data import (
    check_imagefolder, drop_unreadable, grouping_note, image_name, load_image_dataset, patient_groups, patient_id,
    split_by_patient,
)
from pneumolens.errors import PneumoLensError


@pytest.mark.parametrize("file_name, patient", [
    ("person1000_bacteria_2931.jpeg", "person1000"),
    ("person1000_virus_1681.jpeg", "person1000"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
    ("/some/dir/person7_bacteria_29.jpeg", "person7"),
    ("scan.png", "scan"),
])
def test_patient_id_from_kermany_file_names(file_name, patient):
    assert patient_id(file_name) == patient


def test_split_keeps_each_patient_on_one_side_and_both_classes_on_both(small_imagefolder):
    train = load_image_dataset(str(small_imagefolder))["train"]
    kept, carved = split_by_patient(train, validation_fraction=0.25, seed=3)
    assert len(kept) + len(carved) == len(train)
    kept_patients = {patient_id(image_name(i)) for i in kept["image"]}
    carved_patients = {patient_id(image_name(i)) for i in carved["image"]}
    assert kept_patients and carved_patients and not kept_patients & carved_patients
    assert set(carved["label"]) == {0, 1}
    assert 0.15 <= len(carved) / len(train) <= 0.35


def test_split_is_seeded(small_imagefolder):
    train = load_image_dataset(str(small_imagefolder))["train"]
    first = split_by_patient(train, 0.25, seed=7)[1]["image"]
    again = split_by_patient(train, 0.25, seed=7)[1]["image"]
    assert [image_name(i) for i in first] == [image_name(i) for i in again]


def _without_file_names(dataset):
    """The data set as a parquet copy without file names carries it: image bytes, path None."""
    from datasets import Dataset

    rows = [{"bytes": Path(image["path"]).read_bytes(), "path": None} for image in dataset["image"]]
    return Dataset.from_dict({"image": rows, "label": dataset["label"]}, features=dataset.features)


def test_images_without_file_names_are_split_per_image_not_as_one_patient(small_imagefolder, caplog):
    train = _without_file_names(load_image_dataset(str(small_imagefolder))["train"])
    with caplog.at_level(logging.WARNING, logger="pneumolens.data"):
        groups = patient_groups(train)
    assert len(set(groups)) == len(train) == 48
    assert "48 of 48 images carry no file name" in caplog.text
    kept, carved = split_by_patient(train, 0.25, seed=3)
    assert set(kept["label"]) == set(carved["label"]) == {0, 1}
    assert 0.15 <= len(carved) / len(train) <= 0.35
    assert grouping_note(train).startswith("per image, because 48 of 48 images carry no file name")


def test_images_with_file_names_are_grouped_by_patient(small_imagefolder):
    train = load_image_dataset(str(small_imagefolder))["train"]
    groups = patient_groups(train)
    assert len(set(groups)) == 24 and max(Counter(groups).values()) == 2  # 2 images per patient
    assert grouping_note(train) == "with every patient on one side (patient id from the file name)"


def test_real_data_split_is_patient_disjoint_and_stratified():
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "chest_xray").is_dir():
        pytest.skip("../shared/data not present")
    train = load_image_dataset(str(SHARED_DATA / "chest_xray"))["train"]
    kept, carved = split_by_patient(train, 0.15, seed=42)
    assert not {patient_id(image_name(i)) for i in kept["image"]} & {patient_id(image_name(i)) for i in carved["image"]}
    share = Counter(carved["label"])[1] / len(carved)
    overall = Counter(train["label"])[1] / len(train)
    assert abs(share - overall) < 0.03


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(PneumoLensError, match="Data directory not found: .*nowhere"):
        load_image_dataset(str(tmp_path / "nowhere"))


def test_missing_class_folder_is_named(copy_of, small_imagefolder):
    data = copy_of(small_imagefolder)
    for image in (data / "val" / "NORMAL").iterdir():
        image.unlink()
    (data / "val" / "NORMAL").rmdir()
    with pytest.raises(PneumoLensError, match="val has only the class folder"):
        check_imagefolder(data)


def test_single_split_layout_is_accepted(small_imagefolder):
    assert check_imagefolder(small_imagefolder / "val") == ["NORMAL", "PNEUMONIA"]


def test_unreadable_images_are_skipped_and_counted(copy_of, small_imagefolder, caplog):
    data = copy_of(small_imagefolder)
    (data / "train" / "NORMAL" / "IM-9999-0001.jpeg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (data / "train" / "PNEUMONIA" / "person99_virus_1.jpeg").write_bytes(b"")
    train = load_image_dataset(str(data))["train"]
    with caplog.at_level(logging.WARNING):
        readable = drop_unreadable(train, "train")
    assert len(readable) == len(train) - 2
    assert "Skipping 2 unreadable image(s)" in caplog.text
    assert "IM-9999-0001.jpeg" in caplog.text


def test_a_split_with_no_readable_image_is_an_error(tmp_path):
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "train" / label).mkdir(parents=True)
        (tmp_path / "train" / label / "x.jpeg").write_bytes(b"garbage")
    with pytest.raises(PneumoLensError, match="No readable image"):
        drop_unreadable(load_image_dataset(str(tmp_path))["train"], "train")


def test_truncated_images_are_skipped_before_training(copy_of, small_imagefolder, real_images):
    """`Image.verify()` passes a truncated JPEG; training would then fail on it in the middle of an epoch."""
    data = copy_of(small_imagefolder)
    whole = real_images["NORMAL"][0].read_bytes()
    (data / "train" / "NORMAL" / "IM-9998-0001.jpeg").write_bytes(whole[: len(whole) // 2])
    train = load_image_dataset(str(data))["train"]
    readable = drop_unreadable(train, "train")
    assert len(readable) == len(train) - 1
    assert "IM-9998-0001.jpeg" not in {image_name(i) for i in readable["image"]}


def test_a_carved_split_without_one_class_is_refused_by_name(copy_of, small_imagefolder):
    data = copy_of(small_imagefolder)
    normals = sorted((data / "train" / "NORMAL").iterdir())
    for image in normals[1:]:  # one NORMAL image left: it lands on one side only
        image.unlink()
    train = load_image_dataset(str(data))["train"]
    with pytest.raises(PneumoLensError, match=r"no image of \['NORMAL'\]"):
        split_by_patient(train, 0.25, seed=0)


def test_class_folders_that_are_symbolic_links_load_under_the_links_names(real_images, tmp_path):
    """How people point at data on a shared disk: DIR/test/NORMAL -> a folder elsewhere, of another name."""
    import shutil

    from pneumolens.data import load_image_dataset

    elsewhere = tmp_path / "shared-disk"
    for label, folder in (("NORMAL", "normal_films"), ("PNEUMONIA", "pneumonia_films")):
        (elsewhere / folder).mkdir(parents=True)
        for path in real_images[label][:3]:
            shutil.copy(path, elsewhere / folder / path.name)
    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    (data / "test" / "NORMAL").symlink_to(elsewhere / "normal_films", target_is_directory=True)
    (data / "test" / "PNEUMONIA").symlink_to(elsewhere / "pneumonia_films", target_is_directory=True)
    dataset = load_image_dataset(str(data))
    assert list(dataset) == ["test"]
    names = dataset["test"].features["label"].names
    assert names == ["NORMAL", "PNEUMONIA"]
    labelled = {Path(image["path"]).name: names[label] for image, label in
                zip(dataset["test"]["image"], dataset["test"]["label"])}
    assert labelled == {path.name: label for label in ("NORMAL", "PNEUMONIA") for path in real_images[label][:3]}
