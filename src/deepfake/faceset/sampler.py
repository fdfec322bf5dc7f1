"""Rows of a face cache, sampled on its device: endless epoch-shuffled batches whose whole state is a
generator and a position, so a resumed run draws exactly what an uninterrupted one would."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from deepfake.errors import DeepfakeError


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor to `device` without a host sync. A copy from pageable memory may make the
    driver wait for the stream to drain (CUDA's API sync rules), which would empty the GPU's queue every
    step; from pinned memory the copy is queued like a kernel. A no-op where the tensor already is."""
    device = torch.device(device)
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()  # a host copy into the caching host allocator's pinned blocks
    # From the device to the host the copy must finish before the host reads it: blocking.
    return tensor.to(device, non_blocking=tensor.device.type == "cpu")


class EpochSampler:
    """Endless epoch-shuffled positions 0..n-1; its whole state is a generator and a position, both saved
    in checkpoints, so a resumed run draws exactly the faces the uninterrupted one would. The shuffle is
    drawn on the host (the same stream on every device) and copied to `device` once per epoch; batches
    are slices of that copy, so a step moves no indices between host and device. An epoch's remainder
    is carried into the next batch. With `weights` (n,), an epoch is n draws with replacement in
    proportion to them: a uniform-yaw epoch repeats the rare profile faces and skips some frontal ones."""

    def __init__(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu",
                 weights: torch.Tensor | None = None):
        if n < 1:
            raise DeepfakeError("no faces to train on (empty training split)")
        self.n, self.generator, self.device = n, generator, torch.device(device)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self._set_order(self._epoch())  # (n,)
        self.pos = 0

    def _epoch(self) -> torch.Tensor:
        if self.weights is None:
            return torch.randperm(self.n, generator=self.generator)
        return torch.multinomial(self.weights, self.n, replacement=True, generator=self.generator)

    def _set_order(self, order: torch.Tensor) -> None:
        self.order = order  # (n,) on the host: what checkpoints save
        self._order_on_device = host_to_device(order, self.device)  # (n,)

    def next(self, batch: int) -> torch.Tensor:
        out = []
        while batch > 0:
            if self.pos >= self.n:
                self._set_order(self._epoch())
                self.pos = 0
            take = min(batch, self.n - self.pos)
            out.append(self._order_on_device[self.pos : self.pos + take])
            self.pos, batch = self.pos + take, batch - take
        return out[0] if len(out) == 1 else torch.cat(out)  # (batch,) on self.device

    def state(self) -> torch.Tensor:
        return torch.cat([torch.tensor([self.pos]), self.order])  # (1 + n,) int64

    def load(self, state: torch.Tensor) -> None:
        if state.numel() != self.n + 1:
            raise DeepfakeError(f"the faceset changed since this model was saved ({state.numel() - 1} training faces "
                                f"then, {self.n} now): cannot resume exactly; train a new folder from its weights "
                                "(train --from MODEL_DIR --reset none)")
        self.pos = int(state[0])
        self._set_order(state[1:].clone())


class Sampler:
    """Endless batches of rows `indices`, epoch-shuffled by an EpochSampler; full batches only."""

    def __init__(
        self,
        indices: int | torch.Tensor | np.ndarray | list[int],
        batch: int,
        generator: torch.Generator,
        device: str | torch.device | None = None,
    ):
        if isinstance(indices, int):
            indices = torch.arange(indices)
        indices = torch.as_tensor(np.asarray(indices, dtype=np.int64) if not torch.is_tensor(indices) else indices)
        if indices.numel() == 0:
            raise DeepfakeError("no faces to sample from (empty training split)")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.device = torch.device(device) if device is not None else indices.device
        self.indices = indices.to(self.device)  # (N,)
        self.batch = batch
        self.epochs = EpochSampler(indices.numel(), generator, self.device)

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            yield self.indices[self.epochs.next(self.batch)]  # (batch,)
