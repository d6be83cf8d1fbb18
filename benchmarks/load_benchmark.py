#!/usr/bin/env python
"""Load test of the app on loopback with concurrent gradio_client clients.

    python3 -m benchmarks.load_benchmark [--clients 8] [--requests 5] [--endpoint /predict] [--model_name_or_path DIR]
    python3 -m benchmarks.load_benchmark --compare_batching [--clients 8] [--requests 5]
    python3 -m benchmarks.load_benchmark --explain_overhead [--requests 15]
    python3 -m benchmarks.load_benchmark --explain_floor [--requests 15]

Launches the app in this process (the bundled model unless --model_name_or_path), then prints errors (must be 0),
p50/p95 latency and throughput. --compare_batching serves /predict unbatched (one image per forward
pass) and batched (PREDICT_BATCH_SIZE) in one run, with the same clients, and prints the ratio; then
the most batching could reach on this machine: the forward pass per image at batch 1 and batched, and
decoding, measured in-process, give the throughput of a server that did nothing else.
--explain_overhead times the fused model call (`Explainer.explain`) and single-client /explain on the
same image, interleaved, and prints the ratios: served in this process, and by `python3 app.py` in its
own process (what a Space's visitor meets: the client does not share the server's interpreter).
Traffic goes to 127.0.0.1 only; every run is bounded by clients x requests.
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
from pneumolens import cli  # noqa: E402
from pneumolens.modeling import ModelSource, default_model_source  # noqa: E402
from pneumolens.explain.overlay import DEFAULT_OPACITY  # noqa: E402
from pneumolens.service import PneumoLensService  # noqa: E402
from pneumolens.serving.displayed import DisplayedMaps  # noqa: E402
from pneumolens.serving.settings import ServingSettings  # noqa: E402

SETTINGS = ServingSettings()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Served:
    """The app around `service`, launched on loopback for the duration of a `with` block."""

    def __init__(self, service: PneumoLensService, predict_batch_size: int = SETTINGS.predict_batch_size):
        # Every benchmark client is a session of its own, all from 127.0.0.1, within the address's limit.
        self.demo = app.build_demo(service, settings=ServingSettings(predict_batch_size=predict_batch_size))

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
            inputs = (example,) if endpoint == "/predict" else (example, "predicted class")
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
    for size in (1, SETTINGS.predict_batch_size):
        batch_sizes.clear()
        with Served(service, size) as url:
            batch_sizes.clear()  # not the warm-up
            results[size] = load(url, "/predict", clients, requests)
        print(describe(results[size], f"/predict, batches of at most {size}")
              + f"; forward passes {len(batch_sizes)}, mean batch {statistics.fmean(batch_sizes or [0]):.2f}")
    unbatched, batched = results[1]["throughput"], results[SETTINGS.predict_batch_size]["throughput"]
    print(f"batched / unbatched throughput: {batched / unbatched:.2f}")
    service.predict_inputs = run_batch
    print(batching_ceiling(service, SETTINGS.predict_batch_size, rounds=requests, unbatched_throughput=unbatched))


def batching_ceiling(service: PneumoLensService, batch_size: int, rounds: int, unbatched_throughput: float) -> str:
    """What batching could reach on this machine at best, from figures measured in-process, no server.

    Batching shares the forward pass between requests; decoding and preprocessing stay per request (one
    core each), and so does the server's own work. Even if that work cost nothing, batches of
    `batch_size` could serve at most 1 / (forward time per image in such a batch + decoding time / cores).
    """
    inputs = [service.model_input(app.EXAMPLES[i % len(app.EXAMPLES)]) for i in range(batch_size)]
    begin = time.perf_counter()
    for i in range(rounds):
        service.model_input(app.EXAMPLES[i % len(app.EXAMPLES)])
    decode = (time.perf_counter() - begin) / rounds
    per_image = {}
    for size in (1, batch_size):
        service.predict_inputs(inputs[:size])  # warm-up at this shape
        times = []
        for _ in range(rounds):
            begin = time.perf_counter()
            service.predict_inputs(inputs[:size])
            times.append((time.perf_counter() - begin) / size)
        per_image[size] = statistics.median(times)
    one, many = per_image[1], per_image[batch_size]
    cores = os.cpu_count() or 1
    best = 1.0 / (many + decode / cores)
    return (f"in-process, per image: decode + preprocess {decode * 1e3:.1f} ms (one core); forward pass at batch 1 "
            f"{one * 1e3:.1f} ms, at batch {batch_size} {many * 1e3:.1f} ms (batching changes the model's cost per "
            f"image by {one / many:.2f}x). Even with no server work at all, batches of {batch_size} could serve at "
            f"most 1 / ({many * 1e3:.1f} + {decode * 1e3:.1f} / {cores} cores) ms = {best:.2f} requests/s: "
            f"{best / unbatched_throughput:.2f}x the unbatched throughput above")


def explain_overhead(service: PneumoLensService, requests: int) -> None:
    """The fused model call against single-client /explain, twice: served from this process (the client
    shares its interpreter with the server) and from `python3 app.py` in a process of its own, as a
    Space's visitors see it. Interleaved round by round, so both meet the same machine."""
    import tempfile

    from gradio_client import Client, handle_file

    from benchmarks.served_app import ServedApp

    example = app.EXAMPLES[0]
    times: dict[str, list[float]] = {"model": [], "in-process": [], "own process": []}
    inputs = (handle_file(example), "predicted class")
    with Served(service) as url, tempfile.TemporaryDirectory() as temp, \
            ServedApp(Path(temp) / "gradio", env={"MODEL_ID": service.source.name_or_path}) as server:
        clients = {"in-process": Client(url, verbose=False), "own process": Client(server.url, verbose=False)}
        for client in clients.values():
            client.predict(*inputs, api_name="/explain")  # warm-up
        for _ in range(requests):
            begin = time.perf_counter()
            # The same maps /explain computes: those the app presents for this model.
            service.explainer.explain(example, None, service.explanation_options)
            times["model"].append(time.perf_counter() - begin)
            for name, client in clients.items():
                begin = time.perf_counter()
                client.predict(*inputs, api_name="/explain")
                times[name].append(time.perf_counter() - begin)
    p50 = {name: statistics.median(values) for name, values in times.items()}
    print(f"{Path(example).name}: fused model call (decode, preprocess, forward, backward, maps) p50 "
          f"{p50['model']:.3f} s; single-client /explain p50 {p50['in-process']:.3f} s served in-process "
          f"(ratio {p50['in-process'] / p50['model']:.2f}), {p50['own process']:.3f} s from app.py in its own "
          f"process (ratio {p50['own process'] / p50['model']:.2f}); {requests} rounds, interleaved")


