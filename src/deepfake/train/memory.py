"""The peak tensor memory of one `deepfake train` step, for any preset and batch, without a GPU.

It builds what train builds (build_autoencoder, build_discriminator when gan_weight > 0, make_optimizer,
make_step: the step compile_scope names), draws random uint8 faces of the model's resolution, augments
them as train does, and runs full G + D steps. The first step creates Adam's state; the second is
measured, with deepfake.train.memory_tracker.MemoryTracker, so the peak includes weights, optimizer state, gradients,
the batch, the activations autograd keeps and every temporary.

With fake=True (the default) the step runs under FakeTensorMode: every op yields an output of the true
size and dtype but nothing is computed or allocated, so df256 at batch 32 takes seconds on a CPU. The
counted bytes are the same as a real step's (tests/test_memory.py checks that on the tiny preset).
amp="bf16" runs the step under CPU bf16 autocast, the estimate for `--amp auto` on a GPU (CUDA's
autocast keeps a few more ops in fp32; the big tensors, convolution outputs, are bf16 in both).

    report = measure_train_step(preset_config("df256"), batch=16, amp="bf16")
    print(report.peak / 2**30, "GiB")
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, replace

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from deepfake.train.augment import apply, step_params
from deepfake.config import TrainConfig
from deepfake.faceset.cache import stand_in_faces
from deepfake.errors import DeepfakeError
from deepfake.train.memory_tracker import ACTIVATIONS, MemoryTracker, tensor_bytes
from deepfake.models import build_autoencoder, build_discriminator
from deepfake.train import make_optimizer, make_step, resolve_device


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
    cfg = replace(cfg, compile=False)
    amp_dtype = torch.bfloat16 if amp == "bf16" else None
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
        # (Fake modules are built on the cpu already; .to() cannot swap fake parameters.)
        place = (lambda m: m) if fake else (lambda m: m.to(dev))
        autoencoder = place(build_autoencoder(cfg.model))
        discriminator = place(build_discriminator(cfg.discriminator, r)) if use_gan else None
        if cfg.channels_last and dev.type == "cuda":  # as train does
            autoencoder.to(memory_format=torch.channels_last)
            if discriminator is not None:
                discriminator.to(memory_format=torch.channels_last)
        opt_g = make_optimizer(cfg, autoencoder.parameters(), cfg.lr, dev)
        opt_d = make_optimizer(cfg, discriminator.parameters(), cfg.d_lr, dev) if use_gan else None
        stepper = make_step(cfg, autoencoder, discriminator, opt_g, opt_d, dev, amp_dtype)
        nets = [autoencoder] + ([discriminator] if discriminator is not None else [])
        params = [p for net in nets for p in net.parameters()]

        def run_step(s: int) -> None:
            draws = []
            for p in aug_params[s]:
                draws.append(apply(*stand_in_faces(batch, r, dev), p))
            batches_a, batches_b = draws[: cfg.grad_accum], draws[cfg.grad_accum :]
            if cfg.channels_last and dev.type == "cuda":
                for b in draws:
                    b.inputs = b.inputs.contiguous(memory_format=torch.channels_last)
            stepper.step(batches_a, batches_b, s)

        run_step(step - 1)  # creates Adam's state, which every later step carries

        opt_state = [t for opt in (opt_g, opt_d) if opt is not None
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
    if cfg.compile_scope == "step":  # no decoder checkpointing there; the phases are the lighter choice
        lines.append(f"  with compile_scope phases: {peak(replace(cfg, compile_scope='phases'), 'bf16')} with bf16 "
                     "(the whole step is estimated eager: inside torch.func DSSIM keeps the intermediates the phases recompute)")
    elif not cfg.model.checkpoint_decoder:
        ckpt = replace(cfg, model=replace(cfg.model, checkpoint_decoder=True))
        lines.append(f"  with --set model.checkpoint_decoder=true: {peak(ckpt, 'bf16')} with bf16")
    lines.append("  (tensor bytes of weights, Adam state, gradients and activations; add about 1 GiB for the CUDA "
                 "context and workspaces, and the face cache: 4 bytes x resolution^2 per face and identity)")
    return "\n".join(lines)
