"""The heap trimmer: a request never waits for the trim, concurrent requests share one, and a failing
trim does not stop later ones."""

import threading
import time

from pneumolens.memory import HeapTrimmer


def wait_until(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_request_returns_before_the_trim_runs():
    release = threading.Event()
    trimmer = HeapTrimmer(lambda: release.wait(10), delay_s=0.0)
    begin = time.perf_counter()
    trimmer.request()
    assert time.perf_counter() - begin < 1.0  # the trim is blocked on `release`: the caller did not wait for it
    assert trimmer.runs == 0
    release.set()
    assert wait_until(lambda: trimmer.runs == 1)


def test_requests_within_the_delay_share_one_trim():
    calls = []
    trimmer = HeapTrimmer(lambda: calls.append(time.monotonic()), delay_s=0.3)
    for _ in range(20):
        trimmer.request()
    assert wait_until(lambda: len(calls) == 1)
    time.sleep(0.6)
    assert len(calls) == 1
    trimmer.request()  # a later request gets a trim of its own
    assert wait_until(lambda: len(calls) == 2)


def test_a_failing_trim_does_not_stop_the_trimmer():
    attempts = []

    def trim():
        attempts.append(True)
        if len(attempts) == 1:
            raise RuntimeError("first trim fails")

    trimmer = HeapTrimmer(trim, delay_s=0.0)
    trimmer.request()
    assert wait_until(lambda: len(attempts) == 1)
    trimmer.request()
    assert wait_until(lambda: len(attempts) == 2 and trimmer.runs == 1)
