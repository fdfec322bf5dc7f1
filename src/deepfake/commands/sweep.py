"""`deepfake sweep --a FACESET_A --b FACESET_B --grid SPEC -o SWEEP_DIR`: parse, then call the library."""

from __future__ import annotations

import argparse
import sys

from deepfake.config import SweepConfig
from deepfake.config.options import add_options, config_from_args

HELP = "train and evaluate a grid of config variants against a baseline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, metavar="FACESET_A")
    p.add_argument("--b", required=True, metavar="FACESET_B")
    p.add_argument("--grid", required=True, nargs="+", metavar="SPEC",
                   help="a YAML/JSON grid file, or inline key=v1,v2 pairs (e.g. activation=relu,gelu latent_dims=64,128)")
    p.add_argument("-o", "--output", required=True, metavar="SWEEP_DIR", help="results folder (rerun to resume)")
    add_options(p, SweepConfig, exclude=("steps", "minutes"))
    add_options(p.add_mutually_exclusive_group(), SweepConfig, only=("steps", "minutes"))
    p.add_argument("--dry-run", action="store_true", help="print the variants and exit")


def run(args: argparse.Namespace) -> int:
    from deepfake.config_io import replace_path
    from deepfake.sweep.run import expand_grid, parse_grid, resolve_base, run_sweep

    cfg = config_from_args(SweepConfig, args)
    cfg = replace_path(cfg, "evaluate.device", cfg.device)
    base = resolve_base(cfg)
    grid = parse_grid(args.grid, base)
    if args.dry_run:
        for v in expand_grid(grid, base):  # checks every variant's config
            print(f"{v.name}{'  (baseline)' if v.baseline else ''}: {v.overrides or 'base config'}")
        return 0
    try:
        result = run_sweep(args.a, args.b, grid, args.output, cfg, base=base)
    except KeyboardInterrupt:
        print(f"sweep stopped: run the same command again to resume it ({args.output} keeps every finished "
              "variant and the last save of the one in training)", file=sys.stderr)
        raise
    print(f"{len(result.ran)} trained, {len(result.skipped)} already done, {len(result.failed)} failed")
    for name in result.failed:
        print(f"  failed: {name}")
    print(f"results: {args.output}/results.md")
    return 1 if result.failed and not any(r["status"] == "done" for r in result.rows) else 0
