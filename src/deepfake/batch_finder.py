"""Find the largest batch that fits in memory by trying it, instead of crashing on out-of-memory.

DFL and faceswap users pick a batch size, start training, and find out hours later (or at once) that it
does not fit (DFL #5440, #5664, #5743). Here a probe runs one real training step at a candidate batch;
on out-of-memory the memory is freed and the batch halved until one fits.

    def probe(batch):                      # one full G+D step at `batch`, raising OOM if it does not fit
        ...
    batch = find_batch_size(probe, start=128)
"""

from __future__ import annotations

import gc
import logging
from typing import Callable

import torch

from deepfake.errors import DeepfakeError

log = logging.getLogger(__name__)


def is_out_of_memory(error: BaseException) -> bool:
    """True for the CUDA/MPS/CPU allocator errors torch raises when a batch does not fit."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_memory() -> None:
    """Drop unreachable tensors (the failed step's activations) and return cached blocks to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def find_batch_size(step_fn: Callable[[int], object], start: int, min_batch: int = 1, multiple_of: int = 1) -> int:
    """The largest batch <= `start` for which `step_fn(batch)` runs, halving on out-of-memory.

    step_fn: runs one representative step at that batch (forward, backward, optimizer step), so the
    probe sees the real peak. Errors other than out-of-memory propagate unchanged.
    multiple_of: keep candidates divisible by this (e.g. the number of data-parallel ranks).
    Raises DeepfakeError when even `min_batch` does not fit.
    """
    if start < min_batch or min_batch < 1:
        raise ValueError(f"need 1 <= min_batch ({min_batch}) <= start ({start})")
    batch = _round_down(start, multiple_of, min_batch)
    while True:
        try:
            step_fn(batch)
            return batch
        except Exception as e:  # noqa: BLE001 - only OOM is handled, everything else re-raised
            if not is_out_of_memory(e):
                raise
            # The traceback holds frames (and their activations) alive until it is dropped.
            e.__traceback__ = None
            del e
            free_memory()
            if batch <= min_batch:
                raise DeepfakeError(f"out of memory even at batch {min_batch}: use a smaller model or resolution, "
                                    "or enable model.checkpoint_decoder") from None
            smaller = _round_down(batch // 2, multiple_of, min_batch)
            log.info("batch %d does not fit in memory; trying %d", batch, smaller)
            batch = smaller


def _round_down(batch: int, multiple_of: int, floor: int) -> int:
    m = max(1, multiple_of)
    return max(floor, batch // m * m)
