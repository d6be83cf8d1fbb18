"""Similar training films: the index of the model's features, its search, the command that builds it,
the pictures where the training images are at hand, and the rule that no training film is committed."""

import hashlib
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from pneumolens.commands import main as pneumolens_main
from pneumolens.data import image_sources, load_image_dataset
from pneumolens.errors import PneumoLensError
from pneumolens.explain.overlay import overlay
from pneumolens.modeling import BUNDLED_MODEL, ModelSource, load_model_and_processor
from pneumolens.service import PneumoLensService
from pneumolens.serving.api import ProgramApi
from pneumolens.serving.displayed import report_html
from pneumolens.serving.page import PageHandlers
from pneumolens.serving.settings import ServingSettings
from pneumolens.similar import (
    FILMS_FILE, INDEX_FILE, NEAREST, Neighbour, SimilarFilms, film_vectors, retrieval_quality, similar_record, vote,
)
from pneumolens.training_films import NOT_AT_HAND, FolderFilms, training_films
from tests.conftest import REPO, SHARED_DATA, run_main


def unit_rows(count: int, dimensions: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dimensions)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def saved_index(tmp_path, vectors, labels=None) -> SimilarFilms:
    ids = [f"NORMAL/IM-{row:04d}-0001.jpeg" for row in range(len(vectors))]
    SimilarFilms.build(vectors, ids, labels or ["NORMAL"] * len(vectors), {"data": "tiny"}).save(tmp_path)
    return SimilarFilms.load(ModelSource(str(tmp_path)))


def test_a_saved_index_finds_the_known_nearest_film_and_agrees_with_a_brute_force_search(tmp_path):
    vectors = unit_rows(300, 48)
    index = saved_index(tmp_path, vectors)
    query = vectors[123] + 0.05 * unit_rows(1, 48, seed=1)[0]
    found = index.search(query, k=10)
    assert found[0].id == "NORMAL/IM-0123-0001.jpeg" and found[0].similarity > 0.95
    # The same order and the same cosines as numpy over the float32 vectors (the index stores float16).
    cosines = vectors @ (query / np.linalg.norm(query))
    expected = np.argsort(-cosines)[:10]
    assert [film.id for film in found] == [f"NORMAL/IM-{row:04d}-0001.jpeg" for row in expected]
    assert [film.similarity for film in found] == pytest.approx(cosines[expected], abs=2e-3)
    assert (tmp_path / INDEX_FILE).stat().st_size < 300 * 48 * 4  # float16, not float32


def test_the_index_refuses_features_of_another_model_and_a_model_without_one_has_none(tmp_path):
    index = saved_index(tmp_path, unit_rows(20, 16))
    with pytest.raises(PneumoLensError, match="16-dimensional.*gives 8"):
        index.search(unit_rows(1, 8)[0])
    assert SimilarFilms.load(ModelSource(str(tmp_path / "elsewhere"))) is None


def test_the_vote_and_retrieval_skip_the_query_patients_own_films(tmp_path):
    # Film 0 and 1 are one patient; film 1 is film 0's twin but of the other class. Searched against other
    # patients only, film 0's nearest are the NORMAL films 2-4.
    vectors = np.array([[1, 0, 0], [1, 0.2, 0], [0.9, 0.3, 0], [0.8, 0.5, 0], [0.7, 0.7, 0], [0, 0, 1]], np.float32)
    labels = ["NORMAL", "PNEUMONIA", "NORMAL", "NORMAL", "NORMAL", "PNEUMONIA"]
    ids = [f"{label}/film{row}.jpeg" for row, label in enumerate(labels)]
    index = SimilarFilms.build(vectors, ids, labels)
    patient_of = {film: str(row) for row, film in enumerate(ids)}
    patient_of[ids[1]] = "0"
    quality = retrieval_quality(index, vectors[:1], ["NORMAL"], ["0"], patient_of)
    assert quality["precision_at_5"] == pytest.approx(3 / 4)  # 2, 3, 4 and 5: film 1 is skipped
    assert quality["vote_accuracy"] == 1.0
    assert vote([Neighbour("a", "NORMAL", 0.9), Neighbour("b", "PNEUMONIA", 0.8)]) == "NORMAL"  # a tie: similarity
    record = similar_record(index.search(vectors[0], 3), ["NORMAL", "PNEUMONIA"])
    assert record["counts"] == {"NORMAL": 2, "PNEUMONIA": 1} and record["ids"][0] == ids[0]


