"""Progress of a long step: a bar on a terminal, otherwise a log line with the rate every few seconds, so that
no step over a few seconds runs silent (a CI log or `nohup` file has no terminal)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

Item = TypeVar("Item")
LOG_EVERY_S = 10.0


class Progress:
    """Counts units done of `total`: a bar on a terminal, else a log line with the rate every `every_s` seconds
    and at the end. For loops that do several units a step (`advance`); `progress` wraps an iterable."""

    def __init__(self, total: int, description: str, unit: str = "films", logger: logging.Logger | None = None,
                 every_s: float = LOG_EVERY_S):
        self.total, self.description, self.unit, self.every_s = total, description, unit, every_s
        self.logger = logger or logging.getLogger(__name__)
        self.done = 0
        self.started = self.last = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=description, unit=f" {unit}")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def advance(self, count: int = 1) -> None:
        count = min(count, self.total - self.done)  # the last step may hold fewer
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done == self.total:
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate else float("inf")
            self.logger.info("%s: %d of %d %s (%.1f %s/s, about %.0f s left)", self.description, self.done,
                             self.total, self.unit, rate, self.unit, left)
            self.last = now


def progress(items: Iterable[Item], total: int, description: str, unit: str = "films", per_item: int = 1,
             logger: logging.Logger | None = None, every_s: float = LOG_EVERY_S) -> Iterator[Item]:
    """`items`, reporting how many of `total` units are done (`per_item` units each, the last may hold fewer)."""
    with Progress(total, description, unit, logger, every_s) as counter:
        for item in items:
            yield item
            counter.advance(per_item)
