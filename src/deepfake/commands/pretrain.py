"""`deepfake pretrain FACESET... -o MODEL_DIR`: parse, resolve the config (DFL's pretrain rules on the
preset), call train's loop with both sides drawing from the pool."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepfake.errors import DeepfakeError

HELP = "pretrain one autoencoder on many people's facesets, for train --from"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deepfake.config import PretrainRun, TrainConfig
    from deepfake.config.options import add_options

    p.add_argument("facesets", nargs="+", metavar="FACESET",
                   help="facesets of any number of people (not the pair you will train): both sides draw from all")
    p.add_argument("-o", "--out", required=True, metavar="MODEL_DIR", help="model folder; an existing one is resumed")
    add_options(p, PretrainRun)
    p.add_argument("--config", default=None, metavar="JSON", help="a full TrainConfig JSON file")
    add_options(p, TrainConfig, overrides=True, default_text="")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field after the pretrain rules, e.g. --set data.uniform_yaw=false")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config, then exit (on a folder that "
                   "holds a run, after checking the resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.epilog = ("DeepFaceLab's pretrain rules are applied to the preset: both sides draw from every faceset, random "
                "warp off, flips on, no GAN, no learning-rate dropout, uniform yaw. An option without a default "
                "above keeps the preset's value (or the resumed folder's).")


def resolve_config(args: argparse.Namespace):
    """Train's starting config (the resumed folder's own / --config / --preset / original64) with DFL's
    pretrain rules (a resumed folder's has them), then the flags given, then each --set."""
    from deepfake.commands.train import apply_overrides, command_flags, starting_config
    from deepfake.train.pretrain import pretrain_config

    return apply_overrides(starting_config(args, pretrain_config), command_flags(args), args.set)


def run(args: argparse.Namespace) -> int:
    from deepfake.commands.train import step_limit, summary
    from deepfake.config import PretrainRun
    from deepfake.config.options import config_from_args
    from deepfake.config_io import to_dict
    from deepfake.train.checks import validate
    from deepfake.train.pretrain import pretrain
    from deepfake.train.resume import describe, holds_run

    config_from_args(PretrainRun, args)  # --minutes in its range
    cfg = resolve_config(args)
    for folder in args.facesets:
        if not (Path(folder) / "faces.jsonl").is_file():
            raise DeepfakeError(f"{folder}: not a faceset (no faces.jsonl; make one with deepfake extract)")
    if args.dry_run:
        validate(cfg)  # a real run is checked where train() enters
        would = describe(Path(args.out), cfg, pooled=True) if holds_run(args.out) else None
        print(json.dumps(to_dict(cfg), indent=2))
        if would:
            print(would)
        return 0
    result = pretrain(cfg, args.facesets, args.out, progress=not args.no_progress, minutes=args.minutes,
                      step_limit=step_limit(args))
    if not result.main:
        return 130 if result.stopped_by == "SIGINT" else 0
    print(summary(result, cfg.steps, args.minutes))
    if result.interrupted:
        print(f"{result.stopped_by}: saved at step {result.step}; run the same command again to resume")
    else:
        print(f"start a pair from it: deepfake train --a A --b B -o MODEL_DIR --from {args.out}")
    return 130 if result.stopped_by == "SIGINT" else 0
