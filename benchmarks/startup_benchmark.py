#!/usr/bin/env python
"""How long `python app.py` takes from launch until it has served its first prediction.

    python benchmarks/startup_benchmark.py [--runs 3]

Starts the app as a subprocess on a free loopback port, polls /predict with gradio_client until it
answers, prints the time, stops the app. Repeated --runs times; prints each and the median.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = next(iter(sorted((REPO / "examples").glob("*.jpeg"))))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_start(timeout: float) -> float:
    from gradio_client import Client, handle_file

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    begin = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - begin < timeout:
            if process.poll() is not None:
                raise SystemExit(f"app.py exited with status {process.returncode}")
            try:
                Client(f"http://127.0.0.1:{port}/", verbose=False).predict(handle_file(str(EXAMPLE)), api_name="/predict")
                return time.perf_counter() - begin
            except Exception:  # not up yet
                time.sleep(0.2)
        raise SystemExit(f"no prediction within {timeout:.0f} s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    times = [one_start(args.timeout) for _ in range(args.runs)]
    print("start-up to first prediction: " + ", ".join(f"{t:.1f} s" for t in times)
          + f"; median {statistics.median(times):.1f} s")


if __name__ == "__main__":
    main()
