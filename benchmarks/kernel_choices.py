"""Kernel-level choices in the training step, each timed against what it replaced, in the same run.

    python benchmarks/kernel_choices.py            # CUDA: original64 and df256 shapes, bf16, channels_last
    python benchmarks/kernel_choices.py --quick    # CPU smoke test (CI): small shapes, no speed claims

1. Decoder heads: to_rgb (3 outputs) and to_mask (1 output), both 5x5, forward + backward, run
   - `separate`: two convolutions, as the decoder ran them before;
   - `stacked4`: one convolution of the stacked weights (4 outputs), what `Decoder._heads` does;
   - `stacked8`: the same padded with zero filters to 8 outputs (slower than 4 on an H200);
   - `shift-add` (eager and compiled): one matrix product to 100 (+4 zero) channels per pixel and 25
     shifted sums (`deepfake.models.autoencoder.shift_add_conv`), what a compiled decoder runs with
     `model.head_conv=shift_add`.
   Each variant's output and gradients are also checked against the heads in float64 on the CPU.
2. Warp-grid upsampling, (B, 2, 5, 5) offsets to the face size:
   - `interpolate`: F.interpolate(mode="bicubic"), what eager augmentation runs;
   - `separable`: `deepfake.augment.upsample_bicubic`, eager and compiled (compiled augmentation uses it).

Prints one JSON line per measurement (ms per call, the mean of `--iters` calls after warm-up) and a
table with each variant's speed-up over the old way and its error against float64.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from deepfake.augment import upsample_bicubic
from deepfake.models.autoencoder import stacked_conv

# (name, batch per decoder, decoder output channels, resolution), as the presets have them.
HEAD_SHAPES = {"original64": (64, 64, 64), "df256": (32, 128, 256)}
QUICK_HEAD_SHAPES = {"tiny": (2, 16, 64)}
WARP_SHAPES = {"original64": (64, 64), "df256": (32, 256)}  # (batch per side, resolution)
QUICK_WARP_SHAPES = {"tiny": (2, 64)}


def sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, iters: int, device: torch.device, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters * 1e3


def head_variants(batch: int, channels: int, res: int, device: torch.device, amp: torch.dtype | None, compile_: bool):
    """Forward + backward of the decoder heads several ways, on the same input and weights. Each variant
    returns (output, gradients of the input and of both weights) for the accuracy check."""
    torch.manual_seed(0)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    x = torch.randn(batch, channels, res, res, device=device).contiguous(memory_format=fmt).requires_grad_(True)
    rgb, mask = (torch.nn.Conv2d(channels, n, 5, 1, 2).to(device, memory_format=fmt) for n in (3, 1))
    params = [x, rgb.weight, mask.weight]

    def autocast():
        return torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None)

    def grads(y):
        return y, torch.autograd.grad(y.float().square().sum(), params)

    def separate():
        with autocast():
            y = torch.cat([rgb(x), mask(x)], dim=1)
        return grads(y)

    def stacked4():
        with autocast():
            y = stacked_conv(x, [rgb, mask])  # the decoder's own code (Decoder._heads)
        return grads(y)

    def stacked8():
        w, b = torch.cat([rgb.weight, mask.weight]), torch.cat([rgb.bias, mask.bias])
        w, b = torch.cat([w, w.new_zeros(4, *w.shape[1:])]), torch.cat([b, b.new_zeros(4)])
        with autocast():
            y = F.conv2d(x, w.contiguous(memory_format=fmt), b, padding=2)[:, :4]
        return grads(y)

    def shift_add(fn):
        def run():
            with autocast():
                y = fn(x, [rgb, mask], True)
            return grads(y)
        return run

    variants = {"separate": separate, "stacked4 (the decoder's)": stacked4, "stacked8": stacked8,
                "shift-add": shift_add(stacked_conv)}
    if compile_:
        # What a compiled decoder with model.head_conv=shift_add runs.
        variants["shift-add compiled"] = shift_add(torch.compile(stacked_conv, dynamic=False))

    def reference():
        """The heads one by one in float64 on the CPU."""
        x64, wr, wm = (t.detach().double().cpu().requires_grad_(True) for t in params)
        y = torch.cat([F.conv2d(x64, wr, rgb.bias.detach().double().cpu(), padding=2),
                       F.conv2d(x64, wm, mask.bias.detach().double().cpu(), padding=2)], dim=1)
        return y, torch.autograd.grad(y.square().sum(), [x64, wr, wm])

    return variants, reference


def worst_error(result, reference) -> float:
    """The largest error of the output and of each gradient, relative to that tensor's largest value."""
    (y, gs), (ry, rgs) = result, reference
    return max(float((a.detach().double().cpu() - r).abs().max() / r.abs().max()) for a, r in zip([y, *gs], [ry, *rgs]))


def warp_variants(batch: int, res: int, device: torch.device):
    offsets = torch.randn(batch, 2, 5, 5, device=device) * 0.05
    compiled = torch.compile(upsample_bicubic, dynamic=False)
    return {
        "interpolate": lambda: F.interpolate(offsets, size=(res, res), mode="bicubic", align_corners=True),
        "separable": lambda: upsample_bicubic(offsets, res),
        "separable compiled": lambda: compiled(offsets, res),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU smoke test: small shapes, few calls, no speed claims")
    p.add_argument("--iters", type=int, default=None, help="timed calls per variant (default 50, quick 2)")
    p.add_argument("--no-compile", action="store_true", help="skip the compiled warp variant")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    iters = args.iters or (2 if args.quick else 50)
    amp = torch.bfloat16 if device.type == "cuda" else None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as `deepfake train` sets it (train.configure_cuda)
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "amp": str(amp).replace("torch.", "") if amp else "fp32",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick}
    print(json.dumps(info), flush=True)
    rows = []
    for name, shape in (QUICK_HEAD_SHAPES if args.quick else HEAD_SHAPES).items():
        variants, reference = head_variants(*shape, device, amp, not args.no_compile)
        ref = reference()
        for variant, fn in variants.items():
            rows.append({"what": "decoder heads fwd+bwd", "shape": name, "variant": variant,
                         "ms": round(time_ms(fn, iters, device), 4),
                         "max_rel_error_vs_float64": sig(worst_error(fn(), ref))})
            print(json.dumps(rows[-1]), flush=True)
    for name, shape in (QUICK_WARP_SHAPES if args.quick else WARP_SHAPES).items():
        for variant, fn in warp_variants(*shape, device).items():
            if args.no_compile and "compiled" in variant:
                continue
            rows.append({"what": "warp upsampling", "shape": name, "variant": variant,
                         "ms": round(time_ms(fn, iters, device), 4)})
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(f"{info['device']}, torch {info['torch']}, {info['amp']}, {info['date']}"
          + (" (CPU --quick smoke test: not a speed claim)" if args.quick else ""))
    print("| what | shape | variant | ms per call | speed-up over the old way | max error vs float64 |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        old = next(o["ms"] for o in rows if o["what"] == r["what"] and o["shape"] == r["shape"])
        err = r.get("max_rel_error_vs_float64")
        print(f"| {r['what']} | {r['shape']} | {r['variant']} | {r['ms']:.4f} | {old / r['ms']:.2f}x | "
              f"{'-' if err is None else f'{err:.2g}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
