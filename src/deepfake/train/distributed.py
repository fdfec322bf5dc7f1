"""Data-parallel training on torch.distributed, launched by torchrun.

    torchrun --nproc_per_node 4 -m deepfake train --a A --b B --out MODEL_DIR

torchrun starts one process per GPU and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.
`init_from_env()` joins the process group (nccl on CUDA, gloo on CPU); without those variables it is a
single-process no-op, so the same train loop runs either way. Every helper below asks torch.distributed
itself, so this module keeps no state of its own.

How the loop uses it (train/loop.py, train/batches.py):
- each rank samples its slice of the global batch (`shard_batch`, one global draw sliced per rank),
  draws its own augmentation seed (`rank_seed`), and averages gradients with DDP (`wrap_ddp`);
- only rank 0 writes checkpoints, previews and metrics (`is_main`); every rank reads the checkpoint to
  resume, so all start from the same weights;
- logged losses are averaged over ranks (`all_reduce_mean`) every log interval, not every step.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn

from deepfake.errors import DeepfakeError

log = logging.getLogger(__name__)

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """What this process is in the job. `owns_group`: init_from_env created the group, close() ends it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # nccl | gloo; None when single-process
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            # DDP's reducer holds the group, and objects of the finished run that are only freed by the
            # garbage collector (reference cycles) can hold DDP: collect them first, so the group ends
            # here and not in the interpreter's exit. There, its gloo teardown aborted a rank ("terminate
            # called without an active exception") in 10 of 200 two-process CPU launches under load;
            # with this collection, 0 of 100 (2026-11-26).
            gc.collect()
            dist.destroy_process_group()

    def __enter__(self) -> "DistContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def env_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_from_env(device: str | torch.device = "auto", timeout_s: float = 600.0) -> DistContext:
    """Join the process group torchrun described in the environment, or return a single-process context.

    device: "auto" | "cpu" | "cuda" | "cuda:N". Under torchrun with CUDA, each rank takes GPU LOCAL_RANK
    (an explicit index is ignored then: one process per GPU is the torchrun contract). The backend is
    nccl on CUDA, gloo on CPU.
    """
    requested = str(device)
    cuda = torch.cuda.is_available() and requested != "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise DeepfakeError(f"device {requested!r} asked for, but CUDA is not available")
    world = env_world_size()
    if world <= 1:
        dev = torch.device(requested if requested not in ("auto", "cuda") else ("cuda" if cuda else "cpu"))
        return DistContext(device=dev)
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise DeepfakeError(f"WORLD_SIZE={world} but {', '.join(missing)} unset: launch with torchrun")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise DeepfakeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) on this machine")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    backend = "nccl" if cuda else "gloo"
    owns = False
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if cuda else {}
        dist.init_process_group(
            backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s), **kwargs
        )
        owns = True
    log.info("rank %d/%d (local %d) on %s, backend %s", rank, world, local_rank, dev, backend)
    return DistContext(rank, world, local_rank, backend, dev, owns)


# ----------------------------------------------------------------------------------------------------
# Who am I. All answer for a single process when no group is initialized.


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on the rank that writes checkpoints, previews and metrics."""
    return rank() == 0


def barrier() -> None:
    if _active() and world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. building the face cache), then the others run it and reuse it."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


# ----------------------------------------------------------------------------------------------------
# Models and tensors.


def wrap_ddp(module: nn.Module, device: str | torch.device, **kwargs) -> nn.Module:
    """DistributedDataParallel around `module` when world_size > 1, else `module` itself.

    DDP averages gradients during backward (bucketed all-reduce overlapping compute) and broadcasts
    rank 0's parameters at construction, so every rank starts identical. Gradients only sync for
    parameters used in a forward *through the wrapper*: call `wrapper(x, ...)`, and reach plain
    methods or a frozen forward (the discriminator in the G step) through `unwrap(wrapper)`.
    """
    if world_size() <= 1:
        return module
    device = torch.device(device)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, **kwargs)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DDP and/or torch.compile wrappers (what checkpoints save)."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over ranks (a new tensor; the input is left alone). Identity for one process.

    Stays on the device: call it on a stacked vector of losses every log interval, then `.tolist()` once.
    """
    if world_size() <= 1:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise max of `tensor` over ranks (a new tensor), e.g. "did any rank see a NaN?".
    A functional collective: it returns a new tensor and leaves the input alone."""
    if world_size() <= 1:
        return tensor
    import torch.distributed._functional_collectives as funcol

    return funcol.all_reduce(tensor.detach(), "max", dist.group.WORLD)


def all_reduce_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average `.grad` over ranks by hand, for parameters trained outside a DDP wrapper (`mean_over_ranks`,
    copied back in place).

    DDP overlaps this with backward; this does not, so use it only for small models or steps DDP cannot
    wrap (double backward, e.g. an R1 penalty).
    """
    if world_size() <= 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    for g, mean in zip(grads, mean_over_ranks(grads)):
        g.copy_(mean)


def mean_over_ranks(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The mean of each tensor over ranks, as new tensors: one flat all-reduce per dtype (one collective
    for all of D's gradients, not one per parameter). The inputs as they are for one process."""
    if world_size() <= 1:
        return tensors
    import torch.distributed._functional_collectives as funcol

    out: list[torch.Tensor | None] = [None] * len(tensors)
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for idx in by_dtype.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in idx])  # (sum numel,)
        flat = funcol.all_reduce(flat, "sum", dist.group.WORLD) / world_size()
        for i, part in zip(idx, flat.split([tensors[i].numel() for i in idx])):
            out[i] = part.view(tensors[i].shape)
    return out  # type: ignore[return-value]


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's `tensor` (same shape and dtype everywhere) stacked in rank order: (world, *shape),
    on the host. For small state such as each rank's random-generator state, which rank 0 saves so a
    resumed multi-GPU run continues every rank's stream exactly. A collective: call it on every rank."""
    if world_size() <= 1:
        return tensor.unsqueeze(0)
    # NCCL gathers device tensors only; gloo gathers host tensors.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    local = tensor.to(device)
    out = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(out, local)
    return torch.stack(out).cpu()


def rank_seed(seed: int) -> int:
    """This rank's augmentation seed: distinct per rank, reproducible for a given (seed, rank).

    The sampling seed stays `seed` on every rank (train.batches draws one global batch and slices it per rank);
    only augmentation differs, or every GPU would warp its faces identically.
    """
    # A large odd multiplier spreads neighbouring ranks far apart in the generator's seed space.
    return (int(seed) + 0x9E3779B1 * rank()) % (2**63 - 1)


def shard_batch(global_batch: int) -> int:
    """Per-rank batch for a global batch. Raises a one-line error when it does not divide evenly."""
    n = world_size()
    if global_batch < n or global_batch % n:
        raise DeepfakeError(f"batch {global_batch} does not split evenly over {n} processes (use a multiple of {n})")
    return global_batch // n
