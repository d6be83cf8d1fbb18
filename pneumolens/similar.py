"""Similar training films: an example-based explanation beside the maps.

The maps answer "where did the model look?"; the most similar training films answer "what does the model
think this film is like?". Similar means close in the model's own classifier-input features (for DINOv2
the class token and the mean patch token; for ViT the class token; for ConvNeXt the pooled features), the
very vector the classifier turns into a decision, so the row shows what the model sees in the film. It is
no second opinion: when the model is wrong, its nearest films are often of the wrong class too.

The vectors of every training film, L2-normalised, go into a FAISS index through `datasets`
(`add_faiss_index_from_external_arrays`, inner product, which on unit vectors is the cosine), stored as
float16 (`SQfp16`) so that the bundled model's 5,216 films take 8 MB. The index holds numbers, film ids
(class folder and file name) and labels, never an image.

    python -m pneumolens index-films --model_name_or_path MODEL_DIR --dataset_name_or_dir DATA
    accelerate launch -m pneumolens index-films ...   # the films' features computed across processes
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .distributed import map_in_order, process_state
from .errors import PneumoLensError
from .modeling import ModelSource, attention_kernel, model_file
from .preprocessing import pixel_values
from .progress import progress

logger = logging.getLogger(__name__)

INDEX_FILE = "similar_films.faiss"
FILMS_FILE = "similar_films.json"
INDEX_NAME = "films"
# The vote: Tschandl et al. (2019) found a vote of the 16 nearest as accurate as the softmax classifier;
# 20 gives a round "k of 20" on the page. The page shows the 6 nearest, one row at a phone's width in pairs.
NEAREST = 20
SHOWN = 6
PRECISION_AT = 5


@contextmanager
def classifier_inputs(model: torch.nn.Module):
    """Collect, in the yielded list, the (batch, D) input of the model's classifier head at each forward
    pass: the features the decision is made from, taken from a pass that runs anyway."""
    taken: list[torch.Tensor] = []
    head = getattr(model, "classifier", None)
    if head is None:
        raise PneumoLensError(f"{type(model).__name__} has no `classifier` head to take features from.")

    def take(module, args):
        taken.append(args[0].detach().float().flatten(1))

    handle = head.register_forward_pre_hook(take)
    try:
        yield taken
    finally:
        handle.remove()


def normalised(vectors) -> np.ndarray:
    """Rows scaled to unit length (float32): their inner product is then the cosine similarity."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@torch.no_grad()
def film_vectors(model, processor, images: list, batch_size: int = 32) -> np.ndarray:
    """(N, D) unit classifier-input vectors of images in any form `load_image` accepts."""
    starts = range(0, len(images), batch_size)
    with classifier_inputs(model) as taken, attention_kernel(model, "sdpa"):
        for start in progress(starts, len(images), "Film features", per_item=batch_size, logger=logger):
            model(pixel_values=pixel_values(processor, images[start:start + batch_size]).to(model.device, model.dtype))
    if not taken:
        return np.zeros((0, 0), dtype=np.float32)
    return normalised(torch.cat(taken).cpu().numpy())


def vectors_across_processes(model, processor, images: list, batch_size: int = 32) -> np.ndarray:
    """`film_vectors` of all `images`, each process of an `accelerate launch` computing its share
    (`distributed.map_in_order`); every process gets the whole (N, D) array back. Alone, the one process
    computes them all."""
    rows = map_in_order(lambda indices: list(film_vectors(model, processor, [images[i] for i in indices], batch_size)),
                        len(images), process_state())
    return np.stack(rows)


@dataclass(frozen=True)
class Neighbour:
    id: str
    label: str
    similarity: float


