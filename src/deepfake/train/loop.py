"""The training loop: the autoencoder (generator) and the discriminator, trained adversarially.

Each step is two explicit phases (CycleGAN's `optimize_parameters`, StyleGAN's Gmain / Dmain):

    G phase  D frozen. Reconstruct A with side a and B with side b; reconstruction loss, plus the
             adversarial term when gan_weight > 0. Only G's optimizer steps.
    D phase  G untouched. Real faces against the detached reconstructions; optional lazy R1.
             Only D's optimizer steps.

The hot loop never waits for the device: losses are summed into a device tensor, copied to the host every
`log_every` steps and read one log window later (async_read.py), so the device's queue never drains for a
log row; a NaN/inf step is skipped on the device (fused Adam's `found_inf`) and counted.

Usage:

    from deepfake.models import preset_config
    result = train(preset_config("tiny"), "faceset_a", "faceset_b", "model_dir")
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from deepfake.train import distributed as dist
from deepfake.train.async_read import AsyncRead
from deepfake.train.augment import Augmented, augment, augment_kernel, no_augment
from deepfake.train.checkpoint import Snapshot, latest_snapshot, read_config, write_config
from deepfake.train.checkpoint_writer import SnapshotWriter
from deepfake.config import LossConfig, TrainConfig, to_dict
from deepfake.faceset.cache import EpochSampler, FaceCache, host_to_device
from deepfake.train.data_stream import DataStream
from deepfake.errors import DeepfakeError
from deepfake.faceset import read_faceset, side_split
from deepfake.io.atomic import atomic_write_text
from deepfake.train.losses import d_accuracy, gan_d_loss, gan_g_loss, r1_penalty, reconstruction_loss
from deepfake.models import build_autoencoder, build_discriminator
from deepfake.train.previews import write_preview
from deepfake.train.step_timer import StepTimer

log = logging.getLogger(__name__)

# What is summed on the device each step, in this order; averaged and logged every log_every steps.
TRAIN_KEYS = ("loss", "loss_a", "loss_b", "dssim_a", "dssim_b", "mse_a", "mse_b", "mask_a", "mask_b",
              "gan_g", "loss_d", "d_acc_real", "d_acc_fake", "skipped")
# gpu_busy: the share of wall time the device spent in the G and D phases (step_timer.py); data_ms: how
# long per step the model's stream spent on or waited for the data section; peak_mem_gib: CUDA's peak
# allocated memory so far (CUDA only).
METRIC_FIELDS = ("step",) + TRAIN_KEYS + ("val_loss", "val_a", "val_b", "lr", "faces_per_s", "gpu_busy", "data_ms",
                                          "peak_mem_gib", "wall_s")


@dataclass
class TrainResult:
    model_dir: Path
    step: int  # the last step trained (and saved)
    interrupted: bool  # stopped by Ctrl-C (after saving)
    metrics: list[dict[str, Any]]  # the rows of metrics.csv
    skipped_steps: int  # steps dropped for a non-finite loss
    overfit_warnings: list[int] = field(default_factory=list)  # steps at which over-fitting was reported
    compile_s: float | None = None  # extra time the first step took with --compile
    gpu_busy: float | None = None  # mean share of wall time in the G and D phases, over the logged windows
    main: bool = True  # False on the DDP ranks other than 0 (they write nothing and report nothing)


@dataclass
class LogWindow:
    """What one log boundary took from the loop, its row written later (`train`'s logging section)."""

    step: int
    on_cycle: bool  # a log_every boundary (its sums and timer marks were reset), not a peek
    lr: float
    count: int  # steps summed
    sums: AsyncRead  # the means of TRAIN_KEYS over the window (across ranks), on their way to the host
    faces_per_s: float
    wall_s: float  # the run's wall time at the boundary, earlier sessions included
    window_s: float  # wall time since the last on-cycle boundary
    marks: list  # StepTimer marks of the window's steps
    peak_mem_gib: float | None  # CUDA's peak allocated memory so far; None on the CPU
    val: AsyncRead | None  # (val_a, val_b) when the window validated


# ----------------------------------------------------------------------------------------------------
# Pieces of the step.


class BothSides(nn.Module):
    """One forward for both identities, so DDP and torch.compile see the whole G graph at once.

    With `one_pass`, the shared encoder runs once on both identities' faces stacked into one batch, and
    the result is split for the two decoders: the same arithmetic per face, half the encoder's kernels,
    each on twice the rows. Measured on an H200 (benchmarks/RESULTS.md): original64 b64 5.3 % faster,
    df256 b32 with GAN (D batched too) 1.8 %."""

    def __init__(self, autoencoder: nn.Module, one_pass: bool = True):
        super().__init__()
        self.autoencoder = autoencoder
        self.one_pass = one_pass

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor):
        if self.one_pass:
            z_a, z_b = self.autoencoder.encode(torch.cat([x_a, x_b])).split([x_a.shape[0], x_b.shape[0]])
            rgb_a, mask_a = self.autoencoder.decode(z_a, "a")  # (B, 3, R, R), (B, 1, R, R)
            rgb_b, mask_b = self.autoencoder.decode(z_b, "b")
        else:
            rgb_a, mask_a = self.autoencoder(x_a, "a")
            rgb_b, mask_b = self.autoencoder(x_b, "b")
        return rgb_a, mask_a, rgb_b, mask_b


