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
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared harness and this benchmark's parts

import torch  # noqa: E402
from harness import (MEDIA, count_flops, matmul_peak, peak_memory_gib, reset_peak, sig, sync, timed,  # noqa: E402
                     window_times)
from train_speed_kernels import kernel_breakdown, profile_steps, top_kernels_by_family  # noqa: E402,F401
from train_speed_reference import measure_reference  # noqa: E402

from deepfake.config import TrainConfig  # noqa: E402
from deepfake.devices import configure_cuda, resolve_amp  # noqa: E402
from deepfake.faceset import FaceRecord, new_header, write_manifest  # noqa: E402
from deepfake.models import preset_config  # noqa: E402
from deepfake.train.augment import augment_kernel  # noqa: E402
from deepfake.train.batches import draw_step, load_side  # noqa: E402
from deepfake.train.build import build  # noqa: E402
from deepfake.train.data_stream import DataStream  # noqa: E402
from deepfake.train.metrics import TRAIN_KEYS  # noqa: E402
from deepfake.train.step import AdversarialStep  # noqa: E402
from deepfake.train.step_timer import StepTimer  # noqa: E402

GPU_CASES = "original64:64:eager,original64:64:compile,original64:64:cudagraphs,df256:32:eager:gan,df256:32:compile:gan"
QUICK_CASES = "tiny:2:eager:gan"


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