class SimilarFilms:
    """The training films' index: ids, labels and a FAISS inner-product index over their unit vectors."""

    def __init__(self, films, about: dict):
        self.films = films  # a datasets.Dataset (columns id, label) carrying the FAISS index INDEX_NAME
        self.about = about  # what the vectors are and where the films come from (FILMS_FILE)
        self._ids, self._labels = list(films["id"]), list(films["label"])  # read once: a search is per request

    @classmethod
    def build(cls, vectors: np.ndarray, ids: list[str], labels: list[str], about: dict | None = None) -> "SimilarFilms":
        import faiss
        from datasets import Dataset

        if not len(ids) == len(labels) == len(vectors):
            raise ValueError(f"{len(vectors)} vectors for {len(ids)} ids and {len(labels)} labels")
        films = Dataset.from_dict({"id": list(ids), "label": list(labels)})
        # Inner product, asked for explicitly (a plain index would be L2), over float16 copies of the vectors.
        films.add_faiss_index_from_external_arrays(normalised(vectors), INDEX_NAME, string_factory="SQfp16",
                                                   metric_type=faiss.METRIC_INNER_PRODUCT)
        return cls(films, {**(about or {}), "dimensions": int(vectors.shape[1]), "metric": "inner product of "
                           "unit vectors (cosine similarity)", "stored_as": "float16 (FAISS SQfp16)"})

    def save(self, model_dir: str | Path) -> list[Path]:
        model_dir = Path(model_dir)
        self.films.save_faiss_index(INDEX_NAME, str(model_dir / INDEX_FILE))
        (model_dir / FILMS_FILE).write_text(json.dumps(
            {**self.about, "ids": self._ids, "labels": self._labels}) + "\n")
        return [model_dir / INDEX_FILE, model_dir / FILMS_FILE]

    @classmethod
    def load(cls, source: ModelSource) -> "SimilarFilms | None":
        """The index saved with a model (local directory or Hub repository), or None if it has none."""
        films_path, index_path = model_file(source, FILMS_FILE), model_file(source, INDEX_FILE)
        if films_path is None or index_path is None:
            logger.info("No %s for %s: no similar training films.", INDEX_FILE, source.name_or_path)
            return None
        from datasets import Dataset

        stored = json.loads(films_path.read_text())
        films = Dataset.from_dict({"id": stored.pop("ids"), "label": stored.pop("labels")})
        films.load_faiss_index(INDEX_NAME, str(index_path))
        return cls(films, stored)

    def __len__(self) -> int:
        return len(self.films)

    @property
    def dimensions(self) -> int:
        return self.films.get_index(INDEX_NAME).faiss_index.d

    def search(self, vector, k: int = NEAREST) -> list[Neighbour]:
        """The `k` films most similar to one vector (of the same features), most similar first."""
        return self.search_many(np.atleast_2d(vector), k)[0]

    def search_many(self, vectors, k: int = NEAREST) -> list[list[Neighbour]]:
        vectors = normalised(vectors)
        if vectors.shape[1] != self.dimensions:
            raise PneumoLensError(f"The index holds {self.dimensions}-dimensional features; this model gives "
                                  f"{vectors.shape[1]}: the index was built for another model.")
        index = self.films.get_index(INDEX_NAME)
        scores, rows = index.search_batch(vectors, k=min(k, len(self)))
        return [[Neighbour(self._ids[row], self._labels[row], float(score)) for row, score in zip(found, scored)
                 if row >= 0] for found, scored in zip(rows, scores)]


def similar_record(neighbours: list[Neighbour], labels: list[str]) -> dict:
    """What the record says of the nearest films: how many of each class, and each film's id, label and
    similarity, most similar first (the page shows the first SHOWN)."""
    counts = Counter(film.label for film in neighbours)
    return {"nearest": len(neighbours), "counts": {label: counts.get(label, 0) for label in labels},
            "ids": [film.id for film in neighbours], "labels": [film.label for film in neighbours],
            "similarities": [round(film.similarity, 6) for film in neighbours]}


def vote(neighbours: list[Neighbour]) -> str:
    """The class most of the films are; a tie goes to the class of the larger summed similarity."""
    weight = Counter()
    for film in neighbours:
        weight[film.label] += 1 + film.similarity / (len(neighbours) + 1)  # counts first, similarity breaks ties
    return weight.most_common(1)[0][0]


def nearest_of_other_patients(index: SimilarFilms, vectors: np.ndarray, patients: list[str],
                              patient_of: dict[str, str]) -> list[list[Neighbour]]:
    """For each query vector, its NEAREST nearest films of other patients: the query's own patient's films
    (`patient_of` film id -> patient) are skipped, so the search reaches as far past NEAREST as one patient
    has films."""
    reach = NEAREST + max(Counter(patient_of.values()).values(), default=0)
    return [[film for film in found if patient_of.get(film.id) != patient][:NEAREST]
            for found, patient in zip(index.search_many(vectors, reach), patients)]