def test_features_computed_in_two_shards_equal_those_of_one_process(tiny_trained_dirs, real_images, monkeypatch):
    import pneumolens.similar as similar
    from tests.test_evaluate import run_as_processes

    model, processor = load_model_and_processor(ModelSource(str(tiny_trained_dirs["dinov2"])), attention="sdpa")
    images = [*real_images["NORMAL"][:3], *real_images["PNEUMONIA"][:2]]
    whole = film_vectors(model, processor, images)
    answers = []  # what each of two `accelerate launch` processes gets back, the main one last
    run_as_processes(monkeypatch, 2, lambda: answers.append(similar.vectors_across_processes(model, processor, images)),
                     similar)
    assert len(answers[0]) == 2  # the other process computed every second film
    np.testing.assert_allclose(answers[-1], whole, atol=1e-5)
    assert np.linalg.norm(whole, axis=1) == pytest.approx(1.0, abs=1e-5)


@pytest.fixture(scope="module")
def indexed_model(tiny_trained_dirs, real_imagefolder, tmp_path_factory):
    """The tiny DINOv2 classifier with its training films indexed by `python -m pneumolens index-films`."""
    directory = tmp_path_factory.mktemp("indexed") / "model"
    shutil.copytree(tiny_trained_dirs["dinov2"], directory)
    answer = run_main(pneumolens_main, "python -m pneumolens", "index-films", "--model_name_or_path", directory,
                      "--dataset_name_or_dir", real_imagefolder, "--validation_fraction", "0.25")
    assert answer.returncode == 0, answer.stderr
    return directory, json.loads(answer.stdout)


def test_the_command_indexes_every_training_film_and_measures_retrieval_on_the_carved_split(indexed_model,
                                                                                           real_imagefolder):
    directory, quality = indexed_model
    index = SimilarFilms.load(ModelSource(str(directory)))
    train = load_image_dataset(str(real_imagefolder))["train"]
    assert len(index) == len(train) == quality["films_indexed"]
    assert sorted(index.films["id"]) == sorted(f"{label}/{path.name}" for label in ("NORMAL", "PNEUMONIA")
                                               for path in (real_imagefolder / "train" / label).iterdir())
    assert 0 < quality["films_searched"] < len(train)
    assert 0.0 <= quality["precision_at_5"] <= 1.0 and 0.0 <= quality["vote_accuracy"] <= 1.0
    card = (directory / "README.md").read_text()
    assert "## Similar training films" in card and f"precision@5 {quality['precision_at_5']:.3f}" in card
    assert json.loads((directory / "eval" / "similar_films" / "retrieval.json").read_text())["command"].startswith(
        "python -m pneumolens index-films")
    # Every film of the index is found as its own nearest neighbour, from its own features.
    model, processor = load_model_and_processor(ModelSource(str(directory)), attention="sdpa")
    films = image_sources(train)[:4]
    found = index.search_many(film_vectors(model, processor, films), 1)
    assert [hits[0].similarity for hits in found] == pytest.approx([1.0] * 4, abs=2e-3)


def test_an_analysis_finds_its_film_from_the_explanation_pass_itself(indexed_model, real_imagefolder):
    directory, _ = indexed_model
    service = PneumoLensService(ModelSource(str(directory)))
    film = sorted((real_imagefolder / "train" / "PNEUMONIA").iterdir())[0]
    similar = service.analyse(film).record()["similar"]
    assert similar["ids"][0] == f"PNEUMONIA/{film.name}" and similar["similarities"][0] == pytest.approx(1, abs=2e-3)
    assert similar["nearest"] == NEAREST and sum(similar["counts"].values()) == NEAREST
    assert similar["similarities"] == sorted(similar["similarities"], reverse=True)


