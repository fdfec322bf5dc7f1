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
    p.add_argument("--dry-run", action="store_true", help="print the resolved config, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.epilog = ("DeepFaceLab's pretrain rules are applied to the preset: both sides draw from every faceset, random "
                "warp off, flips on, no GAN, no learning-rate dropout, uniform yaw. An option without a default "
                "above keeps the preset's value (or the resumed folder's).")


def resolve_config(args: argparse.Namespace):
    """Train's starting config (--config / --preset / the folder's own / original64), then DFL's pretrain
    rules, then the flags given, then each --set."""
    from deepfake.commands.train import apply_overrides, starting_config
    from deepfake.config import TrainConfig
    from deepfake.config.options import given_values
    from deepfake.train.pretrain import pretrain_config

    return apply_overrides(pretrain_config(starting_config(args)), given_values(TrainConfig, args), args.set)


def run(args: argparse.Namespace) -> int:
    from deepfake.commands.train import step_limit, summary
    from deepfake.config import PretrainRun
    from deepfake.config.options import config_from_args
    from deepfake.config_io import to_dict
    from deepfake.train.checks import validate
    from deepfake.train.pretrain import pretrain

    config_from_args(PretrainRun, args)  # --minutes in its range
    cfg = resolve_config(args)
    for folder in args.facesets:
        if not (Path(folder) / "faces.jsonl").is_file():
            raise DeepfakeError(f"{folder}: not a faceset (no faces.jsonl; make one with deepfake extract)")
    if args.dry_run:
        validate(cfg)  # a real run is checked where train() enters
        print(json.dumps(to_dict(cfg), indent=2))
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