def retrieval_quality(index: SimilarFilms, vectors: np.ndarray, labels: list[str], patients: list[str],
                      patient_of: dict[str, str]) -> dict:
    """How well the nearest films share a query film's true class, each query searched against the films
    of other patients only (its own and its patient's other films are skipped): precision@5 (the share of
    the 5 nearest with the query's label, averaged) and the accuracy of the vote of the NEAREST nearest."""
    precision, votes = [], []
    for others, label in zip(nearest_of_other_patients(index, vectors, patients, patient_of), labels):
        precision.append(np.mean([film.label == label for film in others[:PRECISION_AT]]))
        votes.append(vote(others) == label)
    return {"films_searched": len(labels), "films_indexed": len(index), "nearest": NEAREST,
            f"precision_at_{PRECISION_AT}": float(np.mean(precision)), "vote_accuracy": float(np.mean(votes))}


def film_ids(dataset) -> list[str]:
    """Each film's id: its class folder and file name ("PNEUMONIA/person1_bacteria_1.jpeg"), which finds it
    again in a local copy or the Hub data set; "row-N" where the data set keeps no file name."""
    from .data import image_name

    names = dataset.features["label"].names
    files = [image_name(image) for image in dataset.with_format(None)["image"]]
    return [f"{names[label]}/{file}" if file else f"row-{row}"
            for row, (file, label) in enumerate(zip(files, dataset["label"]))]


def index_training_films(model, processor, films, carved, model_dir: str | Path, data: str,
                         command: str, batch_size: int = 32, across_processes: bool = True) -> dict | None:
    """Index `films` (the training split, as a data set) with the model's features, measure retrieval on the
    `carved` validation films (which `films` contains) against other patients' films, and save the index,
    eval/similar_films/retrieval.json and the card's section into `model_dir`. Under `accelerate launch`
    the features are computed across the processes and the main process saves; the others return None.
    `across_processes=False`: this process alone computes them (train_hf.py's main process, after the
    others have ended)."""
    from .card import set_card_section
    from .data import image_sources, patient_id

    if across_processes:
        vectors = vectors_across_processes(model, processor, image_sources(films), batch_size)
        if not process_state().is_main_process:
            return None
    else:
        vectors = film_vectors(model, processor, image_sources(films), batch_size)
    ids, names = film_ids(films), films.features["label"].names
    index = SimilarFilms.build(vectors, ids, [names[label] for label in films["label"]],
                               {"data": data, "split": "train", "features": "the classifier head's input"})
    position = {film: row for row, film in enumerate(ids)}
    patient_of = {film: patient_id(film.rsplit("/", 1)[-1]) for film in ids}
    carved_names = carved.features["label"].names
    queries = [(film, carved_names[label]) for film, label in zip(film_ids(carved), carved["label"]) if film in position]
    quality = retrieval_quality(index, vectors[[position[film] for film, _ in queries]],
                                [label for _, label in queries], [patient_of[film] for film, _ in queries],
                                patient_of) if queries else {}
    model_dir = Path(model_dir)
    saved = index.save(model_dir)
    figures = model_dir / "eval" / "similar_films"
    figures.mkdir(parents=True, exist_ok=True)
    (figures / "retrieval.json").write_text(json.dumps({**quality, "command": command}, indent=2) + "\n")
    if (model_dir / "README.md").is_file():
        set_card_section(model_dir / "README.md", "Similar training films", card_section(index, quality, saved, command))
    logger.info("Indexed %d training films; carved split: %s", len(index), quality)
    return quality


def card_section(index: SimilarFilms, quality: dict, saved: list[Path], command: str) -> str:
    size = sum(path.stat().st_size for path in saved) / 2**20
    measured = (f"On the carved validation split ({quality['films_searched']} films, each searched against the "
                f"training films of other patients only): **precision@{PRECISION_AT} "
                f"{quality[f'precision_at_{PRECISION_AT}']:.3f}** (the share of the {PRECISION_AT} nearest films "
                f"with the film's true class), and a vote of the {NEAREST} nearest is right for "
                f"**{quality['vote_accuracy']:.3f}** of them. The model learnt its features on most of these "
                f"films, so films like them sit close to their own class: expect less on films from elsewhere."
                f"\n\n") if quality else ""
    return (f"`{INDEX_FILE}` and `{FILMS_FILE}` ({size:.1f} MB) index the {len(index)} training films by the "
            f"model's own classifier-input features ({index.dimensions} dimensions, unit length, float16, "
            f"FAISS inner product through `datasets`): ids and labels, no image. The PneumoLens app shows, "
            f"beside the maps, how many of the {NEAREST} most similar training films are of each class and the "
            f"{SHOWN} nearest. They show what the model sees in a film, not a second opinion: the nearest "
            f"films of a wrong answer are often of the wrong class too.\n\n{measured}Command: `{command}`")