def test_the_row_pictures_films_where_the_training_images_are_at_hand_and_says_so_where_not(
        indexed_model, real_imagefolder, monkeypatch):
    directory, _ = indexed_model
    example = sorted((real_imagefolder / "val" / "NORMAL").iterdir())[0]
    without = PageHandlers(ProgramApi(PneumoLensService(ModelSource(str(directory))), ServingSettings(predict_batch_size=1)))
    record = without.service.analyse(example).record()
    text, gallery = without.similar_row(record).values()
    assert NOT_AT_HAND in text and gallery["visible"] is False
    assert f"of the {NEAREST} most similar training films are PNEUMONIA" in text
    assert record["similar"]["ids"][0] in text
    monkeypatch.setenv("PNEUMOLENS_TRAINING_FILMS", str(real_imagefolder))  # as the app reads it
    with_films = PageHandlers(ProgramApi(app.service_for(
        replace(ServingSettings.from_environment(), model_id=str(directory))),
                                         ServingSettings(predict_batch_size=1)))
    text, gallery = with_films.similar_row(record).values()
    assert NOT_AT_HAND not in text and gallery["visible"] is True and len(gallery["value"]) == 6
    first, caption = gallery["value"][0]
    expected = Image.open(real_imagefolder / "train" / record["similar"]["ids"][0]).convert("L")
    assert first.size == expected.size and caption.startswith(record["similar"]["labels"][0])
    # A report made here pictures the same films.
    report = report_html(with_films.service, with_films.service.analyse(example), 0.6, example.name)
    assert report.count('alt="a similar training film"') == 6


def test_a_training_films_setting_that_names_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(PneumoLensError, match="no such folder"):
        training_films(str(tmp_path / "missing"))
    with pytest.raises(PneumoLensError, match="no train/ folder"):
        training_films(str(tmp_path))
    (tmp_path / "train").mkdir()
    assert FolderFilms(tmp_path).image("../../etc/passwd") is None  # an id never climbs out of the folder


def test_an_overlay_leaves_the_film_where_the_map_is_zero_and_colours_its_peak():
    film = Image.fromarray(np.tile(np.linspace(40, 220, 64).astype(np.uint8), (64, 1))).convert("RGB")
    heatmap = np.zeros((64, 64), np.float32)
    heatmap[20:30, 20:30] = 1.0
    faded, even = overlay(film, heatmap, 0.6), overlay(film, heatmap, 0.6, blend="even")
    pixels, base = np.asarray(faded, np.int16), np.asarray(film, np.int16)
    assert np.array_equal(pixels[40:], base[40:])  # the film, untouched where the map says nothing
    assert np.abs(np.asarray(even, np.int16)[40:] - base[40:]).max() > 20  # the old blend covered it
    assert np.abs(pixels[25, 25] - np.asarray(even, np.int16)[25, 25]).max() <= 1  # the same at the peak


@pytest.mark.slow
def test_the_bundled_model_carries_its_index_and_card_figures():
    index = SimilarFilms.load(ModelSource(str(BUNDLED_MODEL)))
    assert len(index) == 5216 and index.dimensions == 768
    assert (BUNDLED_MODEL / INDEX_FILE).stat().st_size + (BUNDLED_MODEL / FILMS_FILE).stat().st_size < 10 * 2**20
    card = (BUNDLED_MODEL / "README.md").read_text()
    quality = json.loads((BUNDLED_MODEL / "eval" / "similar_films" / "retrieval.json").read_text())
    assert f"precision@5 {quality['precision_at_5']:.3f}" in card and quality["films_indexed"] == 5216


def test_no_tracked_file_is_a_training_film():
    train = SHARED_DATA / "chest_xray" / "train"
    if not train.is_dir():
        pytest.skip(f"{train} is not there")
    films = [path for path in train.rglob("*") if path.is_file()]
    names = {path.name for path in films}
    by_size = {}
    for path in films:
        by_size.setdefault(path.stat().st_size, []).append(path)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    for name in filter(None, tracked.decode().split("\0")):
        path = REPO / name
        assert path.name not in names, f"{name} has a training film's name"
        if path.is_file() and path.stat().st_size in by_size:
            same = [film for film in by_size[path.stat().st_size] if digest(film) == digest(path)]
            assert not same, f"{name} is the training film {same[0]}"


def test_films_of_a_data_set_load_in_the_background_on_first_use(real_imagefolder):
    """What a Space does with the Hub data set, here with a local folder through the same `datasets` path:
    the first request gets no picture and starts the load; later ones get the film."""
    import time

    from pneumolens.training_films import HubFilms

    films = HubFilms(str(real_imagefolder))
    film = sorted((real_imagefolder / "train" / "NORMAL").iterdir())[0]
    assert films.image(f"NORMAL/{film.name}") is None
    deadline = time.time() + 60
    while films._films is None and time.time() < deadline:
        time.sleep(0.2)
    picture = films.image(f"NORMAL/{film.name}")
    assert picture is not None and picture.size == Image.open(film).size
    assert films.image("NORMAL/no-such-film.jpeg") is None
