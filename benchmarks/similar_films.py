"""What the similar training films cost an analysis, measured side by side in one run.

    python benchmarks/similar_films.py [--model_name_or_path DIR] [--rounds 10] [--searches 1000]

1. The search alone: `SimilarFilms.search` (the 20 nearest of the bundled model's 5,216 films) for film
   vectors of the same features, one query at a time as the app asks: milliseconds per film.
2. A whole analysis (`PneumoLensService.analyse`: one forward and one backward pass, every map, the OOD
   check and the search) on the four examples, with the index and without it, interleaved so that both
   meet the same machine: p50 of each and their ratio.
3. `/explain` through gradio_client, a fresh client each request, against two apps in this process, one
   serving the model with its index and one without, interleaved: p50 of each and their ratio.
4. With --dataset_name_or_dir DATA: on the carved validation split, how often the vote of a film's 20
   nearest (other patients' films) sides with the model's decision, for all films and for the model's
   wrong answers (decided or referred): is the row a second opinion? (No figure of speed.)
Take the figures when nothing else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from pneumolens.modeling import BUNDLED_MODEL, ModelSource  # noqa: E402
from pneumolens.service import PneumoLensService  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", default=str(BUNDLED_MODEL))
    parser.add_argument("--rounds", type=int, default=10, help="Analyses of each example, each way.")
    parser.add_argument("--searches", type=int, default=1000)
    parser.add_argument("--dataset_name_or_dir", default=None,
                        help="Also measure the vote against the model's answers on this data's carved split.")
    args = parser.parse_args()
    service = PneumoLensService(ModelSource(args.model_name_or_path))
    index = service.similar_films
    if index is None:
        raise SystemExit(f"{args.model_name_or_path} has no index of its training films")
    examples = sorted(str(path) for path in (REPO / "examples").glob("*.jpeg"))

    queries = np.random.default_rng(0).normal(size=(args.searches, index.dimensions)).astype(np.float32)
    index.search(queries[0])  # warm
    started = time.perf_counter()
    for query in queries:
        index.search(query)
    per_search_ms = 1000 * (time.perf_counter() - started) / len(queries)
    print(f"search: {per_search_ms:.3f} ms per film ({len(index)} films, {index.dimensions} dimensions, "
          f"{args.searches} searches, one at a time)")

    timings = {"with the index": [], "without": []}
    for example in examples:  # warm both ways
        service.analyse(example)
    ways = [("with the index", index), ("without", None)]
    for round_number in range(args.rounds):
        for example in examples:
            for name, searched in ways[::1 if round_number % 2 else -1]:  # each way first half the time
                service.similar_films = searched
                started = time.perf_counter()
                service.analyse(example)
                timings[name].append(time.perf_counter() - started)
    service.similar_films = index
    endpoint = explain_endpoint(args.model_name_or_path, examples, args.rounds)
    if args.dataset_name_or_dir:
        print(json.dumps(wrong_answers(service, args.dataset_name_or_dir)))
    with_index, without = (statistics.median(timings[name]) for name in ("with the index", "without"))
    print(f"analyse, p50 of {len(timings['without'])} each, interleaved: with the index {with_index * 1000:.1f} ms, "
          f"without {without * 1000:.1f} ms, ratio {with_index / without:.3f}")
    with_index, without = (statistics.median(endpoint[name]) for name in ("with the index", "without"))
    print(f"/explain, p50 of {len(endpoint['without'])} each, interleaved: with the index {with_index * 1000:.1f} ms, "
          f"without {without * 1000:.1f} ms, ratio {with_index / without:.3f}")


def explain_endpoint(model: str, examples: list[str], rounds: int) -> dict[str, list[float]]:
    """Seconds per /explain call, a fresh client each, to an app with the index and one without it."""
    from gradio_client import Client, handle_file

    import app

    urls = {}
    demos = []
    for name in ("with the index", "without"):
        service = PneumoLensService(ModelSource(model))
        if name == "without":
            service.similar_films = None
        demo = app.build_demo(service)
        _, urls[name], _ = demo.launch(prevent_thread_lock=True, quiet=True,
                                       **{**app.launch_options(), "mcp_server": False})
        demos.append(demo)
    timings = {name: [] for name in urls}
    try:
        for round_number in range(rounds + 1):  # the first round warms both
            for example in examples:
                for name, url in list(urls.items())[::1 if round_number % 2 else -1]:
                    started = time.perf_counter()
                    Client(url, verbose=False).predict(handle_file(example), "predicted class", api_name="/explain")
                    if round_number:
                        timings[name].append(time.perf_counter() - started)
    finally:
        for demo in demos:
            demo.close()
    return timings


def wrong_answers(service: PneumoLensService, data: str) -> dict:
    """On the carved split: the vote of each film's NEAREST nearest films of other patients, against the
    model's decision and the truth."""
    from pneumolens.data import SEED, VALIDATION_FRACTION
    from pneumolens.data import drop_unreadable, image_sources, load_image_dataset, patient_id, split_by_patient
    from pneumolens.similar import film_ids, nearest_of_other_patients, vote

    index = service.similar_films
    films = drop_unreadable(load_image_dataset(data)["train"], "train")
    _, carved = split_by_patient(films, VALIDATION_FRACTION, SEED)
    stored = index.films.get_index("films").faiss_index
    position = {film: row for row, film in enumerate(index.films["id"])}
    ids, names = film_ids(carved), carved.features["label"].names
    patient_of = {film: patient_id(film.rsplit("/", 1)[-1]) for film in position}
    found = nearest_of_other_patients(index, np.stack([stored.reconstruct(position[film]) for film in ids]),
                                      [patient_of[film] for film in ids], patient_of)
    rows = []
    for others, label, result in zip(found, carved["label"], service.predict_many(image_sources(carved))):
        rows.append((names[label], result["decision"], vote(others), result["refer"]))
    wrong = [row for row in rows if row[1] != row[0]]
    return {"films": len(rows), "vote_right": sum(row[2] == row[0] for row in rows),
            "vote_sides_with_model": sum(row[2] == row[1] for row in rows), "model_wrong": len(wrong),
            "vote_sides_with_wrong_answer": sum(row[2] == row[1] for row in wrong),
            "wrong_and_decided": sum(not row[3] for row in wrong),
            "vote_sides_with_wrong_decided": sum(not row[3] and row[2] == row[1] for row in wrong)}


if __name__ == "__main__":
    main()
