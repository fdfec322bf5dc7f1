"""Training memory per preset: the peak tensor bytes of one `deepfake train` step, with the decoder's
activation checkpointing off and on, and which cards it fits.

    python benchmarks/train_memory.py                                  # original64, df128, df256, liae256
    python benchmarks/train_memory.py --presets df256 --batches 4,8,16,32,64 --amp bf16 --gan
    python benchmarks/train_memory.py --quick                          # CI smoke test: tiny preset
    python benchmarks/train_memory.py --real --presets df128 --batches 4   # real steps, to cross-check

Each case is deepfake.train.memory.measure_train_step: the real training step (build_autoencoder, the
discriminator when the preset's gan_weight > 0 or --gan, fused Adam, AdversarialStep, augmentation), its
second step measured (Adam's state exists), under FakeTensorMode by default: no compute, so any size runs
in seconds on a CPU, and the counted bytes are those of a real step (--real runs real steps and prints
both). amp bf16 = CPU bf16 autocast, the estimate for a GPU's `--amp auto`; off = fp32.

The baseline of the comparison is the same step with checkpoint_decoder off, measured in the same run.
What is counted is tensor bytes. A GPU needs more: the CUDA context and cuDNN workspaces (about 1 GiB
is left for them below), and the caching allocator's fragmentation; confirm on a card with
`benchmarks/train_speed.py`, which reports torch.cuda.max_memory_allocated per case.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from deepfake.train.memory_tracker import gib
from deepfake.models import preset_config
from deepfake.train.memory import measure_train_step

PRESETS = "original64,df128,df256,liae256"
BATCHES = "8,16,32,64"
CARDS_GIB = (8, 12)  # "8 GB" and "12 GB" cards hold 8 and 12 GiB
HEADROOM_GIB = 1.0  # CUDA context (~0.3-0.5 GiB) + cuDNN workspace + allocator slack


def fits(peak: int, card: int) -> bool:
    return gib(peak) + HEADROOM_GIB <= card


def verdict(off: int, on: int, card: int) -> str:
    if fits(off, card):
        return "yes"
    return "ckpt" if fits(on, card) else "no"


def measure(preset: str, batch: int, amp: str, gan: bool, real: bool) -> dict:
    cfg = preset_config(preset)
    if gan:
        cfg = replace(cfg, loss=replace(cfg.loss, gan_weight=cfg.loss.gan_weight or 0.1))
    row = {"preset": preset, "batch": batch, "amp": amp}
    for ckpt in (False, True):
        c = replace(cfg, model=replace(cfg.model, checkpoint_decoder=ckpt))
        t0 = time.perf_counter()
        rep = measure_train_step(c, batch, amp=amp, fake=True)
        key = "on" if ckpt else "off"
        row[key] = asdict(rep)
        row[f"{key}_s"] = round(time.perf_counter() - t0, 2)
        if real:
            t0 = time.perf_counter()
            row[f"{key}_real"] = asdict(measure_train_step(c, batch, amp=amp, fake=False))
            row[f"{key}_real_s"] = round(time.perf_counter() - t0, 2)
    row["gan"] = row["off"]["gan"]
    return row


def table(rows: list[dict]) -> str:
    head = ("| preset | batch | amp | GAN | params M | weights + Adam GiB | activations GiB ckpt off / on "
            "| peak GiB ckpt off | peak GiB ckpt on | saved | 8 GB card | 12 GB card |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        off, on = r["off"], r["on"]
        lines.append(
            f"| {r['preset']} | {r['batch']} | {r['amp']} | {'on' if r['gan'] else 'off'} | {off['params'] / 1e6:.1f} | "
            f"{gib(off['weights'] + off['optimizer']):.2f} | {gib(off['activations']):.2f} / {gib(on['activations']):.2f} | "
            f"{gib(off['peak']):.2f} | {gib(on['peak']):.2f} | {1 - on['peak'] / off['peak']:.0%} | "
            f"{verdict(off['peak'], on['peak'], CARDS_GIB[0])} | {verdict(off['peak'], on['peak'], CARDS_GIB[1])} |"
        )
    return "\n".join(lines)


def per_face(rows: list[dict]) -> list[str]:
    """Peak = fixed + per-face x batch, fitted through each preset's smallest and largest batch."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["preset"], r["amp"]), []).append(r)
    for (preset, amp), rs in groups.items():
        if len(rs) < 2:
            continue
        lo, hi = min(rs, key=lambda r: r["batch"]), max(rs, key=lambda r: r["batch"])
        parts = []
        for key in ("off", "on"):
            slope = (hi[key]["peak"] - lo[key]["peak"]) / (hi["batch"] - lo["batch"])
            parts.append(f"ckpt {key}: {gib(lo[key]['peak'] - slope * lo['batch']):.2f} GiB + "
                         f"{slope / 2**20:.0f} MiB/face")
        out.append(f"- {preset} {amp}: " + "; ".join(parts))
    return out


