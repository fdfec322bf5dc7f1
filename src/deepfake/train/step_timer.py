"""How busy the training device is: the share of wall time it spends in the model step (G and D phases)
rather than on data (gather + augmentation), host-side waits, logging and saving.

faceswap users see "GPU usage is less than 20 %" (faceswap #811) because the CPU prepares every batch.
Here the loop reports the fraction itself, without adding a host sync to the hot loop:

    timer = StepTimer(device)
    for step in ...:
        timer.data_start()      # before drawing and augmenting the batch
        ...
        timer.compute_start()   # before the G phase
        ...
        timer.compute_end()     # after the D phase
        if log_due:
            marks = timer.take()                     # the window's marks
            window = timer.summarize(marks, wall_s)  # .busy, .data_ms, .compute_ms

On CUDA the marks are CUDA events, so the times are the device's own timeline; they are read only in
`summarize`, at a log boundary. On the CPU, ops run synchronously, so the host clock is the device's
timeline.

The data section runs on a CUDA stream of its own (data_stream.py) and the marks are on the model's
stream, so on CUDA `data_ms` is how long the model's stream waited for the data: near zero when the
side stream finished while the previous step ran, the whole data section when the host fell behind.

What the events cannot see: a gap *inside* the G and D phases, where the device waits for the host to
launch the next kernel, counts as busy. That is launch overhead, which `--compile` (fused kernels) and
CUDA graphs (one launch per phase) remove; the speed benchmark's compute-only/full column and its eager
against compiled cases show its size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class Window:
    busy: float  # compute time / wall time over the window, in [0, 1]
    data_ms: float  # mean time per step the model's stream spent on or waiting for the data section
    compute_ms: float  # mean device time per step of the G and D phases
    steps: int


def mark(device: torch.device):
    """A point on `device`'s timeline, set without a host sync: a CUDA event on the current stream, or
    the host clock on the CPU (where ops run synchronously)."""
    if device.type == "cuda":
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(device))
        return event
    return time.perf_counter()


def elapsed_ms(a, b) -> float:
    """Milliseconds from mark `a` to mark `b` (on CUDA, both must have been reached)."""
    return a.elapsed_time(b) if isinstance(a, torch.cuda.Event) else (b - a) * 1e3


class StepTimer:
    """Per-step marks; `window()` sums them since the last call."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self._marks: list[tuple] = []  # (data_start, compute_start, compute_end) per step
        self._current: list = []

    def _mark(self):
        return mark(self.device)

    def data_start(self) -> None:
        self._current = [self._mark()]

    def compute_start(self) -> None:
        self._current.append(self._mark())

    def compute_end(self) -> None:
        self._current.append(self._mark())
        if len(self._current) == 3:
            self._marks.append(tuple(self._current))
        self._current = []

    def take(self, reset: bool = True) -> list[tuple]:
        """The marks of the steps since the last reset, to summarise now or later (no host sync).
        reset=False peeks: the marks stay for the next call (the loop's off-cycle log rows)."""
        marks = self._marks
        if reset:
            self._marks = []
        return list(marks)

    def summarize(self, marks: list[tuple], wall_s: float) -> Window | None:
        """Times of `marks` (from `take`) against `wall_s` seconds of wall time. On CUDA it waits for the
        last mark: a deferred log row calls it when that mark is long reached."""
        if not marks or wall_s <= 0:
            return None
        if self.cuda:
            marks[-1][2].synchronize()
        data = sum(elapsed_ms(d, c) for d, c, _ in marks)
        compute = sum(elapsed_ms(c, e) for _, c, e in marks)
        n = len(marks)
        return Window(busy=min(1.0, compute / (wall_s * 1e3)), data_ms=data / n, compute_ms=compute / n, steps=n)

    def window(self, wall_s: float, reset: bool = True) -> Window | None:
        """`summarize(take(reset), wall_s)`: the steps marked since the last reset, now."""
        return self.summarize(self.take(reset), wall_s)