def explain_against_floor(service: PneumoLensService, requests: int) -> None:
    """Single-client /explain from `python3 app.py` in its own process, a fresh client (and session) each
    time, against one eager forward and backward pass of the model on the same image, interleaved; then
    where the rest goes, each part timed in this process: decoding and preprocessing, the fused pass with
    its maps and the out-of-distribution features, the API-size overlays, their encoding, and the
    remainder (Gradio, the upload and the download)."""
    import io
    import tempfile

    import torch
    from gradio_client import Client, handle_file

    from benchmarks.served_app import ServedApp
    from pneumolens.images import load_image
    from pneumolens.preprocessing import pixel_values

    example = app.EXAMPLES[0]
    pixels = pixel_values(service.processor, [load_image(example)]).requires_grad_(True)

    def forward_backward():
        with torch.enable_grad():
            logits = service.model(pixel_values=pixels).logits
            torch.autograd.grad(logits[0].max(), pixels)

    def encode(overlays):
        for image in overlays.values():
            image.save(io.BytesIO(), format=SETTINGS.api_map_format.upper())

    parts = {"floor: forward + backward": [], "/explain, fresh client": [], "decode + preprocess": [],
             "analysis (fused pass, maps, OOD)": [], "overlays at API size": [], "image encoding": []}
    with tempfile.TemporaryDirectory() as temp, \
            ServedApp(Path(temp) / "gradio", env={"MODEL_ID": service.source.name_or_path}) as server:
        inputs = (handle_file(example), "predicted class")
        Client(server.url, verbose=False).predict(*inputs, api_name="/explain")  # warm-up
        forward_backward()
        for _ in range(requests):
            for name, run in (("floor: forward + backward", forward_backward),
                              ("decode + preprocess", lambda: pixel_values(service.processor, [load_image(example)]))):
                begin = time.perf_counter()
                run()
                parts[name].append(time.perf_counter() - begin)
            begin = time.perf_counter()
            analysis = service.analyse(example)
            parts["analysis (fused pass, maps, OOD)"].append(time.perf_counter() - begin)
            begin = time.perf_counter()
            overlays = DisplayedMaps.of(analysis.explanation, SETTINGS.api_map_max_side).overlays(DEFAULT_OPACITY, SETTINGS.colormap)
            parts["overlays at API size"].append(time.perf_counter() - begin)
            begin = time.perf_counter()
            encode(overlays)
            parts["image encoding"].append(time.perf_counter() - begin)
            begin = time.perf_counter()
            Client(server.url, verbose=False).predict(*inputs, api_name="/explain")
            parts["/explain, fresh client"].append(time.perf_counter() - begin)
    p50 = {name: statistics.median(values) for name, values in parts.items()}
    floor, served = p50["floor: forward + backward"], p50["/explain, fresh client"]
    print(f"{Path(example).name}, {requests} rounds interleaved, p50 of each:")
    for name, value in p50.items():
        print(f"  {name:<34} {value:.3f} s  ({value / floor:.2f}x the floor)")
    accounted = sum(p50[name] for name in ("analysis (fused pass, maps, OOD)", "overlays at API size",
                                           "image encoding"))
    print(f"  {'rest: Gradio, upload, download':<34} {served - accounted:.3f} s")
    print(f"/explain / floor = {served / floor:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5, help="Requests per client.")
    parser.add_argument("--endpoint", default="/predict", choices=["/predict", "/explain"])
    cli.add_option(parser, cli.MODEL, default=None, help="Hub id or directory (default: MODEL_ID or bundled).")
    parser.add_argument("--compare_batching", action="store_true")
    parser.add_argument("--explain_overhead", action="store_true")
    parser.add_argument("--explain_floor", action="store_true",
                        help="/explain (fresh client each time) against one forward and backward pass, and where the rest goes.")
    args = parser.parse_args()

    started = time.perf_counter()
    service = PneumoLensService(ModelSource(args.model_name_or_path) if args.model_name_or_path else default_model_source())
    print(f"model {service.source.name_or_path}, loaded in {time.perf_counter() - started:.1f} s")
    if args.compare_batching:
        compare_batching(service, args.clients, args.requests)
    elif args.explain_overhead:
        explain_overhead(service, args.requests)
    elif args.explain_floor:
        explain_against_floor(service, args.requests)
    else:
        with Served(service) as url:
            print(describe(load(url, args.endpoint, args.clients, args.requests)))


if __name__ == "__main__":
    main()
