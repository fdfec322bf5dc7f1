"""`deepfake pretrain FACESET... -o MODEL_DIR`: parse, resolve the config (DFL's pretrain rules on the
preset), call train's loop with both sides drawing from the pool."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepfake.errors import DeepfakeError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("facesets", nargs="+", metavar="FACESET",
                   help="facesets of any number of people (not the pair you will train): both sides draw from all")
    p.add_argument("-o", "--out", required=True, metavar="MODEL_DIR", help="model folder; an existing one is resumed")
    p.add_argument("--preset", default=None, help="tiny | quick | original64 | df128 | df256 | liae256: the network "
                   "the pairs trained from it will use (default: the folder's own config when resuming, else original64)")
    p.add_argument("--config", default=None, metavar="JSON", help="a full TrainConfig JSON file")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--steps", type=int, default=None, help="train until this step (default: the preset's)")
    limit.add_argument("--minutes", type=float, default=None,
                       help="wall-clock budget for this run: stop and save when it is spent")
    p.add_argument("--batch", type=int, default=None, help="faces per side per step")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps")
    p.add_argument("--preview-every", type=int, default=None, help="preview grid every N steps")
    p.add_argument("--val-every", type=int, default=None, help="validation every N steps")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field after the pretrain rules, e.g. --set data.uniform_yaw=false")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_config(args: argparse.Namespace):
    """--config / --preset / the folder's own config / original64, then DFL's pretrain rules, then flags."""
    from deepfake.commands.train import apply_overrides
    from deepfake.config import TrainConfig
    from deepfake.config_io import load_json
    from deepfake.model_dir import read_config
    from deepfake.models import preset_config
    from deepfake.train.pretrain import pretrain_config

    if args.config and args.preset:
        raise DeepfakeError("give --config or --preset, not both")
    if args.config:
        cfg = load_json(TrainConfig, args.config)
    elif args.preset:
        cfg = preset_config(args.preset)
    elif (Path(args.out) / "config.json").is_file():
        cfg = read_config(args.out)
    else:
        cfg = preset_config("original64")
    flags = {"steps": args.steps, "batch": args.batch, "lr": args.lr, "device": args.device,
             "save_every": args.save_every, "preview_every": args.preview_every, "val_every": args.val_every,
             "seed": args.seed}
    return apply_overrides(pretrain_config(cfg), flags, args.set)


def run(args: argparse.Namespace) -> int:
    from deepfake.commands.train import summary
    from deepfake.config_io import to_dict
    from deepfake.models.autoencoder import validate
    from deepfake.train.pretrain import pretrain

    cfg = resolve_config(args)
    validate(cfg.model)
    if args.minutes is not None and args.minutes <= 0:
        raise DeepfakeError(f"--minutes {args.minutes:g}: must be positive")
    for folder in args.facesets:
        if not (Path(folder) / "faces.jsonl").is_file():
            raise DeepfakeError(f"{folder}: not a faceset (no faces.jsonl; make one with deepfake extract)")
    if args.dry_run:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    # --minutes alone is the only limit; --steps (or the preset's steps) otherwise.
    result = pretrain(cfg, args.facesets, args.out, progress=not args.no_progress, minutes=args.minutes,
                      step_limit=args.minutes is None)
    print(summary(result, cfg.steps, args.minutes))
    if result.interrupted:
        print(f"{result.stopped_by}: saved at step {result.step}; run the same command again to resume")
    else:
        print(f"start a pair from it: deepfake train --a A --b B -o MODEL_DIR --from {args.out}")
    return 130 if result.stopped_by == "SIGINT" else 0