def one_pass(cfg: TrainConfig) -> tuple[bool, bool]:
    """Whether the encoder and the discriminator see both identities (and D real and fake) in one batch:
    `cfg.batch_sides`, except for a network with batch norm, whose statistics would mix the batches."""
    return (cfg.batch_sides and cfg.model.norm != "batch", cfg.batch_sides and cfg.discriminator.norm != "batch")


def set_requires_grad(module: nn.Module | None, flag: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)


@dataclass
class Side:
    """One identity's data for the training device."""

    device: torch.device  # where batches go (the cache itself may stay in pinned host memory)
    cache: FaceCache
    train_rows: torch.Tensor  # (N_train,) rows of the cache
    val: Augmented | None  # the fixed validation faces, un-augmented
    preview: torch.Tensor  # (P, 3, R, R) float: the faces shown in previews
    sampler: EpochSampler


COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune")


def resolve_compile_mode(cfg: TrainConfig, device: torch.device) -> str:
    """The torch.compile mode `cfg.compile_mode` means on `device`. "auto" is CUDA graphs
    (reduce-overhead) for models up to 128 px in a single process, where the step is a few milliseconds
    of many small kernels and launching them costs more than running them (original64 at batch 64 on an
    H100: 12,533 faces/s compiled, 17,510 with CUDA graphs; benchmarks/RESULTS.md). Larger models keep
    the device busy on their own (df256: 0.97 busy compiled) and skip the graphs' memory pool. DDP with
    CUDA graphs (collectives inside captured graphs) is untested here, so it stays default under DDP."""
    mode = cfg.compile_mode
    if mode not in COMPILE_MODES:
        raise DeepfakeError(f"compile_mode '{mode}': choose one of {', '.join(COMPILE_MODES)}")
    if mode != "auto":
        return mode
    small = cfg.model.resolution <= 128
    return "reduce-overhead" if torch.device(device).type == "cuda" and small and dist.world_size() == 1 else "default"


