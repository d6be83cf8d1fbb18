"""Work spread over processes with `accelerate launch`, gathered into the result of one process.

    accelerate launch --num_processes 4 evaluate_hf.py ...      # four GPUs
    accelerate launch --cpu --num_processes 2 explain.py report ...

Each process takes an interleaved share of the items (item i goes to process i mod N), works on its own
device, and the results are gathered, put back in the items' order, on every process; the main process
writes the files. Run plainly (`python evaluate_hf.py ...`) there is one process and nothing to gather.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import gather_object

logger = logging.getLogger(__name__)

Result = TypeVar("Result")


def process_state() -> PartialState:
    """This process's place: its index, the number of processes and its device (one GPU each, or the CPU).

    Without a GPU the processes meet over gloo on the CPU: accelerate does so only when told `cpu`, and its
    `--cpu` flag starts a single process (several CPU processes need `--multi_gpu`, which runs torchrun).
    """
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.cuda.is_available()
    return PartialState(cpu=use_cpu)


def my_indices(count: int, state: PartialState) -> list[int]:
    """The indices of `count` items this process works on: every N-th, so that each share mixes early and
    late items (a folder sorted by class would otherwise give one process one class)."""
    return list(range(state.process_index, count, state.num_processes))


def map_in_order(function: Callable[[list[int]], list[Result]], count: int, state: PartialState) -> list[Result]:
    """`function(indices)` on this process's share; every process's results, in the order of the items."""
    indices = my_indices(count, state)
    if state.num_processes > 1:
        logger.info("Process %d of %d (%s): %d of %d items", state.process_index + 1, state.num_processes,
                    state.device, len(indices), count)
    results = function(indices) if indices else []
    pairs = gather_object(list(zip(indices, results)))
    return [result for _, result in sorted(pairs, key=lambda pair: pair[0])]
