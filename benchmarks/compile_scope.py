"""The two compile scopes of `deepfake train --compile`, side by side in one process:

- `phases`: G's and D's forward-and-loss graphs, with `backward()`, clipping and fused Adam between them
  (train.AdversarialStep, the default);
- `step`: the whole G+D step, gradients and both Adam updates included, as one graph
  (whole_step.WholeStep, `--compile-scope step`).

    python benchmarks/compile_scope.py --preset df256 --batch 32 --gan             # GPU, compile mode default
    python benchmarks/compile_scope.py --preset original64 --batch 64 --mode auto  # auto: CUDA graphs up to 128 px
    python benchmarks/compile_scope.py --quick                                     # CPU smoke test (CI), eager

Both steps start from the same weights and train on the same fixed batch of random uint8 faces (speed
does not depend on the pixels; benchmarks/train_speed.py times the real data path). They are timed in
turns, a round of `--steps` steps each, the device drained around every round, so a machine whose speed
drifts slows both alike (timing one after the other, minutes apart, cannot tell a 5 % difference on the
development box: benchmarks/RESULTS.md). Printed per scope: the first step's seconds (compilation; set
TORCHINDUCTOR_CACHE_DIR to an empty folder for a cold number), ms per step of every round, faces/s of the
median round, TFLOP/s and MFU as train_speed.py counts them (FLOPs of one eager step by FlopCounterMode,
against a matmul measured in this run: bf16 on CUDA, fp32 on the CPU; the step alone, without
train_speed.py's data section, so higher than its MFU) and the memory: on CUDA the peak allocated
during its rounds (both models stay resident, so the difference between the two peaks is what
matters), on the CPU the heap one more step holds above what was in use when it began (HeapPeak).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from deepfake.augment import no_augment
from deepfake.data import stand_in_faces
from deepfake.models import build_autoencoder, build_discriminator, preset_config
from deepfake.train import configure_cuda, make_optimizer, make_step, resolve_amp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import count_flops, failure, matmul_peak, sync  # noqa: E402  (the same FLOP count and MFU denominator)


def build(cfg, device: torch.device):
    """Both scopes' steps over copies of the same freshly initialised networks, and an eager phases step
    over a third copy, for counting FLOPs."""
    torch.manual_seed(cfg.seed)
    g = build_autoencoder(cfg.model)
    d = build_discriminator(cfg.discriminator, cfg.model.resolution) if cfg.loss.gan_weight > 0 else None
    amp = resolve_amp(cfg.amp, device)
    steps = {}
    for scope in ("phases", "step", "flops"):
        g2, d2 = copy.deepcopy(g).to(device), copy.deepcopy(d).to(device) if d is not None else None
        if cfg.channels_last and device.type == "cuda":  # as train does
            g2.to(memory_format=torch.channels_last)
            if d2 is not None:
                d2.to(memory_format=torch.channels_last)
        opt_g = make_optimizer(cfg, g2.parameters(), cfg.lr, device)
        opt_d = make_optimizer(cfg, d2.parameters(), cfg.d_lr, device) if d2 is not None else None
        sub = replace(cfg, compile_scope="phases", compile=False) if scope == "flops" else replace(cfg, compile_scope=scope)
        steps[scope] = make_step(sub, g2, d2, opt_g, opt_d, device, amp)
    return steps


def faces(cfg, device: torch.device, seed: int = 1):
    """One fixed micro-batch per identity (B, 3, R, R) uint8 -> un-augmented, as draw_step hands it over."""
    gen = torch.Generator().manual_seed(seed)
    sides = [no_augment(*stand_in_faces(cfg.batch, cfg.model.resolution, device, gen)) for _ in (0, 1)]
    if cfg.channels_last and device.type == "cuda":
        for s in sides:
            s.inputs = s.inputs.contiguous(memory_format=torch.channels_last)
    return [[s] for s in sides]


class HeapPeak:
    """The most CPU heap a step holds above what was in use when it began: glibc's `mallinfo2` (bytes
    in use, small blocks and mmapped ones) polled every 0.2 ms on a thread. The CPU has no allocator
    statistics like CUDA's peak; this is its stand-in, for comparing the two scopes' transient memory
    (activations, gradients, temporaries) on the same box. None where glibc has no mallinfo2."""

    def __init__(self):
        import ctypes
        import ctypes.util

        class _Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            self._mallinfo2 = libc.mallinfo2
            self._mallinfo2.restype = _Info
        except (OSError, AttributeError):
            self._mallinfo2 = None

    def in_use(self) -> int:
        info = self._mallinfo2()
        return info.uordblks + info.hblkhd

    def during(self, fn) -> int | None:
        """Run fn(); the peak bytes in use above the start while it ran."""
        if self._mallinfo2 is None:
            fn()
            return None
        import threading

        gc.collect()
        base = self.in_use()
        peak, done = [base], threading.Event()

        def poll():
            while not done.is_set():
                peak[0] = max(peak[0], self.in_use())
                time.sleep(0.0002)

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        try:
            fn()
        finally:
            done.set()
            t.join()
        return max(peak[0], self.in_use()) - base


def measure(cfg, device: torch.device, rounds: int, steps: int) -> list[dict]:
    a, b = faces(cfg, device)
    scopes = build(cfg, device)
    counter = scopes.pop("flops")
    flops = count_flops(lambda: counter.step(a, b, 0))  # the same arithmetic as either scope's step
    del counter
    peak_tflops, peak_what = matmul_peak(device)
    out = {k: {"scope": k, "preset": cfg.preset, "batch": cfg.batch, "gan": cfg.loss.gan_weight > 0,
               "compile": cfg.compile, "mode": getattr(s, "compile_mode", None), "device": str(device),
               "round_ms": []} for k, s in scopes.items()}
    for k, s in list(scopes.items()):  # first steps: compilation
        t = time.perf_counter()
        try:
            g_logs = s.step(a, b, 0)[0]
            sync(device)
        except Exception as e:  # a scope that fails on this device: report it, time the other
            out[k]["error"] = failure(e)
            print(f"{k}: the first step failed: {out[k]['error']}", file=sys.stderr, flush=True)
            del scopes[k]
            continue
        out[k]["first_step_s"] = round(time.perf_counter() - t, 2)
        out[k]["first_loss"] = float(g_logs[0])  # the same weights and faces: the same loss, to rounding
    if not scopes:
        raise SystemExit("both scopes failed: " + "; ".join(f"{k}: {r['error']}" for k, r in out.items()))
    peak = {k: 0 for k in scopes}
    gc.collect()
    gc.disable()  # a collection after compiling takes 0.1-0.4 s: not inside a round
    try:
        for r in range(rounds):
            for k, s in scopes.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                sync(device)
                t = time.perf_counter()
                for i in range(steps):
                    s.step(a, b, 1 + r * steps + i)
                sync(device)
                out[k]["round_ms"].append(round((time.perf_counter() - t) / steps * 1e3, 3))
                if device.type == "cuda":
                    peak[k] = max(peak[k], torch.cuda.max_memory_allocated(device))
    finally:
        gc.enable()
    if device.type == "cpu":  # one more step each, outside the timed rounds (the polling costs time)
        heap = HeapPeak()
        for k, s in scopes.items():
            grew = heap.during(lambda: s.step(a, b, 1 + rounds * steps))
            out[k]["step_heap_mib"] = None if grew is None else round(grew / 2**20, 1)
    for k, row in out.items():
        if "error" in row:
            continue
        med = statistics.median(row["round_ms"])
        row["median_ms"] = med
        row["faces_per_s"] = round(2 * cfg.batch / med * 1e3, 1)
        row["gflop_per_step"] = round(flops / 1e9, 3)
        row["tflops"] = round(flops / med / 1e9, 4)
        row["mfu_pct"] = round(100 * flops / med / 1e9 / peak_tflops, 2)
        row["matmul_tflops"], row["matmul"] = round(peak_tflops, 3), peak_what
        row["peak_gib"] = round(peak[k] / 2**30, 2) if device.type == "cuda" else None
    if len(scopes) == 2:
        out["step"]["step_over_phases"] = round(out["phases"]["median_ms"] / out["step"]["median_ms"], 3)
    return [out["phases"], out["step"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="original64")
    p.add_argument("--batch", type=int, default=None, help="faces per identity per step (default: the preset's)")
    p.add_argument("--gan", action="store_true", help="discriminator on (gan_weight 0.1)")
    p.add_argument("--mode", default="default", help="torch.compile mode: default | auto | reduce-overhead | max-autotune")
    p.add_argument("--no-compile", action="store_true", help="run both scopes eager")
    p.add_argument("--device", default="auto")
    p.add_argument("--rounds", type=int, default=None, help="rounds of timing per scope, in turns (default 5, quick 2)")
    p.add_argument("--steps", type=int, default=None, help="steps per round (default 10, quick 2)")
    p.add_argument("--quick", action="store_true", help="CPU smoke test: tiny preset, batch 2, eager, no claims")
    p.add_argument("--json", type=Path, help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.batch, args.no_compile = "tiny", args.batch or 2, True
        args.device = "cpu" if args.device == "auto" else args.device
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    configure_cuda(device)
    cfg = preset_config(args.preset)
    cfg = replace(cfg, batch=args.batch or cfg.batch, device=str(device), compile=not args.no_compile,
                  compile_mode=args.mode, loss=replace(cfg.loss, gan_weight=0.1 if args.gan else 0.0))
    rows = measure(cfg, device, args.rounds or (2 if args.quick else 5), args.steps or (2 if args.quick else 10))
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "threads": torch.get_num_threads()}
    print(json.dumps(info))
    for row in rows:
        print(json.dumps(row), flush=True)
    ph, st = rows
    print(f"\n{cfg.preset} b{cfg.batch}{' GAN' if args.gan else ''}, {'eager' if args.no_compile else 'compile ' + args.mode}, "
          f"{info['device']}, torch {info['torch']}" + (" (CPU --quick smoke test: not a speed claim)" if args.quick else ""))
    cpu = device.type == "cpu"
    print(f"| scope | first step s | ms/step per round | faces/s (median round) | TFLOP/s | MFU % | "
          f"{'heap MiB held by a step' if cpu else 'peak GiB'} |\n|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['scope']} | failed: {r['error'][:200]} | | | | | |")
            continue
        mem = r.get("step_heap_mib") if cpu else r["peak_gib"]
        print(f"| {r['scope']} | {r['first_step_s']} | {', '.join(f'{x:.1f}' for x in r['round_ms'])} | "
              f"{r['faces_per_s']:,.1f} | {r['tflops']:.4g} | {r['mfu_pct']:.1f} | {'-' if mem is None else mem} |")
    ok = ph if "error" not in ph else st
    print(f"MFU against {ok['matmul']} = {ok['matmul_tflops']} TFLOP/s, measured in this run")
    if "step_over_phases" in st:
        print(f"\nstep / phases speed: {st['step_over_phases']:.3f} (median rounds; > 1: the whole step is faster)")
    if args.json:
        args.json.write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
