"""Handing the heap pages freed by a request back to the operating system, off the request's path.

glibc keeps freed memory in per-thread arenas, and Gradio runs each request on one of many worker
threads, so the tens of MB a full-resolution analysis allocates stay resident in every arena it touched
(benchmarks/soak.py measured the growth per session with and without trimming). `malloc_trim` gives them
back, but it walks every arena (about 12 ms here): done inside a request, a client waits for it. So a
request only asks for a trim (`trim_soon`), and one background thread runs it shortly after; the
requests that end meanwhile share that one trim.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

logger = logging.getLogger(__name__)

# Long enough for the response that asked to be on its way, short enough that memory returns at once.
DELAY_S = 0.2


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, Windows, musl): nothing to trim
        return None


class HeapTrimmer:
    """Runs `trim` on a daemon thread `delay_s` after the first `request` since the last run."""

    def __init__(self, trim, delay_s: float = DELAY_S):
        self._trim = trim
        self.delay_s = delay_s
        self.runs = 0  # trims done, for tests and benchmarks
        self._requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def request(self) -> None:
        """Ask for a trim; returns at once. Call it after the request's memory has been freed."""
        self._requested.set()
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._serve, name="heap-trimmer", daemon=True)
                    self._thread.start()

    def _serve(self) -> None:
        while True:
            self._requested.wait()
            time.sleep(self.delay_s)
            # Cleared before trimming: memory freed before a later request() is covered by this trim
            # or, if that request() comes after the clear, by the next one.
            self._requested.clear()
            try:
                self._trim()
                self.runs += 1
            except Exception:  # never let the trimmer die; memory use is not worth a crash
                logger.exception("Heap trim failed")


_LIBC = _glibc()
_TRIMMER = HeapTrimmer(lambda: _LIBC.malloc_trim(0)) if _LIBC is not None else None


def trim_soon() -> None:
    """Ask for the freed heap to be handed back shortly (glibc only; elsewhere nothing to do)."""
    if _TRIMMER is not None:
        _TRIMMER.request()
