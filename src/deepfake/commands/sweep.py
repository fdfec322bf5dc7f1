"""`deepfake sweep --a FACESET_A --b FACESET_B --grid SPEC -o SWEEP_DIR`: parse, then call the library."""

from __future__ import annotations

import argparse

from deepfake.config import SweepConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deepfake.sweep.run import RANK_METRICS

    d = SweepConfig()
    p.add_argument("--a", required=True, metavar="FACESET_A")
    p.add_argument("--b", required=True, metavar="FACESET_B")
    p.add_argument("--grid", required=True, nargs="+", metavar="SPEC",
                   help="a YAML/JSON grid file, or inline key=v1,v2 pairs (e.g. activation=relu,gelu latent_dims=64,128)")
    p.add_argument("-o", "--output", required=True, metavar="SWEEP_DIR", help="results folder (rerun to resume)")
    p.add_argument("--base", default=d.base, help="preset name or TrainConfig JSON the variants start from")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=d.steps, help="training steps per variant")
    budget.add_argument("--minutes", type=float, default=d.minutes, help="wall-clock minutes per variant instead of steps")
    p.add_argument("--rank-by", default=d.rank_by, choices=list(RANK_METRICS), help="metric the table is sorted by")
    p.add_argument("--seed", type=int, default=d.seed, help="same seed (and data split) for every variant")
    p.add_argument("--device", default=d.device)
    p.add_argument("--eval-faces", type=int, default=d.evaluate.max_faces, help="held-out faces per side to evaluate")
    p.add_argument("--dry-run", action="store_true", help="print the variants and exit")


def run(args: argparse.Namespace) -> int:
    from deepfake.config_io import replace_path
    from deepfake.sweep.run import apply_overrides, expand_grid, parse_grid, resolve_base, run_sweep

    cfg = SweepConfig(base=args.base, steps=args.steps, minutes=args.minutes, rank_by=args.rank_by,
                      seed=args.seed, device=args.device)
    cfg = replace_path(cfg, "evaluate.max_faces", args.eval_faces)
    cfg = replace_path(cfg, "evaluate.device", args.device)
    base = resolve_base(cfg)
    grid = parse_grid(args.grid, base)
    if args.dry_run:
        for v in expand_grid(grid, base):
            apply_overrides(base, v.overrides)
            print(f"{v.name}{'  (baseline)' if v.baseline else ''}: {v.overrides or 'base config'}")
        return 0
    result = run_sweep(args.a, args.b, grid, args.output, cfg, base=base)
    print(f"{len(result.ran)} trained, {len(result.skipped)} already done, {len(result.failed)} failed")
    for name in result.failed:
        print(f"  failed: {name}")
    print(f"results: {args.output}/results.md")
    return 1 if result.failed and not any(r["status"] == "done" for r in result.rows) else 0
