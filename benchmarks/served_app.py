"""The app as a separate server process, for the benchmarks that measure its memory and disk.

`ServedApp` starts `python3 app.py` (or another `command` that serves a Gradio app) on a free loopback port (the bundled model unless MODEL_ID is set in
`env`; from `cwd`, the project by default), logs its output to TEMP_DIR.log,
waits until it answers, and reads the server's resident memory from /proc: now, and the peak since the
last `reset_peak()` (Linux: writing 5 to /proc/PID/clear_refs resets VmHWM).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.is_dir() else 0


class ServedApp:
    def __init__(self, temp_dir: Path, start_timeout_s: float = 180, env: dict | None = None, cwd: Path = REPO,
                 command: tuple[str, ...] = ("app.py",)):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.temp_dir = temp_dir
        env = {**os.environ, "GRADIO_SERVER_PORT": str(self.port), "GRADIO_TEMP_DIR": str(temp_dir),
               "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
        self.log = temp_dir.with_name(temp_dir.name + ".log")  # beside, so temp_bytes counts uploads only
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, *command], cwd=cwd, env=env,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + start_timeout_s
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "gradio_api/info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with code {self.process.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        self.close()
        raise RuntimeError("app.py did not answer in time")

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak_rss(self) -> int:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def temp_bytes(self) -> int:
        return directory_bytes(self.temp_dir)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
