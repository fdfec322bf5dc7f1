"""The data section of a training step on a CUDA stream of its own, so the device never waits for data.

On one stream, every step's gather and augmentation kernels sit between the previous step's D phase and
this step's G phase, and the model waits for them. On a side stream they run beside the previous step's
G and D phases whenever the host is ahead of the device, which is what compilation and CUDA graphs buy;
the main stream then only waits for work already done (benchmarks/RESULTS.md, "data section").

    stream = DataStream(device)           # after everything the data section reads is on the device
    with stream.section():
        batches = draw(...)               # queued on the side stream
    stream.hand_over(batches)             # the main stream waits for them; their memory is guarded

Nothing changes on the CPU, where ops run synchronously: the section is the host's own work.

Why it is safe:
- The side stream reads the face cache, the training rows and the samplers' epoch orders, which the
  main stream wrote before the loop: the constructor makes the side stream wait for that once. Inside
  the loop the main stream writes nothing the side stream reads. A main-stream tensor the side stream
  drops (a sampler's first epoch order) goes back to the main stream's pool, which reuses it only
  after `hand_over` has made the main stream wait for the side stream's reads.
- The batches are made on the side stream and read on the main one: `record_stream` tells the caching
  allocator, so their memory is not handed to the next step's batches before the main stream is done
  with it.
- The augmentation draws from host generators in the same order as before, so a run's numbers, its
  checkpoints and a resume do not change.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator

import torch


class DataStream:
    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.stream = None
        if self.device.type == "cuda":
            self.stream = torch.cuda.Stream(self.device)
            self.stream.wait_stream(torch.cuda.current_stream(self.device))  # the cache, rows and orders

    @contextlib.contextmanager
    def section(self) -> Iterator[None]:
        """Work queued inside runs on the side stream (CUDA); a no-op on the CPU."""
        if self.stream is None:
            yield
            return
        with torch.cuda.stream(self.stream):
            yield

    def hand_over(self, batches: Iterable) -> None:
        """Make the main stream wait for the section's work, and guard the memory of `batches`' tensors
        (dataclasses of tensors, or tensors) until the main stream has used them."""
        if self.stream is None:
            return
        main = torch.cuda.current_stream(self.device)
        main.wait_stream(self.stream)
        for batch in batches:
            tensors = [batch] if isinstance(batch, torch.Tensor) else [
                getattr(batch, f.name) for f in dataclasses.fields(batch)]
            for t in tensors:
                if isinstance(t, torch.Tensor) and t.device.type == "cuda":
                    t.record_stream(main)