def notes(rows: list[dict]) -> list[str]:
    res = sorted({preset_config(p).model.resolution for p in {r["preset"] for r in rows}})
    cache = ", ".join(f"{gib(1000 * 4 * r * r):.2f} GiB at {r} px" for r in res)
    return [
        f"Fits = peak + {HEADROOM_GIB:.0f} GiB headroom (CUDA context, cuDNN workspace, allocator slack) <= card. "
        "yes: fits without checkpointing; ckpt: only with model.checkpoint_decoder; no: neither.",
        "Counted: tensor bytes of one step (weights, Adam state, gradients, the batch, saved activations, "
        "temporaries). Not counted: the CUDA caching allocator's fragmentation and kernel workspaces; "
        "confirm on a GPU with benchmarks/train_speed.py (torch.cuda.max_memory_allocated).",
        f"Also on the card during `deepfake train`: the face cache, 1000 faces per identity = {cache} "
        "(x2 identities; train streams it from pinned host memory when it exceeds a quarter of the card), "
        "and the fixed validation faces (64 per identity, float: 2 x 64 x 4 x R^2 x 4 bytes).",
        "amp bf16 is CPU bf16 autocast, the estimate of a GPU's bf16 autocast (--amp auto).",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=PRESETS, help=f"comma list (default {PRESETS})")
    p.add_argument("--batches", default=BATCHES, help=f"faces per identity, comma list (default {BATCHES})")
    p.add_argument("--amp", default="bf16,off", help="comma list of bf16 | off (default both)")
    p.add_argument("--gan", action="store_true", help="discriminator on (gan_weight 0.1 where the preset has 0)")
    p.add_argument("--real", action="store_true", help="also run each case for real on the CPU and compare")
    p.add_argument("--quick", action="store_true", help="CI smoke test: tiny preset, batches 2 and 4, real cross-check")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.presets, args.batches, args.amp, args.real = "tiny", "2,4", "off", True
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = {"date": when, "torch": torch.__version__, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "quick": args.quick, "headroom_gib": HEADROOM_GIB}
    print(f"# training memory, {when}, torch {info['torch']}, {info['machine']}"
          f"{', fake tensors (no compute)' if not args.real else ', fake and real steps'}")
    rows = []
    for preset in args.presets.split(","):
        for amp in args.amp.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                row = measure(preset, batch, amp, args.gan, args.real)
                rows.append(row)
                msg = {"case": f"{preset}:{batch}:{amp}", "gan": row["gan"],
                       "peak_gib_off": round(gib(row["off"]["peak"]), 3), "peak_gib_on": round(gib(row["on"]["peak"]), 3),
                       "seconds": round(row["off_s"] + row["on_s"], 2)}
                if args.real:
                    msg["real_equals_fake"] = all(row[f"{k}_real"]["peak"] == row[k]["peak"] for k in ("off", "on"))
                print(json.dumps(msg), flush=True)
    print()
    print(table(rows))
    print()
    fitted = per_face(rows)
    if fitted:
        print("Peak as fixed + per-face bytes (a straight line through the smallest and largest batch measured):")
        print("\n".join(fitted))
        print()
    print("\n".join(f"- {n}" for n in notes(rows)))
    mismatch = [r for r in rows if args.real and any(r[f"{k}_real"]["peak"] != r[k]["peak"] for k in ("off", "on"))]
    if mismatch:
        print(f"warning: fake and real peaks differ in {len(mismatch)} case(s)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "cases": rows}, indent=1))
    return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
