"""Progress of a long step: a bar on a terminal, otherwise a log line with the rate every few seconds, so that
no step over a few seconds runs silent (a CI log or `nohup` file has no terminal)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

Item = TypeVar("Item")
LOG_EVERY_S = 10.0


def progress(items: Iterable[Item], total: int, description: str, unit: str = "films", per_item: int = 1,
             logger: logging.Logger | None = None, every_s: float = LOG_EVERY_S) -> Iterator[Item]:
    """`items`, reporting how many of `total` units are done (`per_item` units each, the last may hold fewer)."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        with tqdm(total=total, desc=description, unit=f" {unit}") as bar:
            for item in items:
                yield item
                bar.update(min(per_item, total - bar.n))
        return
    logger = logger or logging.getLogger(__name__)
    started = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done = min(done + per_item, total)
        now = time.perf_counter()
        if now - last >= every_s or done == total:
            rate = done / max(now - started, 1e-9)
            left = (total - done) / rate if rate else float("inf")
            logger.info("%s: %d of %d %s (%.1f %s/s, about %.0f s left)", description, done, total, unit, rate, unit,
                        left)
            last = now
