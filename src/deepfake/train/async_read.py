"""A device tensor's values on their way to the host, read later without draining the device's queue.

`tensor.tolist()` on a CUDA tensor copies on the tensor's stream and waits for the copy, so it waits for
every kernel queued before it: the host stops, the queue empties, and the device idles until the host
has launched the next step's first kernels. A training loop that reads its loss sums that way every
`log_every` steps pays that idle gap once per log window.

    pending = AsyncRead(sums)     # queued behind the work so far; returns at once
    ...                           # queue more steps
    values = pending.values()     # waits for the copy only, not for the steps queued after it

On CUDA the copy goes into pinned host memory with `non_blocking=True` and an event marks its end;
`values()` waits for that event. On the CPU, where ops run synchronously, it is a copy taken now.
"""

from __future__ import annotations

import torch


class AsyncRead:
    def __init__(self, tensor: torch.Tensor):
        t = tensor.detach()
        self.event = None
        if t.device.type == "cuda":
            self.host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            self.host.copy_(t, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record(torch.cuda.current_stream(t.device))
        else:
            self.host = t.clone()

    def ready(self) -> bool:
        """Whether `values()` would return without waiting."""
        return self.event is None or self.event.query()

    def values(self) -> list:
        """The tensor's values as of the moment the AsyncRead was made (nested lists, as `tolist`)."""
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()
