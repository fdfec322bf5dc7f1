"""Peak tensor memory of a block of code, on any device: CPU, CUDA, or fake tensors that hold no data.

`MemoryTracker` is a TorchDispatchMode: every aten op's output passes through it, and each storage it
has not seen yet is counted, once (views and in-place results share their storage). A
`weakref.finalize` on the storage subtracts it again when the last tensor using it dies, so the
running total is the bytes of tensor storage alive at each moment, and `peak` its maximum. Storages
that already exist when the block starts (parameters, optimizer state) are invisible to the mode:
hand them to `track()`, which also names their category for the breakdown.

    with MemoryTracker() as mem:
        mem.track(model.parameters(), "weights")
        loss = model(x).sum()
        loss.backward()
    mem.peak                  # bytes
    mem.peak_by_category      # {"weights": ..., "activations": ...} at the moment of the peak

What it counts is tensor bytes, as an allocator is asked for them. It does not see a kernel's private
workspace (cuDNN, oneDNN), nor the CUDA caching allocator's rounding (to 512 B) and fragmentation,
nor the CUDA context. Under `torch._subclasses.fake_tensor.FakeTensorMode` nothing is computed and
nothing is allocated, yet every op produces an output of the real size, so the peak of a training step
of any size can be measured in seconds on a CPU (see deepfake.train.memory).
"""

from __future__ import annotations

import threading
import weakref
from collections import defaultdict
from typing import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

ACTIVATIONS = "activations"  # the category of storages created inside the block and never re-tagged


class MemoryTracker(TorchDispatchMode):
    """Running and peak bytes of the live tensor storages created in (or handed to) the block."""

    def __init__(self):
        super().__init__()
        self.current = 0  # bytes alive now
        self.peak = 0  # the largest `current` seen
        self.by_category: dict[str, int] = defaultdict(int)  # bytes alive now, per category
        self.peak_by_category: dict[str, int] = {}  # `by_category` at the moment of the peak
        self._live: dict[int, list] = {}  # storage key -> [nbytes, category]
        self._finalizers: dict[int, weakref.finalize] = {}
        self._lock = threading.RLock()  # CUDA backward runs on the autograd engine's threads; GC may re-enter

    # ------------------------------------------------------------------------------------------------
    # Counting.

    def track(self, tensors: Iterable[torch.Tensor | None], category: str) -> int:
        """Count storages that exist already (weights, optimizer state) under `category`.
        Returns the bytes newly counted (storages shared with earlier ones count once)."""
        before = self.current
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._add(t, category)
        return self.current - before

    def tag(self, tensor: torch.Tensor, category: str) -> None:
        """Move a counted storage into another category (e.g. a freshly accumulated .grad -> "grads")."""
        key = _key(tensor)
        with self._lock:
            entry = self._live.get(key) if key is not None else None
            if entry is None or entry[1] == category:
                return
            self.by_category[entry[1]] -= entry[0]
            self.by_category[category] += entry[0]
            entry[1] = category

    def reset_peak(self) -> None:
        """Start a new peak from what is alive now."""
        with self._lock:
            self.peak = self.current
            self.peak_by_category = dict(self.by_category)

    def _add(self, tensor: torch.Tensor, category: str) -> None:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse and other storage-less tensors
            return
        key, nbytes = storage._cdata, storage.nbytes()
        with self._lock:
            entry = self._live.get(key)
            if entry is not None:
                if entry[0] == nbytes:
                    return
                # resize_ (an out= op growing its output) keeps the storage but changes its size.
                self._change(entry[1], nbytes - entry[0])
                entry[0] = nbytes
                return
            self._live[key] = [nbytes, category]
            self._change(category, nbytes)
        # Python keeps one object per live storage, so this fires when the storage itself is freed.
        self._finalizers[key] = weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        with self._lock:
            entry = self._live.pop(key, None)
            self._finalizers.pop(key, None)
            if entry is not None:
                self._change(entry[1], -entry[0])

    def _change(self, category: str, delta: int) -> None:  # caller holds the lock
        self.current += delta
        self.by_category[category] += delta
        if self.current > self.peak:
            self.peak = self.current
            self.peak_by_category = dict(self.by_category)

    # ------------------------------------------------------------------------------------------------
    # The dispatch mode.

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = None
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            key = _key(t)
            if key is None:
                continue
            if key not in self._live:
                # A view or in-place result of a storage from before the block is not new memory: it
                # counts only if handed to track().
                if inputs is None:
                    inputs = {_key(a) for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)}
                if key in inputs:
                    continue
            self._add(t, ACTIVATIONS)
        return out

    def __exit__(self, *exc):
        result = super().__exit__(*exc)
        # Freeze the numbers: storages freed after the block no longer change them.
        for fin in list(self._finalizers.values()):
            fin.detach()
        self._finalizers.clear()
        return result


def _key(tensor: torch.Tensor) -> int | None:
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        return None


def tensor_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Bytes of the distinct storages behind `tensors` (None entries skipped)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            s = t.untyped_storage()
            seen[s._cdata] = s.nbytes()
    return sum(seen.values())


def gib(nbytes: float) -> float:
    return nbytes / 2**30
