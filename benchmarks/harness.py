"""What every benchmark shares: where the repository and the shared media are, and how a step is timed
on a device (drained before and after, the garbage collector off), its FLOPs counted, the matmul peak
measured and peak memory read. Benchmarks put this folder on sys.path and import it by name."""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("DEEPFAKE_MEDIA", ROOT.parent / "shared" / "media"))
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from deepfake.train.step_timer import elapsed_ms, mark  # noqa: E402


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
