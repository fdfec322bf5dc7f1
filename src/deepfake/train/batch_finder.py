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
from dataclasses import replace
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


def find_train_batch(cfg, start: int) -> int:
    """The largest batch <= `start` (faces per identity) whose real G+D step fits on cfg.device.

    The probe builds the configured autoencoder, discriminator and optimizers and runs one full step
    (both phases, backward and optimizer update) on face-shaped inputs, so its peak is training's peak.
    The probe runs eager even when training compiles: a compiled step peaks no higher (its fused kernels
    keep fewer intermediates), and compiling every candidate batch would cost tens of seconds each.
    """
    from deepfake.train import distributed as dist
    from deepfake.train.augment import no_augment
    from deepfake.faceset.cache import stand_in_faces
    from deepfake.models import build_autoencoder, build_discriminator
    from deepfake.train import make_optimizer, make_step, resolve_amp, resolve_device

    if dist.env_world_size() > 1:
        raise DeepfakeError("--batch auto is not supported under torchrun: probe on one GPU, then pass --batch")
    cfg = replace(cfg, compile=False)
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    r = cfg.model.resolution

    def probe(batch: int) -> None:
        autoencoder = build_autoencoder(cfg.model).to(device)
        use_gan = cfg.loss.gan_weight > 0
        disc = build_discriminator(cfg.discriminator, r).to(device) if use_gan else None
        opt_g = make_optimizer(cfg, autoencoder.parameters(), cfg.lr, device)
        opt_d = make_optimizer(cfg, disc.parameters(), cfg.d_lr, device) if disc is not None else None
        stepper = make_step(cfg, autoencoder, disc, opt_g, opt_d, device, amp)
        faces = [no_augment(*stand_in_faces(batch, r, device))]
        stepper.step(faces, faces, 0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # an asynchronous OOM must surface inside the probe

    batch = find_batch_size(probe, start)
    free_memory()
    return batch
