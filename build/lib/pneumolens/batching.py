"""Opportunistic micro-batching: requests that arrive while the model is busy share its next pass.

Each caller blocks in `submit` until its own result is ready. A worker thread takes the oldest waiting
item and whatever else is waiting at that moment (up to `max_batch_size`) and runs them as one batch, so
a lone request is never delayed to wait for company, and under load the batches fill up by themselves.
A batch that fails raises its error in each of its callers; the worker keeps serving.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable, Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    def __init__(self, run_batch: Callable[[list[Item]], list[Result]], max_batch_size: int = 8):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.batch_sizes: list[int] = []  # what the worker ran, for benchmarks and tests
        self._waiting: queue.SimpleQueue[tuple[Item, Future]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="micro-batcher", daemon=True).start()

    def submit(self, item: Item) -> Result:
        future: Future = Future()
        self._waiting.put((item, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            self.batch_sizes.append(len(batch))
            try:
                results = self.run_batch([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except BaseException as error:  # every caller hears of it; the worker lives on
                logger.exception("Batch of %d failed", len(batch))
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)
