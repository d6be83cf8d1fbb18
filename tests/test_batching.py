"""Micro-batching: concurrent callers share batches, each gets its own result, failures stay contained."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pneumolens.batching import MicroBatcher


def test_each_caller_gets_its_own_result_and_waiting_callers_share_a_batch():
    gate, batches = threading.Event(), []

    def run(items):
        batches.append(list(items))
        gate.wait(5)  # the first batch holds the worker while the others arrive
        return [item * 10 for item in items]

    batcher = MicroBatcher(run, max_batch_size=4)
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(batcher.submit, 0)
        while not batches:
            time.sleep(0.01)
        rest = [pool.submit(batcher.submit, item) for item in range(1, 9)]
        time.sleep(0.3)
        gate.set()
        results = [first.result(5)] + [job.result(5) for job in rest]
    assert results == [item * 10 for item in range(9)]
    assert batches[0] == [0] and [len(batch) for batch in batches[1:]] == [4, 4]
    assert batcher.batch_sizes == [1, 4, 4]


def test_a_lone_request_is_not_held_back_to_wait_for_company():
    batcher = MicroBatcher(lambda items: [item + 1 for item in items], max_batch_size=8)
    started = time.perf_counter()
    assert batcher.submit(1) == 2
    assert time.perf_counter() - started < 1.0 and batcher.batch_sizes == [1]


def test_a_failed_batch_raises_in_its_callers_and_the_worker_keeps_serving():
    def run(items):
        if "bad" in items:
            raise ValueError("the model broke")
        return [item.upper() for item in items]

    batcher = MicroBatcher(run, max_batch_size=1)
    with pytest.raises(ValueError, match="the model broke"):
        batcher.submit("bad")
    assert batcher.submit("good") == "GOOD"


def test_a_wrong_number_of_results_is_an_error_not_a_mixup():
    batcher = MicroBatcher(lambda items: items[:1], max_batch_size=4)
    gate = threading.Event()
    original = batcher.run_batch
    batcher.run_batch = lambda items: (gate.wait(5), original(items))[1]
    with ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(batcher.submit, item) for item in range(3)]
        time.sleep(0.3)
        gate.set()
        outcomes = [job.exception(5) for job in jobs]
    assert any(isinstance(outcome, RuntimeError) and "results for" in str(outcome) for outcome in outcomes)


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        MicroBatcher(lambda items: items, max_batch_size=0)
