#!/usr/bin/env python
"""Load test of the app on loopback with concurrent gradio_client clients.

    python benchmarks/load_benchmark.py [--clients 8] [--requests 5] [--endpoint /predict] [--model DIR]
    python benchmarks/load_benchmark.py --compare_batching [--clients 8] [--requests 5]
    python benchmarks/load_benchmark.py --explain_overhead [--requests 15]

Launches the app in this process (the bundled model unless --model), then prints errors (must be 0),
p50/p95 latency and throughput. --compare_batching serves /predict unbatched (one image per forward
pass) and batched (PREDICT_BATCH_SIZE) in one run, with the same clients, and prints the ratio.
--explain_overhead times the fused model call (`Explainer.explain`) and single-client /explain on the
same image, interleaved, and prints the ratio. Traffic goes to 127.0.0.1 only; every run is bounded by
clients x requests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parent.parent

import app  # noqa: E402
from pneumolens.modeling import ModelSource, default_model_source  # noqa: E402
from pneumolens.service import PneumoLensService  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Served:
    """The app around `service`, launched on loopback for the duration of a `with` block."""

    def __init__(self, service: PneumoLensService, predict_batch_size: int = app.PREDICT_BATCH_SIZE):
        # Every benchmark client comes from 127.0.0.1, which the per-client limit would count as one.
        self.demo = app.build_demo(service, predict_batch_size=predict_batch_size, max_waiting_per_client=10_000)

    def __enter__(self) -> str:
        from gradio_client import Client, handle_file

        _, url, _ = self.demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
        Client(url, verbose=False).predict(handle_file(app.EXAMPLES[0]), api_name="/predict")  # warm-up
        return url

    def __exit__(self, *exc) -> None:
        self.demo.close()


def load(url: str, endpoint: str, clients: int, requests: int) -> dict:
    """`clients` threads, each its own client sending `requests` requests in turn."""
    from gradio_client import Client, handle_file

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    connected = [Client(url, verbose=False) for _ in range(clients)]

    def client_loop(index: int) -> None:
        for request in range(requests):
            example = handle_file(app.EXAMPLES[(index + request) % len(app.EXAMPLES)])
            inputs = (example,) if endpoint == "/predict" else (example, "predicted class", 0.45)
            begin = time.perf_counter()
            try:
                connected[index].predict(*inputs, api_name=endpoint)
                with lock:
                    latencies.append(time.perf_counter() - begin)
            except Exception as err:  # counted and reported, never hidden
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    return {"endpoint": endpoint, "clients": clients, "requests": clients * requests, "errors": errors,
            "latencies": latencies, "wall": wall, "throughput": len(latencies) / wall}


def describe(stats: dict, name: str = "") -> str:
    line = (f"{name or stats['endpoint']}: {stats['clients']} clients, {stats['requests']} requests, "
            f"errors {len(stats['errors'])}")
    if stats["errors"]:
        line += f" (first: {stats['errors'][0]})"
    if stats["latencies"]:
        lat = stats["latencies"]
        line += (f", p50 {statistics.median(lat):.2f} s, p95 {percentile(lat, 0.95):.2f} s, "
                 f"throughput {stats['throughput']:.2f} requests/s over {stats['wall']:.1f} s")
    return line


def compare_batching(service: PneumoLensService, clients: int, requests: int) -> None:
    batch_sizes = []
    run_batch = service.predict_inputs

    def recording(inputs):
        batch_sizes.append(len(inputs))
        return run_batch(inputs)

    service.predict_inputs = recording
    results = {}
    for size in (1, app.PREDICT_BATCH_SIZE):
        batch_sizes.clear()
        with Served(service, size) as url:
            batch_sizes.clear()  # not the warm-up
            results[size] = load(url, "/predict", clients, requests)
        print(describe(results[size], f"/predict, batches of at most {size}")
              + f"; forward passes {len(batch_sizes)}, mean batch {statistics.fmean(batch_sizes or [0]):.2f}")
    unbatched, batched = results[1]["throughput"], results[app.PREDICT_BATCH_SIZE]["throughput"]
    print(f"batched / unbatched throughput: {batched / unbatched:.2f}")


def explain_overhead(service: PneumoLensService, requests: int) -> None:
    from gradio_client import Client, handle_file

    example = app.EXAMPLES[0]
    model_times, served_times = [], []
    with Served(service) as url:
        client = Client(url, verbose=False)
        for _ in range(requests):
            begin = time.perf_counter()
            # The same maps /explain computes: those the app presents for this model.
            service.explainer.explain(example, None, service.explanation_options)
            model_times.append(time.perf_counter() - begin)
            begin = time.perf_counter()
            client.predict(handle_file(example), "predicted class", 0.45, api_name="/explain")
            served_times.append(time.perf_counter() - begin)
    model, served = statistics.median(model_times), statistics.median(served_times)
    print(f"{Path(example).name}: fused model call (decode, preprocess, forward, backward, maps) p50 {model:.3f} s; "
          f"single-client /explain p50 {served:.3f} s; ratio {served / model:.2f} ({requests} rounds, interleaved)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5, help="Requests per client.")
    parser.add_argument("--endpoint", default="/predict", choices=["/predict", "/explain"])
    parser.add_argument("--model", default=None, help="Hub id or directory (default: MODEL_ID or bundled).")
    parser.add_argument("--compare_batching", action="store_true")
    parser.add_argument("--explain_overhead", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    service = PneumoLensService(ModelSource(args.model) if args.model else default_model_source())
    print(f"model {service.source.name_or_path}, loaded in {time.perf_counter() - started:.1f} s")
    if args.compare_batching:
        compare_batching(service, args.clients, args.requests)
    elif args.explain_overhead:
        explain_overhead(service, args.requests)
    else:
        with Served(service) as url:
            print(describe(load(url, args.endpoint, args.clients, args.requests)))


if __name__ == "__main__":
    main()
