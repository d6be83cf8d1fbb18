#!/usr/bin/env python
"""A classroom behind one address: `python3 app.py` in its own process, and gradio_client sessions on
loopback, all from 127.0.0.1 (as students behind one school network reach a Space from one address).

    python3 -m benchmarks.classroom [--sessions 30] [--flood 12] [--app_dir DIR]

1. `--sessions` sessions (one `Client` each) send one `/explain` each at the same moment: answered, refused,
   p50 and max latency.
2. One session submits `--flood` `/explain`s at once; a second session then asks for one: how many of the
   flood were taken and refused (with the refusal's words), and whether and how fast the second was answered.

Bounded: at most sessions + flood + 1 requests, each with a 300 s timeout; loopback only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from benchmarks.served_app import ServedApp  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = str(REPO / "examples" / "NORMAL2-IM-1427-0001.jpeg")
TIMEOUT_S = 300


def explain(client, start: threading.Event) -> tuple[float | None, str | None]:
    """One /explain once `start` is set: (seconds, None) when answered, (None, why) when refused."""
    from gradio_client import handle_file

    start.wait()
    begin = time.perf_counter()
    try:
        client.submit(handle_file(EXAMPLE), "predicted class", api_name="/explain").result(timeout=TIMEOUT_S)
        return time.perf_counter() - begin, None
    except Exception as error:  # a refusal is a result here, counted and shown
        return None, f"{type(error).__name__}: {error}"


def at_once(clients: list) -> list[tuple[float | None, str | None]]:
    start = threading.Event()
    with ThreadPoolExecutor(len(clients)) as pool:
        jobs = [pool.submit(explain, client, start) for client in clients]
        time.sleep(0.5)  # every thread waiting on the same start
        start.set()
        return [job.result() for job in jobs]


def summary(name: str, results: list) -> None:
    answered = sorted(seconds for seconds, _ in results if seconds is not None)
    refused = [why for _, why in results if why is not None]
    timing = (f"p50 {statistics.median(answered):.2f} s, max {answered[-1]:.2f} s" if answered else "no answer")
    print(f"{name}: {len(answered)} answered, {len(refused)} refused; {timing}")
    for why in sorted(set(refused)):
        print(f"  refused ({refused.count(why)}x): {why.splitlines()[-1].strip()}")


def main() -> None:
    from gradio_client import Client

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--flood", type=int, default=12)
    parser.add_argument("--app_dir", default=str(REPO),
                        help="Serve the app.py of this checkout (another commit's worktree, to compare).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp, ServedApp(Path(temp) / "gradio", cwd=Path(args.app_dir)) as server:
        warm = Client(server.url, verbose=False)
        at_once([warm])  # the first analysis loads what later ones share
        summary(f"{args.sessions} sessions, one /explain each, at once",
                at_once([Client(server.url, verbose=False) for _ in range(args.sessions)]))

        flooder, classmate = Client(server.url, verbose=False), Client(server.url, verbose=False)
        flood_start, now = threading.Event(), threading.Event()
        now.set()
        with ThreadPoolExecutor(args.flood + 1) as pool:
            flood = [pool.submit(explain, flooder, flood_start) for _ in range(args.flood)]
            time.sleep(0.5)
            flood_start.set()
            time.sleep(0.3)  # the flood has been taken or refused by now, none of it answered yet
            other = pool.submit(explain, classmate, now)
            flood_results = [job.result() for job in flood]
            seconds, why = other.result()
        summary(f"one session submitting {args.flood} at once", flood_results)
        print("another session behind the same address, asking 0.3 s after the flood: "
              + (f"answered in {seconds:.2f} s" if seconds is not None else f"refused: {why}"))


if __name__ == "__main__":
    main()
