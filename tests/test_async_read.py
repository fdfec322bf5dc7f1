"""AsyncRead: a tensor's values read later, as they were when it was made, without waiting for the work
queued after it (the training loop's log rows)."""

from __future__ import annotations

import time

import pytest
import torch

from deepfake.train.async_read import AsyncRead

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_values_are_those_at_the_making_not_after_later_writes(device):
    sums = torch.arange(6, dtype=torch.float32, device=device).view(2, 3) * 0.25
    pending = AsyncRead(sums)
    sums.zero_()  # the loop zeroes its sums right after the read is queued
    sums += 7
    assert pending.values() == [[0.0, 0.25, 0.5], [0.75, 1.0, 1.25]]
    assert pending.ready()


@CUDA
def test_values_do_not_wait_for_work_queued_after_them():
    """The point of it: `tolist()` after a long kernel waits for the kernel; AsyncRead made before the
    kernel returns while the kernel still runs."""
    x = torch.full((4,), 3.0, device="cuda")
    torch.cuda.synchronize()
    pending = AsyncRead(x * 2)
    torch.cuda._sleep(2_000_000_000)  # a kernel that spins about a second (2e9 cycles at 1-2 GHz)
    t0 = time.perf_counter()
    values = pending.values()
    waited = time.perf_counter() - t0
    still_busy = not torch.cuda.current_stream().query()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    kernel_left = time.perf_counter() - t1
    print(f"AsyncRead waited {waited * 1e3:.1f} ms; the sleep kernel ran {kernel_left * 1e3:.0f} ms after that")
    assert values == [6.0] * 4
    assert still_busy and kernel_left > 0.2, "the sleep kernel must still be running when the values are back"
    assert waited < 0.1 * (waited + kernel_left)
