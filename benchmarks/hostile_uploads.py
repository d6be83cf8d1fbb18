#!/usr/bin/env python
"""Hostile uploads against `python3 app.py`: the server's peak memory growth and answer per input.

    python -m benchmarks.hostile_uploads

Each input goes to /predict from a fresh client; between inputs the server's peak RSS is reset, so
each line shows what that one input cost. Afterwards a real radiograph must still be answered.
The inputs are built here, small on disk; the bombs are those the tests use (tests/test_images.py).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.served_app import REPO, ServedApp  # noqa: E402
from tests.test_images import _deflated_dicom_bomb, _dicom, _png_header_only  # noqa: E402

MB = 2**20


def inputs() -> dict[str, bytes]:
    radiograph = Image.open(REPO / "examples" / "NORMAL2-IM-1427-0001.jpeg")
    big = io.BytesIO()
    Image.new("L", (12000, 12000)).save(big, format="PNG")  # 144 Mpx of zeros, ~150 KB on disk
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10000 10000\n"
    truncated = (REPO / "examples" / "NORMAL2-IM-1427-0001.jpeg").read_bytes()
    return {
        "deflated DICOM, 2 GiB private element": _deflated_dicom_bomb(2 * 2**30),
        "PNG header claiming 100000x100000": _png_header_only(100_000, 100_000),
        "PNG 12000x12000 of zeros": big.getvalue(),
        "EPS (PostScript)": eps,
        "truncated JPEG": truncated[: len(truncated) // 3],
        "random bytes": np.random.default_rng(0).bytes(2 * MB),
        "radiograph as 16-bit DICOM": _dicom(np.asarray(radiograph.convert("L"), dtype=np.float64) * 16),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as temp, ServedApp(Path(temp) / "gradio") as server:
        example = str(REPO / "examples" / "NORMAL2-IM-1427-0001.jpeg")
        Client(server.url, verbose=False).predict(handle_file(example), api_name="/predict")  # warm-up
        print(f"{'input':42s} {'size':>9s} {'peak RSS growth':>16s} {'time':>7s}  answer")
        for name, payload in inputs().items():
            path = Path(temp) / "upload"
            path.write_bytes(payload)
            server.reset_peak()
            base = server.rss()
            started = time.perf_counter()
            try:
                result = Client(server.url, verbose=False).predict(handle_file(str(path)), api_name="/predict")
                answer = f"decision {json.loads(result)['decision']}"
            except Exception as error:  # the refusal is the answer we want to see
                answer = f"refused: {str(error).splitlines()[0][:90]}"
            elapsed = time.perf_counter() - started
            growth = (server.peak_rss() - base) / MB
            print(f"{name:42s} {len(payload) / MB:7.2f}MB {growth:13.1f} MB {elapsed:6.1f}s  {answer}")
        result = Client(server.url, verbose=False).predict(handle_file(example), api_name="/predict")
        print(f"afterwards, a radiograph: decision {json.loads(result)['decision']} (the server kept serving)")


if __name__ == "__main__":
    main()