class AdversarialStep:
    """The G and D phases of one training step, as two explicit methods."""

    def __init__(self, cfg: TrainConfig, autoencoder: nn.Module, discriminator: nn.Module | None,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None,
                 device: torch.device, amp_dtype: torch.dtype | None, ddp: bool = True):
        """`ddp` False: G is not DDP-wrapped under torchrun (the whole step averages gradients itself)."""
        self.cfg, self.loss_cfg = cfg, cfg.loss
        self.autoencoder, self.discriminator = autoencoder, discriminator
        self.opt_g, self.opt_d = opt_g, opt_d
        self.device, self.amp_dtype = device, amp_dtype
        g_one_pass, self.d_one_pass = one_pass(cfg)
        self.g_model = BothSides(autoencoder, g_one_pass)
        if ddp:
            self.g_model = dist.wrap_ddp(self.g_model, device)
        # --compile: each phase's forward *and* losses become one graph (AOTAutograd derives its
        # backward), so DSSIM, masks and the GAN terms are fused with the networks, not run eager.
        # compile_mode "reduce-overhead" replays the graphs as CUDA graphs; "auto" picks it where launch
        # overhead dominates (resolve_compile_mode).
        self.compile_mode = resolve_compile_mode(cfg, device) if cfg.compile else None
        compile_ = (lambda fn: torch.compile(fn, mode=self.compile_mode)) if cfg.compile else (lambda fn: fn)
        self.g_losses = compile_(self._g_losses)
        self.d_losses = compile_(self._d_losses)
        self.fused = bool(opt_g.defaults.get("fused"))  # fused Adam skips non-finite steps on the device
        self.cuda_graphs = self.compile_mode == "reduce-overhead"

    def _mark_step(self) -> None:
        """Tell the CUDA-graph trees that the outputs of earlier replays are no longer read (every one
        this step needs was consumed or cloned), so a replay may reuse their memory."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    def _own_grads(self, params: list[nn.Parameter], accum: int) -> None:
        """Before accumulating micro-batches under CUDA graphs, give every parameter a .grad of its own.

        Otherwise the first backward *installs* its gradient, which lives in the CUDA-graph pool, as
        .grad, and the next micro-batch's replay overwrites it: the sum would be g2 + g2, silently
        (pytorch/pytorch#169545). With a .grad already there, autograd adds into it in place.
        """
        if self.cuda_graphs and accum > 1:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _finish(self, opt: torch.optim.Optimizer, params: list[nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
        """Clip, then step unless the loss or the gradients are non-finite. Returns the skip flag (0/1)."""
        bad = ~torch.isfinite(loss)
        if self.cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            bad = bad | ~torch.isfinite(norm)
        # Gradients are averaged over ranks, so one rank's NaN reaches all: every rank must skip together.
        bad = dist.all_reduce_max(bad.float())
        if self.fused:
            opt.found_inf = bad  # fused Adam reads this and skips the update without a host sync
            opt.step()
            del opt.found_inf
        elif not bad.item():  # unfused optimizers only: this read waits for the device
            opt.step()
        opt.zero_grad(set_to_none=True)
        return bad

    def _g_losses(self, a: Augmented, b: Augmented, use_gan: bool):
        """G's forward and loss on one micro-batch. Returns (loss, the 10 logged terms, rgb_a, rgb_b)."""
        with self.autocast():
            rgb_a, mask_a, rgb_b, mask_b = self.g_model(a.inputs, b.inputs)  # (B, 3, R, R), (B, 1, R, R) x2
            loss_a, terms_a = reconstruction_loss(rgb_a, mask_a, a.target, a.target_mask, a.landmarks, self.loss_cfg)
            loss_b, terms_b = reconstruction_loss(rgb_b, mask_b, b.target, b.target_mask, b.landmarks, self.loss_cfg)
            loss = loss_a + loss_b
            gan = torch.zeros((), device=loss.device)
            if use_gan:
                logits_a, logits_b = self._judge(rgb_a, rgb_b)
                gan = gan_g_loss(logits_a, self.loss_cfg.gan_loss) + gan_g_loss(logits_b, self.loss_cfg.gan_loss)
                loss = loss + self.loss_cfg.gan_weight * gan
        zero = torch.zeros((), device=loss.device)
        terms = torch.stack([
            loss.detach(), loss_a.detach(), loss_b.detach(),
            terms_a.get("dssim", zero), terms_b.get("dssim", zero),
            terms_a.get("mse", zero), terms_b.get("mse", zero),
            terms_a.get("mask", zero), terms_b.get("mask", zero), gan.detach(),
        ]).float()  # (10,)
        return loss, terms, rgb_a, rgb_b

    def _judge(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's logits for two batches: in one batched pass (`d_one_pass`) or one pass each."""
        if self.d_one_pass:
            return self.discriminator(torch.cat([x, y])).split([x.shape[0], y.shape[0]])
        return self.discriminator(x), self.discriminator(y)

    def _d_losses(self, real: torch.Tensor, fake: torch.Tensor, r1: bool):
        """D's loss on real targets against detached fakes (+ lazy R1). Returns (loss, real_logits, fake_logits)."""
        with self.autocast():
            real_logits, fake_logits = self._judge(real, fake)
            loss = gan_d_loss(real_logits, fake_logits, self.loss_cfg.gan_loss)
            if r1:
                # StyleGAN2's lazy regularisation: every r1_every steps, scaled to keep its weight.
                loss = loss + self.loss_cfg.r1_gamma / 2 * self.loss_cfg.r1_every * r1_penalty(real_logits, real)
        return loss, real_logits, fake_logits

    def generator_phase(self, batches_a: list[Augmented], batches_b: list[Augmented], step: int):
        """Update G only. Returns (per-step sums of the logged terms, detached fakes for the D phase)."""
        set_requires_grad(self.discriminator, False)  # D gets no gradient from G's loss
        use_gan = self.discriminator is not None and self.loss_cfg.gan_weight > 0 and step >= self.loss_cfg.gan_start_step
        accum = len(batches_a)
        logs = torch.zeros(10, device=self.device)
        fakes = []
        total = torch.zeros((), device=self.device)
        params = list(self.autoencoder.parameters())
        self._own_grads(params, accum)
        for i, (a, b) in enumerate(zip(batches_a, batches_b)):
            sync = self.g_model.no_sync() if (i < accum - 1 and hasattr(self.g_model, "no_sync")) else contextlib.nullcontext()
            with sync:
                self._mark_step()
                loss, terms, rgb_a, rgb_b = self.g_losses(a, b, use_gan)
                (loss / accum).backward()
            total = total + loss.detach() / accum
            logs += terms.detach().float() / accum
            if self.cuda_graphs:
                # CUDA-graph outputs live in a static pool the next replay overwrites (grad_accum > 1).
                rgb_a, rgb_b = rgb_a.clone(), rgb_b.clone()
            fakes.append((rgb_a.detach(), rgb_b.detach()))
        skipped = self._finish(self.opt_g, params, total)
        return logs, skipped, fakes

    def step(self, batches_a: list[Augmented], batches_b: list[Augmented], step: int):
        """The G phase, then the D phase. Returns (G's logged sums (10,), G skipped, D's sums (3,), D skipped)."""
        g_logs, g_skip, fakes = self.generator_phase(batches_a, batches_b, step)
        d_logs, d_skip = self.discriminator_phase(batches_a, batches_b, fakes, step)
        return g_logs, g_skip, d_logs, d_skip

    def discriminator_phase(self, batches_a: list[Augmented], batches_b: list[Augmented], fakes, step: int):
        """Update D only, on real targets against detached fakes. Returns sums of (loss_d, acc_real, acc_fake)."""
        if self.discriminator is None or self.loss_cfg.gan_weight <= 0:
            return torch.zeros(3, device=self.device), torch.zeros((), device=self.device)
        set_requires_grad(self.discriminator, True)
        accum = len(batches_a)
        lazy_r1 = self.loss_cfg.r1_gamma > 0 and step % max(1, self.loss_cfg.r1_every) == 0
        logs = torch.zeros(3, device=self.device)
        total = torch.zeros((), device=self.device)
        params = list(self.discriminator.parameters())
        self._own_grads(params, accum)
        for a, b, (fake_a, fake_b) in zip(batches_a, batches_b, fakes):
            real = torch.cat([a.target, b.target])  # (2B, 3, R, R)
            fake = torch.cat([fake_a, fake_b])  # (2B, 3, R, R), no path back into G
            if lazy_r1:
                real = real.detach().requires_grad_(True)
            # R1 needs a double backward, which compiled graphs do not support: that step runs eager.
            d_losses = self._d_losses if lazy_r1 else self.d_losses
            self._mark_step()
            loss, real_logits, fake_logits = d_losses(real, fake, lazy_r1)
            (loss / accum).backward()
            total = total + loss.detach() / accum
            acc_real, acc_fake = d_accuracy(real_logits.detach(), fake_logits.detach())
            logs += torch.stack([loss.detach().float(), acc_real, acc_fake]) / accum
        # D is not DDP-wrapped (R1 needs a double backward); average its gradients by hand.
        dist.all_reduce_gradients(self.discriminator.parameters())
        skipped = self._finish(self.opt_d, params, total)
        return logs, skipped


def make_step(cfg: TrainConfig, autoencoder: nn.Module, discriminator: nn.Module | None,
              opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None,
              device: torch.device, amp_dtype: torch.dtype | None) -> AdversarialStep:
    return AdversarialStep(cfg, autoencoder, discriminator, opt_g, opt_d, device, amp_dtype)


# ----------------------------------------------------------------------------------------------------
# Setup helpers.


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeepfakeError(f"device '{name}' asked for, but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeepfakeError(f"unknown device '{name}' (auto | cpu | cuda | cuda:N)") from None


def configure_cuda(device: torch.device) -> None:
    """The CUDA settings a training run uses (process-wide torch flags; nothing on a CPU).

    cudnn autotuning pays here: every step has the same shapes, so the fastest convolution algorithms
    are picked once. TF32 for float32 matmuls and convolutions, as faceswap's fp32 runs use: only an
    `--amp off` run does float32 work in the big layers. The speed benchmark calls this too, so it
    measures the step under the settings `deepfake train` runs it with.
    """
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    if name == "off":
        return None
    if name == "auto":
        # bf16 on GPUs that have it; off on CPU, where bf16 is slow and would break exact resume checks.
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "bf16":
        return torch.bfloat16
    raise DeepfakeError(f"amp '{name}': choose auto, bf16 or off (fp16 needs loss scaling; bf16 does not)")


def make_optimizer(cfg: TrainConfig, params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if cfg.optimizer not in kinds:
        raise DeepfakeError(f"optimizer '{cfg.optimizer}': choose adam or adamw")
    params = list(params)
    kwargs = dict(lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    try:
        # Fused: one kernel for all parameters, and it can skip a non-finite step on the device.
        return kinds[cfg.optimizer](params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # a device without a fused kernel
        return kinds[cfg.optimizer](params, **kwargs)


def lr_at(step: int, base: float, warmup: int) -> float:
    return base * min(1.0, (step + 1) / warmup) if warmup > 0 else base


def load_side(path, cfg: TrainConfig, device: torch.device, side: str, generator: torch.Generator, progress: bool):
    """Read a faceset, decode it once, split off the validation faces, put it on the device."""
    fs = read_faceset(path)
    with dist.main_first():  # rank 0 builds the on-disk cache, the others then map it
        cache = FaceCache.from_faceset(fs, cfg.model.resolution, progress=progress and dist.is_main())
    train_idx, val_idx = side_split(len(cache), cfg.val_fraction, cfg.seed, side)
    on_device = cache.pin()
    nbytes = on_device.images.numel() + on_device.masks.numel()
    if device.type != "cuda" or nbytes < 0.25 * torch.cuda.get_device_properties(device).total_memory:
        on_device = on_device.to(device)  # the usual case: the whole set lives on the device
    else:
        log.info("%s: %.1f GiB of faces stay in pinned host memory; batches are streamed", fs.root, nbytes / 2**30)
    val = None
    if len(val_idx):
        v = on_device.subset(val_idx[: cfg.val_faces]).to(device)
        val = no_augment(v.images, v.masks, v.landmarks)
    # Preview columns: the validation faces first, topped up with training faces on small sets.
    shown_rows = torch.as_tensor(list(val_idx[: cfg.preview_faces]) + list(train_idx[: max(0, cfg.preview_faces - len(val_idx))]))
    shown = on_device.subset(shown_rows).to(device).images.float() / 255  # (P, 3, R, R)
    return fs, Side(
        device=device,
        cache=on_device,
        train_rows=torch.as_tensor(train_idx, dtype=torch.int64).to(on_device.device),  # (N_train,) beside the cache
        val=val,
        preview=shown,
        sampler=EpochSampler(len(train_idx), generator, on_device.device),
    )


def _draw(side: Side, batch: int, cfg: TrainConfig, aug_gen: torch.Generator, step: int, kernel=None) -> Augmented:
    rows = side.train_rows[side.sampler.next(batch * dist.world_size())]  # (global B,) one draw for all ranks
    rows = rows[dist.rank() * batch : (dist.rank() + 1) * batch]  # (B,) this rank's slice
    faces = side.cache.gather(rows, side.device)
    return augment(faces.images, faces.masks, faces.landmarks, cfg.augment, aug_gen, step, kernel)


def draw_step(side_a: Side, side_b: Side, batch: int, cfg: TrainConfig, aug_gen: torch.Generator, step: int,
              kernel, stream: DataStream) -> tuple[list[Augmented], list[Augmented]]:
    """The data section of one step: `grad_accum` augmented micro-batches per side, drawn on the data
    stream (beside the previous step's G and D phases on CUDA) and handed over to the main stream."""
    with stream.section():
        batches_a = [_draw(side_a, batch, cfg, aug_gen, step, kernel) for _ in range(cfg.grad_accum)]
        batches_b = [_draw(side_b, batch, cfg, aug_gen, step, kernel) for _ in range(cfg.grad_accum)]
        if cfg.channels_last and side_a.device.type == "cuda":
            for b in batches_a + batches_b:
                b.inputs = b.inputs.contiguous(memory_format=torch.channels_last)
    stream.hand_over(batches_a + batches_b)
    return batches_a, batches_b


@torch.no_grad()
def validate(autoencoder: nn.Module, side: Side, which: str, loss_cfg: LossConfig, batch: int, autocast) -> torch.Tensor:
    """Mean reconstruction loss over the fixed validation faces of one side: a 0-d float32 tensor on the
    side's device, NaN without validation faces. Nothing is read back here (no host sync): the log row
    reads it, one window later."""
    if side.val is None:
        return torch.full((), float("nan"), device=side.device)
    was = autoencoder.training
    autoencoder.eval()
    total, n = torch.zeros((), device=side.val.inputs.device), side.val.inputs.shape[0]
    for i in range(0, n, batch):
        sl = slice(i, i + batch)
        with autocast():
            rgb, mask = autoencoder(side.val.inputs[sl], which)
            loss, _ = reconstruction_loss(rgb, mask, side.val.target[sl], side.val.target_mask[sl], side.val.landmarks[sl], loss_cfg)
        total += loss.float() * rgb.shape[0]
    autoencoder.train(was)
    return total / n


class OverfitWatch:
    """Warn when the validation loss has risen `patience` validations in a row while training loss fell:
    the model memorises the training faces (DFL's "over-trained" case)."""

    def __init__(self, patience: int, history: list[list[float]] | None = None):
        self.patience = max(1, patience)
        self.history = history or []  # [step, train_loss, val_loss]
        self.warned = False

    def update(self, step: int, train_loss: float, val_loss: float) -> bool:
        if math.isnan(val_loss) or math.isnan(train_loss):
            return False
        self.history.append([step, train_loss, val_loss])
        recent = self.history[-(self.patience + 1):]
        if len(recent) <= self.patience:
            return False
        vals = [r[2] for r in recent]
        rising = all(b > a for a, b in zip(vals, vals[1:]))
        falling = recent[-1][1] < recent[0][1]
        fire = rising and falling and not self.warned
        self.warned = rising and falling  # one warning per episode
        return fire


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """metrics.csv as dicts of floats (empty cells -> None); `step` as int."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                row[k] = int(v) if k == "step" else (float(v) if v not in ("", None) else None)
            rows.append(row)
    return rows


def _tensorboard(model_dir: Path, enabled: bool):
    if not enabled or not dist.is_main():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(model_dir / "tensorboard"))


@contextlib.contextmanager
def _sigint_flag():
    """Ctrl-C sets a flag the loop checks after each step (so it saves first); a second Ctrl-C aborts."""
    state = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True
        log.warning("interrupt: saving after this step (Ctrl-C again to abort without saving)")

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, old)


def _check_resumable(saved: TrainConfig, cfg: TrainConfig, model_dir: Path) -> None:
    # Activation checkpointing and the heads' kernel change memory and speed, not weights: they may be
    # switched on a resume.
    saved = replace(saved, model=replace(saved.model, checkpoint_decoder=cfg.model.checkpoint_decoder,
                                         head_conv=cfg.model.head_conv))
    for part in ("model", "discriminator"):
        if to_dict(getattr(saved, part)) != to_dict(getattr(cfg, part)):
            raise DeepfakeError(
                f"{model_dir}: holds a model with a different {part} config; resume with the same settings "
                "(omit --preset/--arch/--config) or train into a new folder"
            )


# ----------------------------------------------------------------------------------------------------
# The loop.


def train(
    cfg: TrainConfig,  # the resolved config; face_size/coverage are filled in from the facesets
    faceset_a,  # faceset folder of identity A (path or str)
    faceset_b,  # faceset folder of identity B
    out_dir,  # MODEL_DIR; an existing one is resumed exactly where it stopped
    *,
    resume: bool = True,  # False: refuse to train into a folder that already holds a model
    progress: bool = True,  # tqdm bar (rank 0 only)
    stop_at: int | None = None,  # stop (and save) after this step even if cfg.steps is larger (tests)
    minutes: float | None = None,  # wall-clock budget: stop (and save) at the first log boundary past it
) -> TrainResult:
    """Train and return a summary. Saves every save_every steps, at the end and on Ctrl-C."""
    model_dir = Path(out_dir)
    ctx = dist.init_from_env(cfg.device) if dist.env_world_size() > 1 and not torch.distributed.is_initialized() else None
    try:
        result = _train(cfg, faceset_a, faceset_b, model_dir, resume, progress, stop_at, minutes, ctx)
        # Rank 0 may still be writing the last checkpoint: every rank waits for it before the group
        # is torn down (DistContext.close).
        dist.barrier()
        return result
    finally:
        if ctx is not None:
            ctx.close()


def _train(cfg, faceset_a, faceset_b, model_dir: Path, resume, progress, stop_at, minutes, ctx) -> TrainResult:
    from tqdm import tqdm

    # Device and precision.
    device = ctx.device if ctx is not None and ctx.distributed else resolve_device(cfg.device)
    configure_cuda(device)
    amp_dtype = resolve_amp(cfg.amp, device)
    main = dist.is_main()
    per_rank_batch = dist.shard_batch(cfg.batch)
    if cfg.grad_accum < 1:
        raise DeepfakeError(f"grad_accum {cfg.grad_accum}: must be >= 1")

    # Resume: the folder's own snapshot wins over fresh initialisation.
    snap: Snapshot | None = None
    if (model_dir / "config.json").is_file():
        if not resume:
            raise DeepfakeError(f"{model_dir}: already holds a model (resume it, or pick a new folder)")
        _check_resumable(read_config(model_dir), cfg, model_dir)
        snap = latest_snapshot(model_dir)

    # Data: decoded once, split per identity, on the device.
    torch.manual_seed(cfg.seed)  # model initialisation
    sample_gen = torch.Generator().manual_seed(cfg.seed)  # same on every rank: one global draw, sliced
    aug_gen = torch.Generator().manual_seed(dist.rank_seed(cfg.seed + 1))  # distinct per rank
    fs_a, side_a = load_side(faceset_a, cfg, device, "a", sample_gen, progress)
    fs_b, side_b = load_side(faceset_b, cfg, device, "b", sample_gen, progress)
    if abs(fs_a.coverage - fs_b.coverage) > 1e-6:
        log.warning("facesets were extracted with different coverage (%.3f vs %.3f); swap uses A's", fs_a.coverage, fs_b.coverage)
    cfg = replace(cfg, face_size=fs_a.size, coverage=fs_a.coverage)
    identities = {k: fs.mean_embedding() for k, fs in (("a", fs_a), ("b", fs_b)) if len(fs) and fs.records[0].embedding}

    # Networks and optimizers.
    autoencoder = build_autoencoder(cfg.model).to(device)
    use_gan = cfg.loss.gan_weight > 0
    discriminator = build_discriminator(cfg.discriminator, cfg.model.resolution).to(device) if use_gan else None
    if cfg.channels_last and device.type == "cuda":
        autoencoder.to(memory_format=torch.channels_last)
        if discriminator is not None:
            discriminator.to(memory_format=torch.channels_last)
    opt_g = make_optimizer(cfg, autoencoder.parameters(), cfg.lr, device)
    opt_d = make_optimizer(cfg, discriminator.parameters(), cfg.d_lr, device) if use_gan else None

    start, rows, wall_before, watch_history, sums, count = 0, [], 0.0, None, None, 0
    if snap is not None:
        autoencoder.load_state_dict(snap.autoencoder)
        opt_g.load_state_dict(snap.optimizer_g)
        if use_gan and snap.discriminator is not None:
            discriminator.load_state_dict(snap.discriminator)
            if snap.optimizer_d is not None:
                opt_d.load_state_dict(snap.optimizer_d)
        elif use_gan:
            log.info("adding a discriminator to a model trained without one")
        sample_gen.set_state(snap.rng["sample_gen"])
        saved_aug = snap.rng.get("aug_gen_ranks")  # (world, state) every rank's augmentation stream
        if saved_aug is not None and saved_aug.shape[0] == dist.world_size():
            aug_gen.set_state(saved_aug[dist.rank()].clone())  # exactly where each rank stopped
        elif dist.world_size() == 1:
            aug_gen.set_state(snap.rng["aug_gen"])
        else:
            # Saved with another number of processes: each rank starts a fresh stream of its own, so the
            # resumed run is correct but not bitwise the uninterrupted one.
            log.info("resuming on %d processes a run saved on %s: fresh augmentation streams", dist.world_size(),
                     "another number of" if saved_aug is not None else "an unknown number of")
            aug_gen.manual_seed(dist.rank_seed(cfg.seed + 1 + snap.step))
        side_a.sampler.load(snap.rng["sampler_a"])
        side_b.sampler.load(snap.rng["sampler_b"])
        sums, count = snap.rng.get("sums"), int(snap.state.get("sums_count", 0))
        start, wall_before = snap.step, float(snap.state.get("wall_s", 0.0))
        watch_history = snap.state.get("overfit_history")
        rows = [r for r in read_metrics(model_dir / "metrics.csv") if r["step"] <= start]
        log.info("resuming %s at step %d", model_dir, start)
    if main:
        write_config(model_dir, cfg, identities or None)
    step_fn = make_step(cfg, autoencoder, discriminator, opt_g, opt_d, device, amp_dtype)
    aug_kernel = augment_kernel(cfg.compile)
    sums = torch.zeros(len(TRAIN_KEYS), device=device) if sums is None else sums.to(device)
    watch = OverfitWatch(cfg.overfit_patience, watch_history)
    writer = _tensorboard(model_dir, cfg.tensorboard)
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps

    def save(step: int) -> None:
        aug_states = dist.all_gather_rows(aug_gen.get_state())  # every rank takes part; rank 0 writes
        if not main:
            return
        # `sums` stays on the device: the saver stages it with the weights, without a host sync.
        rng = {"sample_gen": sample_gen.get_state(), "aug_gen": aug_gen.get_state(), "aug_gen_ranks": aug_states,
               "sampler_a": side_a.sampler.state(), "sampler_b": side_b.sampler.state(), "sums": sums.detach()}
        state = {"wall_s": wall_before + time.perf_counter() - t_start, "world_size": dist.world_size(),
                 "sums_count": count, "overfit_history": watch.history}
        saver.submit(Snapshot(
            step=step,
            autoencoder=dist.unwrap(autoencoder).state_dict(),
            discriminator=discriminator.state_dict() if discriminator is not None else None,
            optimizer_g=opt_g.state_dict(),
            optimizer_d=opt_d.state_dict() if opt_d is not None else None,
            rng=rng, state=state,
        ))  # copied to host memory now, written on the saver's thread while training goes on
        _write_metrics(model_dir / "metrics.csv", rows)

    # The loop.
    faces_per_step = 2 * per_rank_batch * cfg.grad_accum * dist.world_size()
    # With a time budget the step count is open-ended: the bar then counts steps without a total.
    bar = tqdm(total=None if minutes else end, initial=start, unit="step", disable=not (progress and main),
               dynamic_ncols=True)
    t_start = t_log = time.perf_counter()
    deadline = t_start + 60.0 * minutes if minutes else None
    step, steps_since_log, warnings, compile_s = start, 0, [], None
    timer, busy_windows = StepTimer(device), []
    data_stream = DataStream(device)  # after loading and resuming: the side stream waits for that once
    skipped_total = torch.zeros((), device=device)  # read once, at the end
    interrupted = False
    pending: LogWindow | None = None  # the last log boundary's window, its row not yet written
    stop_vote: AsyncRead | None = None  # DDP: the ranks' mean wish to stop at the last log boundary

    def write_row(w: LogWindow) -> None:
        """The metrics row of a log window: read its sums, timings and validation losses; warn; show."""
        means = w.sums.values()
        row: dict[str, Any] = {"step": w.step, **dict(zip(TRAIN_KEYS, means))}
        row["skipped"] = means[-1] * w.count  # a count, not a mean
        row.update(lr=w.lr, faces_per_s=w.faces_per_s, wall_s=w.wall_s, val_loss=None, val_a=None, val_b=None)
        times = timer.summarize(w.marks, w.window_s)
        if times is not None:
            row.update(gpu_busy=times.busy, data_ms=times.data_ms)
            if w.on_cycle:
                busy_windows.append(times.busy)
        if w.peak_mem_gib is not None:
            row["peak_mem_gib"] = w.peak_mem_gib
        if w.val is not None:
            row["val_a"], row["val_b"] = w.val.values()
            row["val_loss"] = row["val_a"] + row["val_b"]
            if watch.update(w.step, row["loss"], row["val_loss"]):
                warnings.append(w.step)
                msg = (f"step {w.step}: validation loss rose {watch.patience} times in a row "
                       f"({row['val_loss']:.4f}) while training loss fell ({row['loss']:.4f}): over-fitting. "
                       "Add more varied faces, or stop at an earlier checkpoint.")
                log.warning(msg)
                if main:
                    bar.write(f"warning: {msg}")
        if row["skipped"] and main:
            bar.write(f"warning: {int(round(row['skipped']))} step(s) skipped for a non-finite loss before step {w.step}")
        rows.append(row)
        if w.val is not None and main:
            _write_metrics(model_dir / "metrics.csv", rows)  # live, between checkpoints too
        post = {"loss": f"{row['loss']:.4f}", "faces/s": f"{row['faces_per_s']:.0f}"}
        if row.get("gpu_busy") is not None and device.type == "cuda":
            post["busy"] = f"{row['gpu_busy']:.0%}"
        if use_gan:
            post.update(d=f"{row['loss_d']:.3f}", acc=f"{row['d_acc_real']:.2f}/{row['d_acc_fake']:.2f}")
        if row["val_loss"] is not None:
            post["val"] = f"{row['val_loss']:.4f}"
        bar.set_postfix(post, refresh=False)
        if writer is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    writer.add_scalar(k, v, w.step)

    # Checkpoints are written on a thread of their own (checkpoint_writer.py); leaving the block waits for
    # the last one, with Ctrl-C still caught.
    saver = SnapshotWriter(model_dir, keep=cfg.keep_backups)
    with _sigint_flag() as flag, saver:
        stopping = False
        while step < end and not stopping:
            t_step = time.perf_counter()
            lr = lr_at(step, cfg.lr, cfg.warmup_steps)
            for group in opt_g.param_groups:
                group["lr"] = lr

            # Section: data (augmented on the device).
            timer.data_start()
            batches_a, batches_b = draw_step(side_a, side_b, per_rank_batch, cfg, aug_gen, step, aug_kernel, data_stream)

            # Section: G phase, then D phase.
            timer.compute_start()
            g_logs, g_skip, d_logs, d_skip = step_fn.step(batches_a, batches_b, step)
            timer.compute_end()
            skipped = (g_skip + d_skip).clamp(max=1)
            sums += torch.cat([g_logs, d_logs, skipped.view(1)])  # (len(TRAIN_KEYS),)
            skipped_total += skipped
            step += 1
            count += 1
            steps_since_log += 1
            bar.update(1)
            if cfg.compile and compile_s is None and step == start + 1:
                compile_s = time.perf_counter() - t_step  # the first step pays for compilation
                log.info("torch.compile (mode %s): first step took %.1f s", step_fn.compile_mode, compile_s)

            # Section: Ctrl-C and the time budget. Under DDP every rank must stop at the same step, so the
            # ranks vote at log boundaries (one tiny all-reduce) and act on the vote at the next boundary,
            # read like the log rows without draining the device: all stop together, one window after the
            # first asked. A single process stops on Ctrl-C right away. The clock is read at log
            # boundaries only.
            out_of_time = deadline is not None and step % cfg.log_every == 0 and time.perf_counter() >= deadline
            if dist.world_size() == 1:
                stopping = flag["stop"] or out_of_time
            elif step % cfg.log_every == 0:
                stopping = stop_vote is not None and stop_vote.values() > 0
                want = torch.tensor(float(flag["stop"] or out_of_time))
                stop_vote = None if stopping else AsyncRead(dist.all_reduce_mean(host_to_device(want, device)))

            # Section: logging. The loss sums leave the device without a host sync: at a log boundary
            # they are copied to pinned host memory behind the work queued so far, and the row is written
            # at the next boundary, by when the device has long passed them. So the host never waits for
            # the device's queue to drain, and the device does not idle while the host launches the next
            # step's data section and first kernels. (Run 5 on an H200, original64, drained every 10 steps
            # and measured 0.06-0.78 ms of data wait per step; how much of it came after the drains was not
            # measured apart: benchmarks/RESULTS.md.) Validation losses travel the same way. The last
            # step's row and a stop's are written at once.
            val_due = step % cfg.val_every == 0 if cfg.val_every > 0 else False
            on_cycle = step % cfg.log_every == 0
            if on_cycle or val_due or step == end or stopping:
                if pending is not None:
                    write_row(pending)
                    pending = None
                now = time.perf_counter()
                window = LogWindow(
                    step=step, on_cycle=on_cycle, lr=lr, count=count,
                    sums=AsyncRead(dist.all_reduce_mean(sums) / max(1, count)),
                    faces_per_s=faces_per_step * steps_since_log / max(now - t_log, 1e-9),
                    wall_s=wall_before + now - t_start, window_s=now - t_log,
                    # Off-cycle rows (validation, the last step, Ctrl-C) only peek at the window, so a
                    # resumed run's rows come out identical to an uninterrupted one's.
                    marks=timer.take(reset=on_cycle),
                    peak_mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
                    val=AsyncRead(torch.stack([
                        validate(autoencoder, side_a, "a", cfg.loss, per_rank_batch, step_fn.autocast),
                        validate(autoencoder, side_b, "b", cfg.loss, per_rank_batch, step_fn.autocast),
                    ])) if val_due else None,
                )
                if step == end or stopping:
                    write_row(window)
                else:
                    pending = window
                if on_cycle:
                    sums.zero_()  # queued after the copy above
                    count, steps_since_log, t_log = 0, 0, time.perf_counter()

            # Section: previews and checkpoints.
            if main and cfg.preview_every > 0 and (step % cfg.preview_every == 0 or step == end):
                write_preview(model_dir / "previews" / f"step_{step:06d}.png", autoencoder, side_a.preview, side_b.preview)
            if step % cfg.save_every == 0 or step == end or stopping:
                if pending is not None:  # the checkpoint's metrics.csv holds every row up to its step
                    write_row(pending)
                    pending = None
                save(step)
        interrupted = stopping and step < end and flag["stop"]
        if step == start and snap is None:
            save(step)  # nothing to train (steps already reached): still leave a loadable folder (all ranks: a collective)
    bar.close()
    if writer is not None:
        writer.close()
    if interrupted and main:
        log.warning("interrupted: saved %s at step %d", model_dir, step)
    # The first window pays for compilation and warm-up: leave it out of the mean when there are others.
    steady = busy_windows[1:] or busy_windows
    gpu_busy = sum(steady) / len(steady) if steady else None
    return TrainResult(model_dir, step, interrupted, rows, int(skipped_total), warnings, compile_s, gpu_busy, main)
