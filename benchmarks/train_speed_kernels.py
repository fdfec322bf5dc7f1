"""Where a training step's device time goes: kernels grouped into families (convolutions by pass, matrix
products, Inductor's kernels, the optimizer, the warp ...), each family's top kernels, and the profiler's
per-op table (`train_speed.py --profile`)."""

from __future__ import annotations

import json

import torch
from harness import sync


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
