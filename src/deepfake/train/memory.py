"""Training's memory: the peak of one step estimated without a GPU, and the largest batch that fits
found by trying it.

**The estimate.** It builds what train builds (train.build.build), draws random uint8 faces of the
model's resolution, augments them as train does, and runs full G + D steps. The first step creates
Adam's state; the second is measured with memory_tracker.MemoryTracker, so the peak includes weights,
optimizer state, gradients, the batch, the activations autograd keeps and every temporary. With
fake=True (the default) the step runs under FakeTensorMode: every op yields an output of the true size
and dtype but nothing is computed or allocated, so df256 at batch 32 takes seconds on a CPU, and the
counted bytes are a real step's (tests/test_memory.py). amp="bf16" runs the step under CPU bf16
autocast, the estimate for `--amp auto` on a GPU (the big tensors, convolution outputs, are bf16 in both).

**The batch finder.** DFL and faceswap users pick a batch size, start training, and find out later that
it does not fit (DFL #5440, #5664, #5743). `--batch auto` runs one real step at a candidate batch; on
out-of-memory the memory is freed and the batch halved until one fits.

    report = measure_train_step(preset_config("df256"), batch=16, amp="bf16")
    batch = find_train_batch(cfg, start=128)
"""

from __future__ import annotations

import contextlib
import gc
import logging
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from deepfake.config import TrainConfig
from deepfake.devices import resolve_device
from deepfake.errors import DeepfakeError
from deepfake.faces.align import canonical_points
from deepfake.train import distributed as dist
from deepfake.train.augment import apply, no_augment, step_params
from deepfake.train.build import build, to_layout
from deepfake.train.memory_tracker import ACTIVATIONS, MemoryTracker, tensor_bytes

log = logging.getLogger(__name__)


