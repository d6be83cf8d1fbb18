"""Read it yourself first: case sets refused where they would quiz on training films, a session that serves
each case once in its own seeded order, and a tally that counts as a teacher would."""

from __future__ import annotations

import csv
import io
import shutil

import pytest

import app
from pneumolens.errors import PneumoLensError
from pneumolens.teaching import NOT_SURE, Case, CaseSet, QuizSession, comparison_sentence, tally_markdown
from tests.conftest import SHARED_DATA


@pytest.fixture
def case_folder(tmp_path, real_images):
    root = tmp_path / "cases"
    for label, paths in real_images.items():
        (root / label).mkdir(parents=True)
        for path in paths[:3]:
            shutil.copy(path, root / label / path.name)
    return root


@pytest.mark.parametrize("setting, message", [
    ("hf-vision/chest-xray-pneumonia:train", "is a training split"),
    ("hf-vision/chest-xray-pneumonia:train[:100]", "is a training split"),
    ("hf-vision/chest-xray-pneumonia", "name a folder, or a Hub data set and its split"),
    ("./no/such/cases", "no such folder"),
])
def test_a_case_setting_that_names_training_films_or_nothing_is_refused(setting, message):
    with pytest.raises(PneumoLensError, match=message):
        CaseSet.from_setting(setting)


def test_a_training_folder_is_refused_by_name_and_an_empty_one_for_having_no_cases(tmp_path):
    train = SHARED_DATA / "chest_xray" / "train"
    if train.is_dir():
        with pytest.raises(PneumoLensError, match="is a training split"):
            CaseSet.from_setting(str(train))
    (tmp_path / "empty" / "NORMAL").mkdir(parents=True)
    with pytest.raises(PneumoLensError, match="holds no images in class folders"):
        CaseSet.from_setting(str(tmp_path / "empty"))


def test_app_refuses_a_bad_case_setting_at_start_up_before_loading_the_model(monkeypatch):
    monkeypatch.setenv("PNEUMOLENS_CASES", "hf-vision/chest-xray-pneumonia:train")
    monkeypatch.setattr(app, "PneumoLensService", lambda *given: pytest.fail("the model loaded before the check"))
    with pytest.raises(SystemExit, match="error: PNEUMOLENS_CASES=hf-vision/chest-xray-pneumonia:train is a training"):
        app.main()


def test_a_hub_split_is_loaded_only_at_the_first_case():
    cases = CaseSet.from_setting("hf-vision/chest-xray-pneumonia:test")
    assert cases._dataset is None  # start-up does not touch the network
    with pytest.raises(PneumoLensError, match="could not be loaded from the Hub; offline"):
        len(cases)


def test_a_folder_case_set_knows_its_labels(case_folder):
    cases = CaseSet.from_setting(str(case_folder))
    assert len(cases) == 6 and sorted(set(cases.labels)) == ["NORMAL", "PNEUMONIA"]
    assert cases.case(0) == Case(0, "NORMAL") and cases.suffix(0) == ".jpeg"


def test_a_session_serves_every_case_once_in_its_own_order():
    first, second = QuizSession(seed=1, size=20), QuizSession(seed=2, size=20)
    served = [first.next_case() for _ in range(20)]
    assert sorted(served) == list(range(20)) and served != list(range(20))
    assert served != [second.next_case() for _ in range(20)]
    again = QuizSession(seed=1, size=20)
    assert served == [again.next_case() for _ in range(20)]  # seeded: the same session seed, the same order
    with pytest.raises(PneumoLensError, match="Every case of this set \\(20\\) has been read"):
        first.next_case()


def test_the_tally_counts_as_a_hand_count_does():
    session = QuizSession(seed=0, size=6)
    reads = [  # label, student, model, referred
        ("PNEUMONIA", "PNEUMONIA", "PNEUMONIA", False),  # both right
        ("NORMAL", "PNEUMONIA", "NORMAL", False),        # student wrong, model right: they differ
        ("NORMAL", NOT_SURE, "PNEUMONIA", False),         # not sure; model wrong
        ("PNEUMONIA", "NORMAL", "NORMAL", True),          # both lean wrong, the model refers
        ("PNEUMONIA", "PNEUMONIA", "NORMAL", False),      # student right, model wrong: they differ
    ]
    for index, (label, student, model, referred) in enumerate(reads):
        session.record(Case(index, label), student, model, referred)
    tally = session.tally()
    assert (tally["read"], tally["student_right"], tally["student_committed"], tally["not_sure"]) == (5, 2, 4, 1)
    assert (tally["model_right"], tally["model_decided"], tally["model_referred"]) == (2, 4, 1)
    assert tally["disagreements"] == [2, 5]
    text = tally_markdown(tally)
    assert "matched the label in 2 of 4 (not sure: 1)" in text and "2 of the 4 it decided; it referred 1" in text
    rows = list(csv.DictReader(io.StringIO(session.csv_text())))
    assert [row["your_read"] for row in rows] == [read[1] for read in reads]
    assert [row["you_and_model_disagree"] for row in rows] == ["False", "True", "False", "False", "True"]


def test_the_comparison_is_one_calm_line():
    session = QuizSession(seed=0, size=1)
    read = session.record(Case(0, "NORMAL"), "PNEUMONIA", "NORMAL", True)
    assert comparison_sentence(read) == ("You read PNEUMONIA; the model says NORMAL but refers the film to a person "
                                         "(you differ); the film's label is NORMAL.")
    unsure = session.record(Case(-1, None), NOT_SURE, "PNEUMONIA", False)
    assert comparison_sentence(unsure) == "You were not sure; the model says PNEUMONIA."
