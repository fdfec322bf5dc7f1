"""Checkpoints written on a background thread, so the device trains on while the disk works.

`save_snapshot` serialises every weight and both Adam moments and fsyncs them, which takes seconds for
the larger presets. Written in the loop, that is the device idle every `save_every` steps; with this
writer the loop waits only for the copy to host memory (benchmarks/checkpoint_speed.py, RESULTS.md).

    writer = SnapshotWriter(model_dir, keep=3)
    writer.submit(snapshot)   # copies every tensor to host memory as of now, then returns
    ...                       # train on; the write runs behind
    writer.close()            # waits for the last write; raises its error, if it had one

- **A consistent snapshot.** `submit` copies every tensor (weights, optimizer state, generator states)
  into host buffers and deep-copies the rest, so the optimizer's in-place updates after it cannot tear
  the checkpoint. On the CPU the copies are made before it returns. On CUDA they go into pinned buffers
  and are queued on the stream behind the steps so far (so they read the state as of the call, and
  the updates queued after them wait for them); the writer's thread, not the loop, waits for them.
  So on CUDA a save after the first (which allocates the buffers) does not drain the device's queue.
- **One write at a time, one host copy.** A second `submit` waits for the first write: snapshots land
  in step order. The host buffers are allocated at the first save and reused by every later one: the
  run holds one host copy of the model (pinned, on CUDA), and later saves pay no allocation.
- **Atomic, as before.** `save_snapshot` writes into a temp folder and renames it, so a kill during a
  background write leaves the previous snapshot whole, and the half-written folder is cleared later.
- **Errors surface.** A failed write (disk full, a folder removed) is raised by the next `submit` or
  by `close`, not lost on the thread.
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from deepfake.model_dir import save_weights
from deepfake.train.checkpoint import Snapshot, save_snapshot

log = logging.getLogger(__name__)


class SnapshotWriter:
    def __init__(self, model_dir: str | Path, keep: int = 3):
        self.model_dir = Path(model_dir)
        self.keep = keep
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._buffers: dict[tuple, torch.Tensor] = {}  # host copies by place in the snapshot, reused
        self.last_step: int | None = None  # the step of the last snapshot written to the end

    def submit(self, snap: Snapshot) -> None:
        """Copy `snap` to host memory and write it behind the caller's back (after any earlier write)."""
        self.wait()  # the previous write is done with the host buffers
        devices: set[torch.device] = set()
        host = Snapshot(**{f.name: self._stage(getattr(snap, f.name), (f.name,), devices) for f in fields(Snapshot)})
        # The device-to-host copies are queued behind the steps so far, so they read the state as of now;
        # the writer's thread waits for them, not the loop.
        ready = []
        for device in devices:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            ready.append(event)
        self._thread = threading.Thread(target=self._write, args=(host, ready), name=f"deepfake-save-{snap.step}")
        self._thread.start()

    def submit_weights(self, folder: str, weights: dict[str, dict[str, torch.Tensor]], meta: dict[str, str]) -> None:
        """Copy named state dicts ({"autoencoder": ..., "discriminator": ...}) to host memory and write
        them, weights only, into MODEL_DIR/folder behind the caller's back (after any earlier write).
        They share the snapshots' host buffers: writes never overlap."""
        self.wait()
        devices: set[torch.device] = set()
        host = {name: self._stage(sd, (name,), devices) for name, sd in weights.items()}
        ready = []
        for device in devices:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            ready.append(event)
        self._thread = threading.Thread(target=self._write_weights, args=(folder, host, meta, ready),
                                        name=f"deepfake-save-{folder}")
        self._thread.start()

    def _write_weights(self, folder: str, host: dict, meta: dict[str, str], ready: list) -> None:
        try:
            for event in ready:
                event.synchronize()
            save_weights(self.model_dir / folder, host, meta)
        except BaseException as e:  # handed to the training thread by wait()
            self._error = e

    def _stage(self, obj: Any, path: tuple, devices: set) -> Any:
        """`obj` with every tensor copied into this writer's host buffer for its place (allocated at the
        first save, pinned for CUDA tensors so the copy is queued, not waited for), containers rebuilt,
        everything else deep-copied: nothing in the result is shared with the training loop."""
        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            buf = self._buffers.get(path)
            if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
                buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=t.is_cuda)
                self._buffers[path] = buf
            buf.copy_(t, non_blocking=t.is_cuda)
            if t.is_cuda:
                devices.add(t.device)
            return buf
        if isinstance(obj, dict):
            return {k: self._stage(v, path + (k,), devices) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._stage(v, path + (i,), devices) for i, v in enumerate(obj))
        return copy.deepcopy(obj)

    def _write(self, snap: Snapshot, ready: list) -> None:
        try:
            for event in ready:
                event.synchronize()
            save_snapshot(self.model_dir, snap, keep=self.keep)
            self.last_step = snap.step
        except BaseException as e:  # handed to the training thread by wait()
            self._error = e

    def busy(self) -> bool:
        """Whether a write is still running."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the write in flight (if any) is on disk; raise its error, if it had one."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        self.wait()

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        # Already failing: let the write in flight finish (it is atomic either way), keep that error.
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            log.error("a checkpoint write failed too: %s", self._error)
            self._error = None
