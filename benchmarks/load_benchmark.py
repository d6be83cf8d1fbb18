#!/usr/bin/env python
"""Load test of the app on loopback: N concurrent gradio_client clients, M requests each.

    python benchmarks/load_benchmark.py [--clients 4] [--requests 5] [--endpoint /explain] [--model DIR]

Launches the app in this process (the bundled model unless --model), then prints errors (must be 0),
p50/p95 latency and throughput. Traffic goes to 127.0.0.1 only, and the run is bounded by
clients x requests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import app  # noqa: E402
from pneumolens.modeling import ModelSource, default_model_source  # noqa: E402
from pneumolens.service import PneumoLensService  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5, help="Requests per client.")
    parser.add_argument("--endpoint", default="/predict", choices=["/predict", "/explain"])
    parser.add_argument("--model", default=None, help="Hub id or directory (default: MODEL_ID or bundled).")
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    started = time.perf_counter()
    service = PneumoLensService(ModelSource(args.model) if args.model else default_model_source())
    demo = app.build_demo(service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_options())
    Client(url, verbose=False).predict(handle_file(app.EXAMPLES[0]), api_name="/predict")
    print(f"start-up to first prediction: {time.perf_counter() - started:.1f} s")

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client_loop(index: int) -> None:
        client = Client(url, verbose=False)
        for request in range(args.requests):
            example = handle_file(app.EXAMPLES[(index + request) % len(app.EXAMPLES)])
            inputs = (example,) if args.endpoint == "/predict" else (example, "predicted class", 0.45)
            begin = time.perf_counter()
            try:
                client.predict(*inputs, api_name=args.endpoint)
                with lock:
                    latencies.append(time.perf_counter() - begin)
            except Exception as err:  # counted and reported, never hidden
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    demo.close()

    total = args.clients * args.requests
    print(f"endpoint {args.endpoint}: {args.clients} clients x {args.requests} requests = {total}, "
          f"model {service.source.name_or_path}")
    print(f"errors: {len(errors)}" + (f"  first: {errors[0]}" if errors else ""))
    if latencies:
        print(f"latency p50 {statistics.median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
              f"max {max(latencies):.2f} s")
        print(f"throughput {len(latencies) / wall:.2f} requests/s over {wall:.1f} s")


if __name__ == "__main__":
    main()
