#!/usr/bin/env python
"""Seeded mutations of real DICOM files through the DICOM path, then through a running server.

    python -m benchmarks.dicom_fuzz [--cases 1200] [--seed 0] [--served 120] [--with_gdcm]

1. Every case goes through `pneumolens.images.load_image` (what /predict, /explain, the page and the MCP
   tools decode with) in a worker process, so that a decoder that ends its process counts as a crash and
   the run goes on. Each case ends in one of: an image; a refusal in words; an unclear refusal (a Python
   exception's name or text in the message); an unhandled exception; a crash; a timeout (30 s). Before each
   case the worker's peak RSS is reset (Linux: /proc/self/clear_refs), so each case's peak is its own.
2. `--served` of the cases (every kind, refusals first) go to /predict of `python3 app.py` on the
   bundled model; afterwards a real radiograph must still be answered.

The seeds: a validation film (examples/) written in every transfer syntax of tests/dicom_films.py and as
MONOCHROME1, and four of pydicom's samples (12-bit JPEG Extended, lossless JPEG colour, JPEG 2000, JPEG-LS).
The mutations (tests/dicom_films.py): truncation, random header and pixel bytes, element lengths and VRs,
absurd Rows/Columns/Bits/Frames, other photometric interpretations, a transfer syntax that lies, pixel data
cut short, junk appended. docs/safety.md holds the figures.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.served_app import REPO, ServedApp  # noqa: E402
from tests.dicom_films import fuzz_cases, seed_films  # noqa: E402
from tests.test_dicom import EXCEPTION_TEXT  # noqa: E402

MB = 2**20
CASE_TIMEOUT_S = 30
SEED_FILM = REPO / "examples" / "person1946_bacteria_4874.jpeg"


def worker(with_gdcm: bool = False) -> None:
    """Read length-prefixed cases from stdin; answer one JSON line each."""
    import warnings

    from pneumolens.images import ImageDecodeError, load_image

    warnings.simplefilter("ignore")
    if with_gdcm:
        _put_gdcm_back()
    clear_refs = Path("/proc/self/clear_refs")
    while header := sys.stdin.buffer.read(4):
        data = sys.stdin.buffer.read(struct.unpack("<I", header)[0])
        clear_refs.write_text("5")
        started = time.perf_counter()
        try:
            image = load_image(data)
            outcome, detail = "image", f"{image.width}x{image.height}"
        except ImageDecodeError as refusal:
            message = str(refusal)
            outcome, detail = ("unclear refusal" if EXCEPTION_TEXT.search(message) else "refusal"), message
        except Exception as error:  # what the benchmark is looking for
            outcome, detail = "unhandled", f"{type(error).__name__}: {error}"
        answer = {"outcome": outcome, "detail": detail[:300], "peak_rss": _status("VmHWM"),
                  "seconds": time.perf_counter() - started}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _put_gdcm_back() -> None:
    """GDCM as pydicom uses it when it is installed, first in line: what `dicom_codecs` takes off (--with_gdcm)."""
    from pydicom.pixels.decoders.base import get_decoder

    from pneumolens.dicom_codecs import SUPPORTED_SYNTAXES

    for syntax in SUPPORTED_SYNTAXES:
        decoder = get_decoder(syntax)
        try:
            decoder.add_plugin("gdcm", ("pydicom.pixels.decoders.gdcm", "_decode_frame"))
        except ValueError:  # a syntax GDCM does not decode
            continue
        decoder._available = {"gdcm": decoder._available.pop("gdcm"), **decoder._available} \
            if "gdcm" in decoder._available else decoder._available


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Worker:
    def __init__(self, with_gdcm: bool = False):
        arguments = ["--worker", *(["--with_gdcm"] if with_gdcm else [])]
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.dicom_fuzz", *arguments], cwd=REPO,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def run(self, data: bytes) -> dict:
        self.process.stdin.write(struct.pack("<I", len(data)) + data)
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], CASE_TIMEOUT_S)
        if not ready:
            self.process.kill()
            return {"outcome": "timeout", "detail": f"no answer in {CASE_TIMEOUT_S} s"}
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            return {"outcome": "crash", "detail": f"the worker ended with code {code}"}
        return json.loads(line)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self):
        self.process.stdin.close()
        self.process.wait(10)


def decode_all(cases, with_gdcm: bool = False) -> list[dict]:
    results, worker_process = [], Worker(with_gdcm)
    for name, kind, data in cases:
        if not worker_process.alive:
            worker_process = Worker(with_gdcm)
        result = worker_process.run(data)
        results.append({"name": name, "kind": kind, "bytes": len(data), **result})
    worker_process.close()
    return results


def summary(results: list[dict]) -> None:
    outcomes = collections.Counter(result["outcome"] for result in results)
    by_kind = collections.defaultdict(collections.Counter)
    for result in results:
        by_kind[result["kind"]][result["outcome"]] += 1
    peaks = [result["peak_rss"] for result in results if "peak_rss" in result]
    print(f"\n{len(results)} cases: " + ", ".join(f"{outcome} {count}" for outcome, count in outcomes.most_common()))
    print(f"{'mutation':18s} " + " ".join(f"{name:>16s}" for name in ("image", "refusal", "other")))
    for kind, counts in sorted(by_kind.items()):
        other = sum(counts.values()) - counts["image"] - counts["refusal"]
        print(f"{kind:18s} {counts['image']:16d} {counts['refusal']:16d} {other:16d}")
    print(f"worker peak RSS per case: median {np.median(peaks) / MB:.0f} MB, max {max(peaks) / MB:.0f} MB "
          f"({max(results, key=lambda r: r.get('peak_rss', 0))['name']})")
    print(f"slowest case: {max(r.get('seconds', 0) for r in results):.2f} s")
    from pneumolens.dicom import UNNAMED_DAMAGE

    unnamed = sum(r["detail"] == UNNAMED_DAMAGE for r in results)
    print(f"refusals by the last guard (damage not named more precisely): {unnamed}")
    refusals = collections.Counter(_shape(r["detail"]) for r in results if r["outcome"] == "refusal")
    print("\nrefusals, by the message's first words:")
    for words, count in refusals.most_common(25):
        print(f"  {count:5d}  {words}")
    for result in results:
        if result["outcome"] not in ("image", "refusal"):
            print(f"  {result['outcome'].upper()}: {result['name']}: {result['detail']}")


def _shape(message: str) -> str:
    return " ".join(message.split()[:9])


def serve_some(results: list[dict], cases: dict[str, bytes], count: int) -> None:
    """`count` cases through /predict of a running server: half refusals (one of each message first), half
    images; then a real radiograph."""
    from gradio_client import Client, handle_file

    refusals = [r for r in results if r["outcome"] == "refusal"]
    distinct = list({_shape(r["detail"]): r for r in refusals}.values())  # one of each message first
    refused = (distinct + [r for r in refusals if r not in distinct])[:count // 2]
    decoded = [r for r in results if r["outcome"] == "image"][:count - len(refused)]
    chosen = refused + decoded
    answered = collections.Counter()
    with tempfile.TemporaryDirectory() as temp, ServedApp(Path(temp) / "gradio") as server:
        client = Client(server.url, verbose=False)
        base = server.rss()
        for result in chosen:
            path = Path(temp) / "upload"
            path.write_bytes(cases[result["name"]])
            try:
                json.loads(client.predict(handle_file(str(path)), api_name="/predict"))
                answered["a decision"] += 1
            except Exception as error:  # a refusal: its words must be the decoder's
                message = str(error)
                answered["a refusal in words" if not EXCEPTION_TEXT.search(message) else "an unclear refusal"] += 1
        record = json.loads(client.predict(handle_file(str(REPO / "examples" / "NORMAL2-IM-1427-0001.jpeg")),
                                           api_name="/predict"))
        print(f"\n/predict on {len(chosen)} of the cases: " + ", ".join(f"{k} {v}" for k, v in answered.items()))
        print(f"server RSS {base / MB:.0f} MB before, {server.rss() / MB:.0f} MB after, peak {server.peak_rss() / MB:.0f} MB; "
              f"afterwards a radiograph: decision {record['decision']} (the server kept serving)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--served", type=int, default=120, help="cases sent to /predict of a running server")
    parser.add_argument("--with_gdcm", action="store_true",
                        help="put GDCM (pip install python-gdcm) back first among the decoders: why it is off")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        return worker(arguments.with_gdcm)
    grey = np.asarray(Image.open(SEED_FILM).convert("L").resize((320, 256), Image.BILINEAR))
    cases = {name: (kind, data) for name, kind, data in fuzz_cases(seed_films(grey), arguments.cases, arguments.seed)}
    started = time.perf_counter()
    results = decode_all(((name, kind, data) for name, (kind, data) in cases.items()), arguments.with_gdcm)
    print(f"decoded {len(results)} cases in {time.perf_counter() - started:.0f} s (seed {arguments.seed})")
    summary(results)
    if arguments.served:
        serve_some(results, {name: data for name, (_, data) in cases.items()}, arguments.served)


if __name__ == "__main__":
    main()
