"""Quality at a fixed CPU budget: two presets trained for the same minutes on the same pair, then
measured by `deepfake evaluate` on the same held-out faces, side by side.

    python benchmarks/quality.py [--presets tiny,quick] [--minutes 4] [--a FACESET --b FACESET]
                                 [--work DIR] [--eval-faces 32] [--device cpu] [--json FILE] [--quick]

Without --a/--b it extracts d6.mp4 (A) and d14.mp4 (B) from ../shared/media at 256 px into --work.
The first preset is the baseline; every other is printed with its difference from it. The targets
(for `quick` against `tiny` at 4 minutes on 2 cores): masked SSIM higher by >= 0.03, swap verification
higher, and the swaps' sharpness ratio closer to 1 (the real target faces'). Each line of the verdict
says whether the run met it. `--quick` is a smoke run (a few seconds per preset, 8 faces).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared harness beside this file
from harness import MEDIA  # noqa: E402

# (summary key, label, higher is better; None: closer to 1 is better)
METRICS = [
    ("ssim", "masked SSIM (reconstruction)", True),
    ("psnr", "PSNR (dB)", True),
    ("verification", "swap verification", True),
    ("retrieval", "swap retrieval", True),
    ("id_dist_source", "distance to source", False),
    ("sharpness_ratio", "swap sharpness ratio", None),
    ("recon_sharpness_ratio", "recon sharpness ratio", None),
    ("landmark_error", "landmark error", False),
    ("pose_error", "pose error (deg)", False),
    ("val_loss", "validation loss", False),
    ("steps", "steps", True),
    ("faces_per_s", "faces/s", True),
    ("params", "parameters", None),
]


def facesets(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    if args.a and args.b:
        return Path(args.a), Path(args.b)
    from deepfake.config import ExtractConfig
    from deepfake.extract import extract

    out = []
    for clip in ("d6.mp4", "d14.mp4"):
        folder = work / "facesets" / Path(clip).stem
        if not (folder / "manifest.json").exists():
            frames = 60 if args.quick else 0
            extract([MEDIA / clip], folder, ExtractConfig(size=256, frames=frames), progress=False)
        out.append(folder)
    return out[0], out[1]


def train_and_measure(preset: str, a: Path, b: Path, work: Path, args: argparse.Namespace) -> dict:
    from deepfake.config import EvaluateConfig
    from deepfake.evaluate.runner import evaluate_model
    from deepfake.models.presets import preset_config
    from deepfake.train import train

    model_dir = work / "models" / preset
    cfg = dataclasses.replace(preset_config(preset), device=args.device, seed=args.seed, steps=10**9)
    t = time.perf_counter()
    train(cfg, a, b, model_dir, progress=False, minutes=args.minutes, step_limit=False)
    train_s = time.perf_counter() - t
    ecfg = EvaluateConfig(device=args.device, max_faces=args.eval_faces)
    result = evaluate_model(model_dir, a, b, work / "reports" / preset, ecfg, plots=not args.quick)
    return result["summary"] | {"train_seconds": train_s}


def better(key: str, higher: bool | None, base: float, other: float) -> str:
    if higher is None:
        if key == "params":
            return ""
        return "closer" if abs(other - 1) < abs(base - 1) else "further"
    if other == base:
        return "same"
    return "better" if (other > base) == higher else "worse"


def verdict(base: dict, other: dict) -> list[tuple[str, bool]]:
    return [
        ("masked SSIM higher by >= 0.03", other["ssim"] - base["ssim"] >= 0.03),
        ("swap verification higher", other["verification"] > base["verification"]),
        ("swap sharpness closer to the real faces'",
         abs(other["sharpness_ratio"] - 1) < abs(base["sharpness_ratio"] - 1)),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="tiny,quick", help="comma-separated; the first is the baseline")
    p.add_argument("--minutes", type=float, default=4.0, help="training budget per preset (wall clock)")
    p.add_argument("--a")
    p.add_argument("--b")
    p.add_argument("--work", help="folder for facesets, models and reports (default: a temp folder)")
    p.add_argument("--eval-faces", type=int, default=32, help="held-out faces per side")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--quick", action="store_true", help="smoke run: 0.1 min per preset, 8 faces")
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.eval_faces = min(args.minutes, 0.1), 8
    if not (args.a and args.b) and not MEDIA.exists():
        print(f"quality: shared media not found at {MEDIA} (set DEEPFAKE_MEDIA or pass --a/--b)", file=sys.stderr)
        return 2
    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="deepfake-quality-"))
    a, b = facesets(args, work)
    import torch

    print(f"quality: {', '.join(presets)} for {args.minutes:g} min each on {args.device} "
          f"(torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads); A={a}, B={b}")
    results = {}
    for name in presets:
        print(f"quality: training {name} ...", flush=True)
        results[name] = train_and_measure(name, a, b, work, args)
    base_name = presets[0]
    base = results[base_name]
    header = ["metric", base_name] + [x for n in presets[1:] for x in (n, f"{n} - {base_name}", "")]
    rows = []
    for key, label, higher in METRICS:
        row = [label, f"{base[key]:.4g}"]
        for n in presets[1:]:
            v = results[n][key]
            row += [f"{v:.4g}", f"{v - base[key]:+.4g}", better(key, higher, base[key], v)]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    out = {"minutes": args.minutes, "device": args.device, "presets": presets, "results": results, "verdict": {}}
    for n in presets[1:]:
        print(f"\ntargets, {n} against {base_name}:")
        out["verdict"][n] = {}
        for what, ok in verdict(base, results[n]):
            print(f"  {'met' if ok else 'NOT met'}: {what}")
            out["verdict"][n][what] = ok
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
