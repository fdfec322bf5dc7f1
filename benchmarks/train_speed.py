"""Training speed: our real train step against a plain PyTorch reference step of the same architecture,
in the same process, same run, same device.

    python benchmarks/train_speed.py                                   # GPU: original64 and df256, eager + compile
    python benchmarks/train_speed.py --cases original64:64:compile --a FACESET_A --b FACESET_B
    python benchmarks/train_speed.py --quick                           # CPU smoke test (CI): tiny sizes, no claims

Ours  = one step of `deepfake train`: sample rows from the uint8 face cache on the device, augment on the
        device (warp, affine, flip, colour), G phase (DSSIM + masked MSE + mask loss [+ GAN]), D phase,
        loss sums kept on the device. Real faces: --a/--b facesets, or centre crops of frames of the
        shared clips written into a temporary faceset (real pixels; the crops are not aligned, which
        does not change the cost).
Reference = the same encoder/decoder/discriminator shapes written as plain modules (like
        ../shared/bench/ref_train_step.py), L1 + MSE [+ GAN] on random tensors, no data, no augmentation.

Case syntax: PRESET:BATCH:MODE[:gan][:split][:id][:tf], MODE = eager | compile | cudagraphs (compile, mode
reduce-overhead) | auto (compile in the mode `deepfake train --compile` picks: CUDA graphs up to 128 px on
CUDA) | autotune (compile, mode max-autotune: Triton templates benchmarked per shape, then CUDA graphs;
minutes of compiling); `gan` turns the discriminator on (gan_weight 0.1); `split` sets batch_sides off
(one encoder and one D pass per identity, as faceswap runs them, instead of one batched pass: an A/B of
that choice in one run); `id` turns the identity loss on (loss.identity_weight 1: the swaps embedded
by the frozen identity net every step) and `tf` true face (loss.true_face_weight 0.1: the latent-code
discriminator and its phase), so `tiny:8:eager,tiny:8:eager:id,tiny:8:eager:tf` prints what each costs
beside the same step without it. BATCH is faces
per identity per step; faces/s counts both identities (2 x BATCH), as ANCHORS.md does. Printed per case:
- faces/s for ours and the reference, and their ratio (ours / reference);
- TFLOP/s (FLOPs of one step counted by torch.utils.flop_counter.FlopCounterMode, eager) and MFU
  against a matmul measured in this run (bf16 on CUDA; fp32 on CPU, where no bf16 claim is made);
- peak memory (CUDA: max allocated per case; CPU: the process's peak resident set so far);
- compile/warm-up time: the first steps' time beyond steady-state steps;
- GPU-busy fraction, measured as `deepfake train` measures it (deepfake/step_timer.py): the device
  time of the G and D phases (CUDA events) over the wall time of the timed steps; the rest is the data
  section (cache gather + augmentation) and any time the device waited for the host. Beside it,
  compute-only/full: the step on pre-drawn batches over the full step with its data section.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from deepfake.train.augment import augment_kernel
from deepfake.config import ModelConfig, TrainConfig
from deepfake.train.data_stream import DataStream
from deepfake.faceset import FaceRecord, new_header, write_manifest
from deepfake.devices import configure_cuda, resolve_amp
from deepfake.models import preset_config
from deepfake.train.batches import draw_step, load_side
from deepfake.train.build import build
from deepfake.train.metrics import TRAIN_KEYS
from deepfake.train.step import AdversarialStep
from deepfake.train.step_timer import StepTimer, elapsed_ms, mark

MEDIA = Path(os.environ.get("DEEPFAKE_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))
GPU_CASES = "original64:64:eager,original64:64:compile,original64:64:cudagraphs,df256:32:eager:gan,df256:32:compile:gan"
QUICK_CASES = "tiny:2:eager:gan"


# ----------------------------------------------------------------------------------------------------
# The reference: plain modules with our ModelConfig's shapes.


class RefUpscale(nn.Module):
    def __init__(self, i: int, o: int):
        super().__init__()
        self.conv = nn.Conv2d(i, o * 4, 3, 1, 1)

    def forward(self, x):
        return F.pixel_shuffle(F.leaky_relu(self.conv(x), 0.1), 2)  # (B, o, 2H, 2W)


class RefRes(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return F.leaky_relu(x + self.c2(F.leaky_relu(self.c1(x), 0.2)), 0.2)


class RefEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, c = [], 3
        for o in cfg.encoder_channels:
            layers += [nn.Conv2d(c, o, 5, 2, 2), nn.LeakyReLU(0.1)]
            c = o
        self.body = nn.Sequential(*layers)
        self.low = cfg.bottleneck_res or cfg.resolution // 2 ** (cfg.decoder_stages + 1)
        self.ch = cfg.bottleneck_channels
        self.fc1 = nn.Linear(c * (cfg.resolution // 2**cfg.encoder_stages) ** 2, cfg.latent_dims)
        self.fc2 = nn.Linear(cfg.latent_dims, self.low**2 * self.ch)
        self.up = RefUpscale(self.ch, self.ch)

    def forward(self, x):
        z = self.fc2(self.fc1(self.body(x).flatten(1))).view(-1, self.ch, self.low, self.low)
        return self.up(z)  # (B, Cb, 2r, 2r)


class RefDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, c = [], cfg.bottleneck_channels
        for o in cfg.decoder_channels:
            layers.append(RefUpscale(c, o))
            if cfg.residual_blocks:
                layers.append(RefRes(o))
            c = o
        self.body = nn.Sequential(*layers)
        self.rgb, self.mask = nn.Conv2d(c, 3, 5, 1, 2), nn.Conv2d(c, 1, 5, 1, 2)

    def forward(self, z):
        h = self.body(z)
        return torch.sigmoid(self.rgb(h)), torch.sigmoid(self.mask(h))


class RefPatchD(nn.Module):
    def __init__(self, channels: int, depth: int):
        super().__init__()
        layers, c = [], 3
        for i in range(depth):
            o = channels * 2 ** min(i, 3)
            layers += [nn.Conv2d(c, o, 4, 2, 1), nn.LeakyReLU(0.2)]
            c = o
        layers.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def build_reference(cfg: TrainConfig, device: torch.device, amp: torch.dtype | None, compile_: bool, batch: int):
    """A step function over random tensors, and the modules (for parameter counts)."""
    enc, dec_a, dec_b = RefEncoder(cfg.model), RefDecoder(cfg.model), RefDecoder(cfg.model)
    disc = RefPatchD(cfg.discriminator.channels, cfg.discriminator.depth) if cfg.loss.gan_weight > 0 else None
    mods = [m for m in (enc, dec_a, dec_b, disc) if m is not None]
    cl = device.type == "cuda" and cfg.channels_last
    for m in mods:
        m.to(device)
        if cl:
            m.to(memory_format=torch.channels_last)
    fused = device.type == "cuda"
    opt = torch.optim.Adam([p for m in (enc, dec_a, dec_b) for p in m.parameters()], cfg.lr, betas=cfg.betas, fused=fused)
    dopt = torch.optim.Adam(disc.parameters(), cfg.d_lr, betas=cfg.betas, fused=fused) if disc else None
    r = cfg.model.resolution

    def step(wa, ta, wb, tb):
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            pa, ma = dec_a(enc(wa))
            pb, mb = dec_b(enc(wb))
            loss = F.l1_loss(pa.float(), ta) + F.l1_loss(pb.float(), tb) + F.mse_loss(pa.float(), ta) + F.mse_loss(pb.float(), tb)
            loss = loss + 0.01 * (ma.float().mean() + mb.float().mean())  # the mask head takes part, as ours
            if disc is not None:
                loss = loss + 0.1 * F.softplus(-disc(pa)).mean() + 0.1 * F.softplus(-disc(pb)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if disc is not None:
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                dl = F.softplus(-disc(ta)).mean() + F.softplus(disc(pa.detach())).mean() \
                    + F.softplus(-disc(tb)).mean() + F.softplus(disc(pb.detach())).mean()
            dopt.zero_grad(set_to_none=True)
            dl.backward()
            dopt.step()
        return loss.detach()

    sets = []
    for _ in range(2):
        t = [torch.rand(batch, 3, r, r, device=device) for _ in range(4)]  # wa, ta, wb, tb
        if cl:
            t = [x.contiguous(memory_format=torch.channels_last) for x in t]
        sets.append(t)
    compiled = torch.compile(step) if compile_ else step
    return step, compiled, sets, mods


# ----------------------------------------------------------------------------------------------------
# Ours: the real train step.


def build_ours(cfg: TrainConfig, device: torch.device, amp: torch.dtype | None, faceset_a: Path, faceset_b: Path):
    """Our step exactly as `deepfake train` runs it: (full step with data, step on given batches, draw)."""
    sample_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
    _, side_a = load_side(faceset_a, cfg, device, "a", sample_gen, progress=False)
    _, side_b = load_side(faceset_b, cfg, device, "b", sample_gen, progress=False)
    torch.manual_seed(cfg.seed)
    built = build(cfg, device)  # as train builds it
    autoencoder, discriminator, stepper = built.autoencoder, built.discriminator, built.step
    # FLOPs are counted on an eager twin over the same nets and optimizers: the same arithmetic.
    eager = AdversarialStep(replace(cfg, compile=False), autoencoder, discriminator, built.opt_g, built.opt_d, device,
                            built.amp_dtype, built.likeness)
    sums = torch.zeros(len(TRAIN_KEYS), device=device)  # the loop's on-device loss sums
    timer = StepTimer(device)  # the same marks the training loop sets
    kernel = augment_kernel(cfg.compile)  # compiled augmentation when the step is compiled, as in train

    stream = DataStream(device)  # the data section on its own CUDA stream, as in train

    def draw(step):
        return draw_step(side_a, side_b, cfg.batch, cfg, aug_gen, step, kernel, stream)

    def compute(stepper_, a, b, step):
        nonlocal sums
        g_logs, g_skip, d_logs, d_skip = stepper_.step(a, b, step)
        sums = sums + torch.cat([g_logs, d_logs, (g_skip + d_skip).clamp(max=1).view(1)])  # no host sync

    def full(step, stepper_=stepper):
        timer.data_start()
        a, b = draw(step)
        timer.compute_start()
        compute(stepper_, a, b, step)
        timer.compute_end()

    mods = [m for m in (autoencoder, discriminator) if m is not None]
    return full, compute, draw, (side_a, side_b), stepper, eager, mods, timer


# ----------------------------------------------------------------------------------------------------
# Measurement.


def sig(x: float, digits: int = 4) -> float:
    """Round to significant digits (a slow CPU's TFLOP/s would round to 0 at fixed decimals)."""
    return float(f"{x:.{digits}g}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, n: int, device: torch.device) -> float:
    """Seconds per call over n calls, the device drained before and after, with Python's garbage
    collector off, as timeit does. Compilation leaves hundreds of thousands of objects behind, and the
    first full collections after it take 0.1-0.4 s each (measured on this project's CPU box); one of
    them inside a 30-step window would add milliseconds to every step's mean. A training run pays such a
    pause once in thousands of steps."""
    ((_, seconds),) = window_times(fn, n, device, 1)
    return seconds / n


def window_times(fn, n: int, device: torch.device, windows: int) -> list[tuple[int, float]]:
    """`timed`, with the n calls cut into `windows` runs of about equal length, each timed on its own:
    (calls, seconds) per window. A pause inside one window (a collection, a recompilation) shows as one
    slow window; a host that cannot keep ahead of the device slows them all alike.

    The device is drained before the first call and after the last, not at the cuts: on CUDA a cut is an
    event on the current stream and a window's time is the device's own, from one cut to the next, so
    the queue stays full across cuts as it does in `deepfake train` (whose log rows no longer drain it)
    and as in the reference's single window. Draining at each cut made every window start with the
    device idle while the host launched the next data section and the first kernels. On the CPU, where
    ops run synchronously, the cuts read the clock."""
    bounds = [round(k * n / windows) for k in range(windows + 1)]
    sync(device)
    gc.collect()
    gc.disable()
    try:
        cuts = [mark(device)]  # the same marks as the training loop's StepTimer
        for lo, hi in zip(bounds, bounds[1:]):
            for i in range(lo, hi):
                fn(i)
            cuts.append(mark(device))
        sync(device)
        seconds = [elapsed_ms(b, e) / 1e3 for b, e in zip(cuts, cuts[1:])]
        return [(hi - lo, t) for lo, hi, t in zip(bounds, bounds[1:], seconds)]
    finally:
        gc.enable()


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak(device: torch.device) -> tuple[float, str]:
    """TFLOP/s of a large matmul on this device: bf16 on CUDA (the MFU denominator), fp32 on CPU."""
    if device.type == "cuda":
        n, dtype, reps = 8192, torch.bfloat16, 20
    else:
        n, dtype, reps = 1024, torch.float32, 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12, f"{str(dtype).replace('torch.', '')} matmul {n}^3"


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB


def reset_peak(device: torch.device) -> None:
    # Compiled graphs keep their modules alive: drop them so one measurement's memory does not count
    # in the next one's peak.
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# Kernel families by name, first match wins: cuDNN's convolutions by pass (its tensor-core engines name
# fprop, dgrad and wgrad; its generic engines, e.g. convolve_common_engine_float_NHWC, do not say which),
# cuBLAS/CUTLASS matrix products (Hopper's are "nvjet"), Inductor's generated kernels by kind, the
# optimizer, the warp's resampling, layout conversions, aten's own elementwise and reduction kernels.
KERNEL_FAMILIES = (
    ("conv forward", ("fprop",)),
    ("conv input grad", ("dgrad",)),
    ("conv weight grad", ("wgrad",)),
    ("conv generic engine", ("convolve", "conv2d_grouped_direct", "conv_depthwise")),
    ("matmul", ("gemm", "nvjet", "cutlass")),
    ("inductor pointwise", ("triton_poi",)),
    ("inductor reduction", ("triton_red", "triton_per")),
    ("inductor other", ("triton_",)),
    ("optimizer", ("multi_tensor_apply", "fused_adam", "adam")),
    ("warp resampling", ("grid_sampler", "upsample_bicubic")),
    ("layout conversion", ("nchwtonhwc", "nhwctonchw", "transpose")),
    ("aten elementwise/reduce", ("elementwise_kernel", "reduce_kernel")),
)


def kernel_family(name: str) -> str:
    low = name.lower()
    for family, needles in KERNEL_FAMILIES:
        if any(n in low for n in needles):
            return family
    return "other"


def _per_family(kernels: list[tuple[str, float]], steps: int) -> dict[str, dict[str, list[float]]]:
    """(kernel name, device microseconds) pairs -> {family: {name[:240]: [ms per step, calls per step]}}."""
    per: dict[str, dict[str, list[float]]] = {}
    for name, us in kernels:
        entry = per.setdefault(kernel_family(name), {}).setdefault(name[:240], [0.0, 0.0])
        entry[0] += us / steps / 1e3
        entry[1] += 1 / steps
    return per


def kernel_breakdown(kernels: list[tuple[str, float]], steps: int) -> dict[str, float]:
    """(kernel name, device microseconds) pairs -> ms per step per family, largest first."""
    totals = {f: sum(v[0] for v in names.values()) for f, names in _per_family(kernels, steps).items()}
    return {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def top_kernels_by_family(kernels: list[tuple[str, float]], steps: int, top: int = 4) -> dict[str, dict]:
    """(kernel name, device microseconds) pairs -> per family (largest first), its `top` kernels by time:
    {family: {name (240 characters at most: aten's elementwise kernels name their functor late):
    [ms per step, calls per step]}}. Says which kernels make a family's time."""
    per = _per_family(kernels, steps)
    order = sorted(per, key=lambda f: -sum(v[0] for v in per[f].values()))
    return {f: {k: [round(v[0], 3), round(v[1], 1)] for k, v in sorted(per[f].items(), key=lambda kv: -kv[1][0])[:top]}
            for f in order}


def top_ops_by_shape(events, steps: int, key: str, top: int = 15) -> list[list]:
    """The aten operators (not the convolutions, whose time the families give) that take the most self
    time, grouped by input shapes: [[name, shapes, ms per step, calls per step], ...]. Says which
    tensors the elementwise and copy kernels outside the compiled graphs work on."""
    rows = []
    for e in events:
        if not e.key.startswith("aten::") or "conv" in e.key:
            continue
        rows.append([e.key, str(e.input_shapes)[:160], round(getattr(e, key) / steps / 1e3, 3), round(e.count / steps, 1)])
    return sorted(rows, key=lambda r: -r[2])[:top]


def profile_steps(fn, device: torch.device, case: str, n: int = 5) -> None:
    """Where a step's time goes: torch.profiler over n steps, the top kernels by device time, and the
    launches per step (a launch-bound step shows many short kernels and host time above device time)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=acts, record_shapes=True) as prof:
        for i in range(n):
            fn(i)
        sync(device)
    events = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"profile of {case}, {n} steps:", flush=True)
    print(events.table(sort_by=key, row_limit=25, max_name_column_width=70), flush=True)
    by_shape = top_ops_by_shape(prof.key_averages(group_by_input_shape=True), n, key)
    print(json.dumps({"profile": case, "top_aten_ops_by_shape": by_shape}), flush=True)
    if device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy_us = sum(e.device_time for e in kernels) if kernels and hasattr(kernels[0], "device_time") else float("nan")
        print(json.dumps({"profile": case, "kernels_per_step": round(len(kernels) / n, 1),
                          "kernel_ms_per_step": round(busy_us / n / 1e3, 3)}), flush=True)
        if kernels and hasattr(kernels[0], "device_time"):
            # Where the kernel time goes, by family, and each family's top kernels ("other" included).
            pairs = [(e.name, e.device_time) for e in kernels]
            print(json.dumps({"profile": case, "ms_per_step_by_family": kernel_breakdown(pairs, n)}), flush=True)
            print(json.dumps({"profile": case, "top_kernels_by_family": top_kernels_by_family(pairs, n)}), flush=True)


def case_config(case: str, device: torch.device) -> tuple[TrainConfig, str]:
    """PRESET:BATCH:MODE[:gan][:split][:id][:tf] as the preset's TrainConfig on `device`, and the mode."""
    parts = case.split(":")
    preset, batch, mode = parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "eager"
    if mode not in ("eager", "compile", "cudagraphs", "auto", "autotune"):
        raise SystemExit(f"case {case}: mode must be eager, compile, cudagraphs, auto or autotune")
    unknown = set(parts[3:]) - {"gan", "split", "id", "tf"}
    if unknown:
        raise SystemExit(f"case {case}: unknown option(s) {', '.join(sorted(unknown))} (gan, split, id, tf)")
    cfg = preset_config(preset)
    loss = replace(cfg.loss, gan_weight=0.1 if "gan" in parts[3:] else 0.0,
                   identity_weight=1.0 if "id" in parts[3:] else 0.0, true_face_weight=0.1 if "tf" in parts[3:] else 0.0)
    # cudagraphs: compile with mode reduce-overhead (CUDA graph replay); auto: what `deepfake train
    # --compile` picks by default (train.resolve_compile_mode).
    compile_mode = {"cudagraphs": "reduce-overhead", "auto": "auto", "autotune": "max-autotune"}.get(mode, "default")
    cfg = replace(cfg, batch=batch, compile=mode != "eager", loss=loss, device=str(device), val_fraction=0.0,
                  compile_mode=compile_mode, batch_sides="split" not in parts[3:])
    return cfg, mode


def run_case(case: str, device: torch.device, args, faceset_a: Path, faceset_b: Path, peak: float,
             refs: dict | None = None) -> dict:
    """Our step, then the reference beside it. `refs` keeps each reference measurement of this call by
    what it depends on (preset, batch, GAN, compiled): cases that differ only in our settings (`split`,
    compile modes that all compare with the compiled reference) reuse it and say so
    (`ref_reused`)."""
    cfg, mode = case_config(case, device)
    compiled, gan, batch = cfg.compile, cfg.loss.gan_weight > 0, cfg.batch
    amp = resolve_amp(cfg.amp, device)
    out = {"case": case, "preset": cfg.preset, "batch": batch, "mode": mode, "gan": gan, "batch_sides": cfg.batch_sides,
           "identity": cfg.loss.identity_weight > 0, "true_face": cfg.loss.true_face_weight > 0,
           "amp": str(amp).replace("torch.", "") if amp else "fp32", "resolution": cfg.model.resolution}

    # Ours.
    reset_peak(device)
    full, compute, draw, (side_a, side_b), stepper, eager, mods, timer = build_ours(cfg, device, amp, faceset_a, faceset_b)
    out["params_M"] = round(sum(p.numel() for m in mods for p in m.parameters()) / 1e6, 2)
    flops = count_flops(lambda: full(0, eager))
    t0 = time.perf_counter()
    for i in range(args.warmup):
        full(i)
    sync(device)
    warm = time.perf_counter() - t0
    timer.window(1.0)  # drop the FLOP-count and warm-up steps' marks
    spans = window_times(lambda i: full(args.warmup + i), args.steps, device, min(5, args.steps))
    step_s = sum(t for _, t in spans) / args.steps
    busy = timer.window(step_s * args.steps)
    pre = [draw(i) for i in range(2)]
    compute_s = timed(lambda i: compute(stepper, *pre[i % 2], i), args.steps, device)
    out.update(
        step_ms=round(step_s * 1e3, 3),
        faces_per_s=round(2 * batch / step_s, 1),
        faces_per_s_windows=[round(2 * batch * k / t, 1) for k, t in spans],
        gflop_per_step=sig(flops / 1e9),
        tflops=sig(flops / step_s / 1e12),
        mfu_pct=sig(100 * flops / step_s / 1e12 / peak, 3),
        peak_gib=round(peak_memory_gib(device), 2),
        warmup_s=round(warm, 2),
        compile_s=round(max(0.0, warm - args.warmup * step_s), 2) if compiled else None,
        gpu_busy=round(busy.busy, 3),
        data_ms=round(busy.data_ms, 3),
        compute_over_full=round(min(1.0, compute_s / step_s), 3),
    )
    if args.profile:
        try:
            profile_steps(lambda i: full(args.warmup + args.steps + i), device, case)
        except Exception as e:  # the profile is a diagnosis: never lose the case's numbers to it
            print(f"profile of {case} failed: {type(e).__name__}: {e}", flush=True)
    del full, compute, draw, side_a, side_b, stepper, eager, mods, pre, timer

    # The reference, same process, same device.
    refs = {} if refs is None else refs
    key = (cfg.preset, batch, gan, compiled)
    if key not in refs:
        refs[key] = measure_reference(cfg, device, amp, compiled, batch, args, peak)
        out["ref_reused"] = False
    else:
        out["ref_reused"] = True
    out.update(refs[key])
    out["ratio_to_ref"] = sig(refs[key]["ref_step_ms"] / 1e3 / step_s, 3)
    return out


def measure_reference(cfg: TrainConfig, device: torch.device, amp, compiled: bool, batch: int, args, peak: float) -> dict:
    reset_peak(device)
    ref_eager, ref_step, sets, ref_mods = build_reference(cfg, device, amp, compiled, batch)
    ref_flops = count_flops(lambda: ref_eager(*sets[0]))
    for i in range(args.warmup):
        ref_step(*sets[i % 2])
    ref_s = timed(lambda i: ref_step(*sets[i % 2]), args.steps, device)
    return dict(
        # The reference runs as ANCHORS.md measured it: eager, or torch.compile in its default mode, also
        # beside a cudagraphs case (there the ratio is CUDA-graph replay against the anchors' best setting).
        ref_mode="compile" if compiled else "eager",
        ref_params_M=round(sum(p.numel() for m in ref_mods for p in m.parameters()) / 1e6, 2),
        ref_step_ms=round(ref_s * 1e3, 3),
        ref_gflop_per_step=sig(ref_flops / 1e9),
        ref_faces_per_s=round(2 * batch / ref_s, 1),
        ref_tflops=sig(ref_flops / ref_s / 1e12),
        ref_mfu_pct=sig(100 * ref_flops / ref_s / 1e12 / peak, 3),
        ref_peak_gib=round(peak_memory_gib(device), 2),
    )


# ----------------------------------------------------------------------------------------------------
# Faces.


def faceset_from_clip(root: Path, clip: Path, count: int, size: int) -> Path:
    """A faceset of centre crops of the clip's first frames (real pixels; not aligned; for speed only)."""
    import cv2
    import numpy as np

    (root / "faces").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(clip))
    records = []
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    lm = np.stack([size * (0.5 + 0.3 * np.cos(t)), size * (0.55 + 0.35 * np.sin(t))], 1).tolist()  # placeholder
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 2, size * 11 // 20), (size * 3 // 10, size * 7 // 20), 0, 0, 360, 255, -1)
    while len(records) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        side = int(min(h, w) * 0.6)
        y0, x0 = (h - side) // 2 - side // 8, (w - side) // 2
        crop = cv2.resize(bgr[max(0, y0) : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
        i = len(records)
        cv2.imwrite(str(root / "faces" / f"{i:06d}.png"), crop, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        cv2.imwrite(str(root / "masks" / f"{i:06d}.png"), mask)
        records.append(FaceRecord(
            file=f"faces/{i:06d}.png", mask=f"masks/{i:06d}.png", source=str(clip), source_id=clip.name, frame=i,
            time=None, face_index=0, bbox=[x0, y0, x0 + side, y0 + side], landmarks=lm, aligned_landmarks=lm,
            matrix=[[1, 0, 0], [0, 1, 0]], size=size, score=1.0, blur=0.0, pose={"yaw": 0.0, "pitch": 0.0, "roll": 0.0},
            embedding=[0.0] * 128,
        ))
    cap.release()
    if not records:
        raise SystemExit(f"no frames could be read from {clip}")
    write_manifest(root, new_header({"size": size, "coverage": 0.75}), records)
    return root


def train_check(spec: str, device: torch.device, steps: int, seconds: float, faceset_a: Path, faceset_b: Path,
                out_dir: Path) -> dict:
    """Run `deepfake train` itself (the function the CLI calls) for `steps` steps (at most about `seconds`)
    and report the GPU-busy fraction it measured: the share of wall time in the G and D phases, the rest
    being data, logging and saving. The first of its 8 log windows (compilation, warm-up) is left out of
    the mean, as the loop does."""
    from deepfake.train import train

    cfg, _ = case_config(spec, device)
    # The preset's validation split, as a user's run has it (not validated here: val_every 0).
    cfg = replace(cfg, val_fraction=preset_config(cfg.preset).val_fraction, steps=steps,
                  log_every=max(1, steps // 8), val_every=0, preview_every=0, save_every=10**9)
    reset_peak(device)
    result = train(cfg, faceset_a, faceset_b, out_dir, progress=False, minutes=seconds / 60)
    rows = [r for r in result.metrics if r.get("gpu_busy") is not None]
    return {"train_check": spec, "steps": result.step, "gpu_busy": round(result.gpu_busy, 3),
            "busy_per_window": [round(r["gpu_busy"], 3) for r in rows],
            "data_ms": [round(r["data_ms"], 3) for r in rows],
            "faces_per_s": [round(r["faces_per_s"], 1) for r in rows],
            "peak_gib": rows[-1].get("peak_mem_gib") if rows else None, "compile_s": result.compile_s}


def table(rows: list[dict]) -> str:
    head = ("| case | ours faces/s | ref faces/s | ours/ref | ours TFLOP/s | MFU % | ref MFU % | peak GiB (ours/ref) "
            "| compile s | GPU-busy | data ms/step |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error'][:80]} ||||||||||")
            continue
        lines.append(
            f"| {r['case']} | {r['faces_per_s']:,.1f} | {r['ref_faces_per_s']:,.1f} | {r['ratio_to_ref']:.2f} | "
            f"{r['tflops']:.4g} | {r['mfu_pct']:.1f} | {r['ref_mfu_pct']:.1f} | {r['peak_gib']:.2f}/{r['ref_peak_gib']:.2f} | "
            f"{'-' if r['compile_s'] is None else r['compile_s']} | {r['gpu_busy']:.3f} | {r['data_ms']:.2f} |"
        )
    for r in rows:
        if "faces_per_s_windows" in r:
            lines.append(f"\n{r['case']}: ours faces/s per window of the timed steps: "
                         + ", ".join(f"{w:,.1f}" for w in r["faces_per_s_windows"]))
    lines.append("\nref = the plain reference as ANCHORS.md ran it: eager beside eager cases, torch.compile (default "
                 "mode) beside the compiled cases (compile, cudagraphs, auto, autotune); measured once per preset, "
                 "batch and GAN setting in this run. A `split` case runs one encoder and one D pass per identity "
                 "(batch_sides off).")
    return "\n".join(lines)


def failure(e: Exception) -> str:
    """One line for a case that failed (its row and the table); the traceback, but for out of memory,
    goes to stderr, which the GPU session's log keeps."""
    if isinstance(e, torch.OutOfMemoryError):
        return f"out of memory: {str(e)[:200]}"
    traceback.print_exc()
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}"[:300]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=None, help=f"comma list of PRESET:BATCH:MODE[:gan][:split][:id][:tf] (GPU default {GPU_CASES})")
    p.add_argument("--steps", type=int, default=None, help="measured steps per case (default 20, quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="steps before timing (default 5, quick 1)")
    p.add_argument("--a", type=Path, default=None, help="faceset A (default: crops of d6.mp4)")
    p.add_argument("--b", type=Path, default=None, help="faceset B (default: crops of d14.mp4)")
    p.add_argument("--faces", type=int, default=None, help="frames per clip for the on-the-fly facesets (default 64, quick 8)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--quick", action="store_true", help="CPU smoke test: tiny preset, 2 steps, no speed claims")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's top kernels of our step per case")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--train-check", default=None, metavar="CASE",
                   help="after the cases, run `deepfake train` on CASE (PRESET:BATCH:MODE[:gan]) and report the "
                        "GPU-busy fraction the loop measures (default on CUDA: original64:64:auto; none: skip)")
    p.add_argument("--train-steps", type=int, default=None, help="steps of the train check (default 400, quick 24)")
    p.add_argument("--train-seconds", type=float, default=120, help="time cap of the train check (default 120)")
    p.add_argument("--cudnn-benchmark-limit", type=int, default=None, metavar="N",
                   help="how many cuDNN algorithms the autotuner tries per convolution, for ours and the reference "
                        "(torch's default 10; 0 = every one). cuDNN caches its picks for the process, so compare "
                        "settings in separate calls")
    args = p.parse_args(argv)
    if args.quick:
        args.device = "cpu" if args.device == "auto" else args.device
        args.cases = args.cases or QUICK_CASES
    args.steps = args.steps or (2 if args.quick else 20)
    args.warmup = args.warmup or (1 if args.quick else 5)
    faces = args.faces or (8 if args.quick else 64)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cases = (args.cases or (GPU_CASES if device.type == "cuda" else QUICK_CASES)).split(",")
    configure_cuda(device)  # the flags `deepfake train` sets (cudnn autotuning, TF32), for ours and the reference
    if args.cudnn_benchmark_limit is not None and device.type == "cuda":
        torch.backends.cudnn.benchmark_limit = args.cudnn_benchmark_limit

    peak, peak_what = matmul_peak(device)
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
            "torch": torch.__version__, "matmul_tflops": sig(peak), "matmul": peak_what,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
            "cudnn_benchmark_limit": torch.backends.cudnn.benchmark_limit if device.type == "cuda" else None}
    print(json.dumps(info), flush=True)

    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        res = max(preset_config(c.split(":")[0]).model.resolution for c in cases)
        fa = args.a or faceset_from_clip(Path(tmp) / "a", MEDIA / "d6.mp4", faces, res)
        fb = args.b or faceset_from_clip(Path(tmp) / "b", MEDIA / "d14.mp4", faces, res)
        rows, refs = [], {}
        for case in cases:
            try:
                row = run_case(case, device, args, fa, fb, peak, refs)
            except Exception as e:  # out of memory, or a compile error on this device: report, run the next case
                row = {"case": case, "error": failure(e)}
                reset_peak(device)
            rows.append(row)
            print(json.dumps(row), flush=True)
        check = None
        spec = args.train_check or ("original64:64:auto" if device.type == "cuda" and not args.quick else
                                    ("tiny:2:eager" if args.quick else None))
        if spec and spec != "none":
            steps = args.train_steps or (24 if args.quick else 400)
            try:
                check = train_check(spec, device, steps, args.train_seconds, fa, fb, Path(tmp) / "train_check")
            except Exception as e:
                check = {"train_check": spec, "error": failure(e)}
            print(json.dumps(check), flush=True)
    print()
    print(f"{info['device']}, torch {info['torch']}, {info['date']}; MFU against {peak_what} = {peak:.2f} TFLOP/s"
          + (" (CPU --quick smoke test: not a speed claim)" if args.quick else ""))
    print(table(rows))
    if check and "error" not in check:
        busy, data = check["busy_per_window"], sorted(check["data_ms"])
        print(f"\n`deepfake train` on {check['train_check']}: {check['steps']} steps, GPU-busy {check['gpu_busy']:.3f} "
              f"(log windows {min(busy):.3f}-{max(busy):.3f}), data section {data[len(data) // 2]:.2f} ms/step (median)")
    if args.json:
        args.json.write_text(json.dumps({"info": info, "cases": rows, "train_check": check}, indent=2) + "\n")
    return 1 if any("error" in r for r in rows) or (check and "error" in check) else 0


if __name__ == "__main__":
    sys.exit(main())
