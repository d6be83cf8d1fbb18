"""What the similar training films cost an analysis, measured side by side in one run.

    python benchmarks/similar_films.py [--model_name_or_path DIR] [--rounds 10] [--searches 1000]

1. The search alone: `SimilarFilms.search` (the 20 nearest of the bundled model's 5,216 films) for film
   vectors of the same features, one query at a time as the app asks: milliseconds per film.
2. A whole analysis (`PneumoLensService.analyse`: one forward and one backward pass, every map, the OOD
   check and the search) on the four examples, with the index and without it, interleaved so that both
   meet the same machine: p50 of each and their ratio.
Take the figures when nothing else runs.
"""

from __future__ import annotations

import argparse
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
    for _ in range(args.rounds):
        for example in examples:
            for name, searched in (("with the index", index), ("without", None)):
                service.similar_films = searched
                started = time.perf_counter()
                service.analyse(example)
                timings[name].append(time.perf_counter() - started)
    service.similar_films = index
    with_index, without = (statistics.median(timings[name]) for name in ("with the index", "without"))
    print(f"analyse, p50 of {len(timings['without'])} each, interleaved: with the index {with_index * 1000:.1f} ms, "
          f"without {without * 1000:.1f} ms, ratio {with_index / without:.3f}")


if __name__ == "__main__":
    main()