def stand_in_faces(batch: int, resolution: int, device: torch.device | str = "cpu",
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch with a real batch's shapes and dtypes and no faceset: random uint8 images (B, 3, R, R),
    full masks (B, 1, R, R) and the canonical face's landmarks (B, 68, 2) in R-pixel units. For probing a
    step's memory and timing it, which do not depend on the pixels. `generator` (a CPU one) draws on the
    host, then moves the images to `device`."""
    shape = (batch, 3, resolution, resolution)
    if generator is None:
        images = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    else:
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).to(device)
    masks = torch.full((batch, 1, resolution, resolution), 255, dtype=torch.uint8, device=device)
    landmarks = torch.as_tensor(canonical_points(resolution, 0.75), dtype=torch.float32).to(device)  # (68, 2)
    return images, masks, landmarks.expand(batch, 68, 2)


# ----------------------------------------------------------------------------------------------------
# The estimate.


@dataclass
class StepMemory:
    """Bytes of one training step. weights + optimizer are alive throughout; grads and activations are
    what was alive besides them at the moment of the peak."""

    preset: str
    batch: int  # faces per identity per micro-batch
    amp: str  # off | bf16
    checkpoint_decoder: bool
    gan: bool  # the discriminator and its phase are part of the step
    fake: bool  # measured under FakeTensorMode (no compute)
    params: int  # parameter count, autoencoder + discriminator
    weights: int
    optimizer: int  # Adam's exp_avg, exp_avg_sq and step counters
    grads: int  # gradients alive at the peak
    activations: int  # saved activations, the batch and temporaries alive at the peak
    peak: int  # the step's peak: all of the above at its largest moment
    cuda_peak: int | None = None  # torch.cuda.max_memory_allocated over the step (real CUDA runs only)


def measure_train_step(cfg: TrainConfig, batch: int | None = None, *, amp: str = "off", fake: bool = True,
                       device: str = "cpu") -> StepMemory:
    """The peak of one training step of `cfg` (its model, discriminator, losses, optimizer, grad_accum).

    batch: faces per identity (default cfg.batch). amp: off | bf16. fake: FakeTensorMode (no compute).
    device: where a real (fake=False) step runs; "cuda" also reports the allocator's own peak.
    """
    if amp not in ("off", "bf16"):
        raise DeepfakeError(f"amp '{amp}': choose off or bf16")
    batch = cfg.batch if batch is None else batch
    if batch < 1:
        raise DeepfakeError(f"batch {batch}: must be >= 1")
    dev = resolve_device(device)
    if fake and dev.type != "cpu":
        raise DeepfakeError("a fake-tensor measurement runs on the cpu device")
    # Compiled graphs are not traced under FakeTensorMode; eager gives the same tensors to count.
    cfg = replace(cfg, compile=False, amp=amp)
    use_gan = cfg.loss.gan_weight > 0
    r = cfg.model.resolution
    # The measured step: one where the GAN term is on, and (if configured) lazy R1 runs, its heaviest kind.
    step = max(1, cfg.loss.gan_start_step)
    if use_gan and cfg.loss.r1_gamma > 0:
        every = max(1, cfg.loss.r1_every)
        step = -(-step // every) * every

    # The augmentation's parameters are drawn on the host before any fake mode: they are numbers the
    # host computes (sample_params), and a fake draw has no values to compute with.
    generator = torch.Generator().manual_seed(0)
    aug_params = {s: [step_params(cfg.augment, batch, generator, s) for _ in range(2 * cfg.grad_accum)] for s in (step - 1, step)}

    with (FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()):
        # Fake modules are built on the cpu already; .to() cannot swap fake parameters.
        built = build(cfg, dev, move=not fake)  # amp bf16 on the CPU: CPU autocast stands in for CUDA's
        params = built.parameters()

        def run_step(s: int) -> None:
            draws = []
            for p in aug_params[s]:
                draws.append(apply(*stand_in_faces(batch, r, dev), p))
            to_layout(draws, cfg, dev)
            built.step.step(draws[: cfg.grad_accum], draws[cfg.grad_accum :], s)

        run_step(step - 1)  # creates Adam's state, which every later step carries

        opt_state = [t for opt in (built.opt_g, built.opt_d) if opt is not None
                     for state in opt.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
        cuda = dev.type == "cuda" and not fake
        if cuda:
            # An earlier measurement's models and Adam state may still wait for the cycle collector
            # (the step holds its own bound methods); the allocator's peak must not count them.
            gc.collect()
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        with MemoryTracker() as mem:
            mem.track(params, "weights")
            mem.track(opt_state, "optimizer")
            # A gradient is counted as such once it lands in .grad (it was born an op's output).
            hooks = [p.register_post_accumulate_grad_hook(lambda p: mem.tag(p.grad, "grads")) for p in params]
            try:
                run_step(step)
            finally:
                for h in hooks:
                    h.remove()
        cuda_peak = None
        if cuda:
            torch.cuda.synchronize(dev)
            cuda_peak = torch.cuda.max_memory_allocated(dev)

    at_peak = mem.peak_by_category
    return StepMemory(
        preset=cfg.preset,
        batch=batch,
        amp=amp,
        checkpoint_decoder=cfg.model.checkpoint_decoder,
        gan=use_gan,
        fake=fake,
        params=sum(p.numel() for p in params),
        weights=tensor_bytes(params),
        optimizer=tensor_bytes(opt_state),
        grads=at_peak.get("grads", 0),
        activations=at_peak.get(ACTIVATIONS, 0),
        peak=mem.peak,
        cuda_peak=cuda_peak,
    )


def estimate(cfg: TrainConfig) -> str:
    """The lines `deepfake train --dry-run` prints: the peak of one step at cfg.batch in bf16 (the GPU
    default) and fp32, and with the decoder's activation checkpointing when it is off. Fake tensors:
    seconds on any machine, before a GPU-hour is spent finding out."""
    def peak(c: TrainConfig, amp: str) -> str:
        n = measure_train_step(c, amp=amp).peak
        return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"  # small presets in MiB

    lines = [f"estimated peak memory of one training step at batch {cfg.batch} per identity: "
             f"{peak(cfg, 'bf16')} with bf16 (the GPU default), {peak(cfg, 'off')} in fp32"]
    if not cfg.model.checkpoint_decoder:
        ckpt = replace(cfg, model=replace(cfg.model, checkpoint_decoder=True))
        lines.append(f"  with --set model.checkpoint_decoder=true: {peak(ckpt, 'bf16')} with bf16")
    lines.append("  (tensor bytes of weights, Adam state, gradients and activations; add about 1 GiB for the CUDA "
                 "context and workspaces, and the face cache: 4 bytes x resolution^2 per face and identity)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# The batch finder.


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
    if dist.env_world_size() > 1:
        raise DeepfakeError("--batch auto is not supported under torchrun: probe on one GPU, then pass --batch")
    cfg = replace(cfg, compile=False)
    device = resolve_device(cfg.device)

    def probe(batch: int) -> None:
        built = build(cfg, device)
        faces = [no_augment(*stand_in_faces(batch, cfg.model.resolution, device))]
        to_layout(faces, cfg, device)
        built.step.step(faces * cfg.grad_accum, faces * cfg.grad_accum, 0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # an asynchronous OOM must surface inside the probe

    batch = find_batch_size(probe, start)
    free_memory()
    return batch
