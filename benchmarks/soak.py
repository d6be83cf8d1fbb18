#!/usr/bin/env python
"""Soak run: N browser-like sessions, each one full-resolution /explain, against `python3 app.py`.

    python -m benchmarks.soak [--sessions 100] [--cache_age 60] [--image examples/NORMAL2-IM-1427-0001.jpeg]

Each session is a new gradio_client Client (a new session hash, so a new gr.State), as a new visitor
would be. Prints the server's resident memory and Gradio temp-dir size before and after, and the growth
per session. Memory figures hold on a busy machine too; do not read timing from it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402

from benchmarks.served_app import REPO, ServedApp  # noqa: E402

MB = 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--image", default=str(REPO / "examples" / "NORMAL2-IM-1427-0001.jpeg"))
    parser.add_argument("--cache_age", type=int, default=60,
                        help="The server's cache age in seconds (PNEUMOLENS_CACHE_MAX_AGE_S); the run waits "
                             "for one cleanup after the sessions and reports the temp dir then.")
    args = parser.parse_args()
    os.environ["PNEUMOLENS_CACHE_MAX_AGE_S"] = str(args.cache_age)

    with tempfile.TemporaryDirectory() as temp, ServedApp(Path(temp)) as server:
        Client(server.url, verbose=False).predict(handle_file(args.image), api_name="/predict")  # warm-up
        rss_before, temp_before = server.rss(), server.temp_bytes()
        started = time.time()
        half = args.sessions // 2
        for session in range(args.sessions):
            Client(server.url, verbose=False).predict(handle_file(args.image), "predicted class", api_name="/explain")
            if session + 1 == half:
                time.sleep(1)  # the app hands freed memory back shortly after a request (memory.DELAY_S)
                rss_half = server.rss()
        time.sleep(2)  # let the last responses' files land
        rss_after, temp_after = server.rss(), server.temp_bytes()
        print(f"{args.sessions} sessions x /explain of {Path(args.image).name} in {time.time() - started:.0f} s")
        # The first requests grow the allocator's arenas and caches to a plateau; the second half shows
        # what each further session keeps.
        print(f"server RSS  {rss_before / MB:8.1f} -> {rss_half / MB:8.1f} -> {rss_after / MB:8.1f} MB   "
              f"first {half}: {(rss_half - rss_before) / MB / half:6.2f} MB per session, "
              f"last {args.sessions - half}: {(rss_after - rss_half) / MB / (args.sessions - half):6.2f} MB per session")
        print(f"temp dir    {temp_before / MB:8.1f} -> {temp_after / MB:8.1f} MB "
              "at the end of the sessions (files older than the cache age are already being deleted)")
        # Gradio checks every age/3 seconds and deletes what is older than the age.
        time.sleep(args.cache_age + args.cache_age // 3 + 5)
        print(f"temp dir after one cleanup interval ({args.cache_age} s age): {server.temp_bytes() / MB:.1f} MB; "
              f"server RSS then {server.rss() / MB:.1f} MB")


if __name__ == "__main__":
    main()
