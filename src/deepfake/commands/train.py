"""`deepfake train --a FACESET_A --b FACESET_B -o MODEL_DIR`: parse, resolve the config, call train()."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepfake.errors import DeepfakeError
from deepfake.faceset import VAL_SPLITS


def _batch_arg(text: str) -> int | str:
    if text == "auto" or text.startswith("auto:"):
        start = text.partition(":")[2] or "256"
        if not start.isdigit() or int(start) < 1:
            raise argparse.ArgumentTypeError(f"'{text}': expected auto, auto:N or a positive integer")
        return f"auto:{int(start)}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected auto, auto:N or a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}': the batch must be at least 1")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, metavar="FACESET_A", help="faceset of identity A (the face to put in)")
    p.add_argument("--b", required=True, metavar="FACESET_B", help="faceset of identity B")
    p.add_argument("-o", "--out", required=True, metavar="MODEL_DIR", help="model folder; an existing one is resumed")
    p.add_argument("--preset", default=None, help="tiny | original64 | df128 | df256 | liae256 "
                   "(default: the folder's own config when resuming, else original64)")
    p.add_argument("--arch", choices=["df", "liae"], default=None, help="autoencoder architecture")
    p.add_argument("--config", default=None, metavar="JSON", help="a full TrainConfig JSON file (e.g. from --dry-run)")
    p.add_argument("--steps", type=int, default=None,
                   help="train until this step (default: the preset's, unless --minutes is given alone)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget for this run: stop and save when it is spent. Alone it is the only "
                        "limit; with --steps the first reached stops")
    p.add_argument("--batch", type=_batch_arg, default=None,
                   help="faces per identity per step (global, over all GPUs); 'auto' or 'auto:N' probes the "
                        "largest batch <= N (default 256) that fits in GPU memory, halving on out-of-memory")
    p.add_argument("--lr", type=float, default=None, help="generator learning rate")
    p.add_argument("--gan-weight", type=float, default=None, help="adversarial loss weight; 0 = plain autoencoder")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps")
    p.add_argument("--keep-every", type=int, default=None,
                   help="also keep the weights every N steps in MODEL_DIR/timeline (for evaluate --timeline)")
    p.add_argument("--preview-every", type=int, default=None, help="preview grid every N steps")
    p.add_argument("--val-every", type=int, default=None, help="validation every N steps")
    p.add_argument("--val-fraction", type=float, default=None, help="faces held out per identity (default 0.05)")
    p.add_argument("--val-split", choices=VAL_SPLITS, default=None,
                   help="which faces are held out: random, or tail (each faceset's last faces in frame order: "
                        "for a faceset from one video, the end of the clip, so validation never sees neighbours "
                        "of training frames: what shows over-training)")
    p.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimizer step")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile G's and D's forward and losses (one graph each)")
    p.add_argument("--compile-mode", choices=["auto", "default", "reduce-overhead", "max-autotune"], default=None,
                   help="torch.compile mode; reduce-overhead replays CUDA graphs (pays for small, fast models); "
                        "auto (default) picks it on CUDA up to 128 px")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--from", dest="start_from", default=None, metavar="MODEL_DIR",
                   help="start from this model's weights (a `deepfake pretrain` model, or one of another pair with "
                        "the same architecture); the step counter starts at 0. Without --preset/--config the "
                        "source's preset and network are used")
    p.add_argument("--reset", choices=["inter", "decoders", "none"], default=None,
                   help="with --from, what is re-initialised: inter (the bottleneck; default), decoders, or none "
                        "(A<->B reused for A<->C)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set model.latent_dims=256 --set augment.flip=false")
    p.add_argument("--dry-run", action="store_true", help="print and save the resolved config, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_config(args: argparse.Namespace):
    """The config from (in order) --config / --preset / the folder's own config / original64, then flags."""
    from deepfake.model_dir import read_config
    from deepfake.config import TrainConfig
    from deepfake.config_io import load_json
    from deepfake.models import preset_config

    if args.config and args.preset:
        raise DeepfakeError("give --config or --preset, not both")
    start_from = getattr(args, "start_from", None)
    if args.config:
        cfg = load_json(TrainConfig, args.config)
    elif args.preset:
        cfg = preset_config(args.preset)
    elif start_from and not (Path(args.out) / "config.json").is_file():
        from deepfake.train.reuse import source_config

        cfg = source_config(start_from)
    elif (Path(args.out) / "config.json").is_file():
        cfg = read_config(args.out)
    else:
        cfg = preset_config("original64")
    flags = {
        "model.arch": args.arch, "steps": args.steps, "batch": args.batch if isinstance(args.batch, int) else None, "lr": args.lr,
        "loss.gan_weight": args.gan_weight, "device": args.device, "save_every": args.save_every,
        "keep_every": args.keep_every,
        "preview_every": args.preview_every, "val_every": args.val_every, "val_fraction": args.val_fraction,
        "val_split": args.val_split,
        "grad_accum": args.grad_accum, "compile": args.compile, "compile_mode": args.compile_mode,
        "seed": args.seed,
    }
    return apply_overrides(cfg, flags, args.set)


def apply_overrides(cfg, flags: dict, sets: list[str]):
    """`cfg` with the flags that were given (a None value: not given), then each --set KEY=VALUE.
    `mask train` resolves its config the same way."""
    from deepfake.config_io import parse_override, replace_path

    for key, value in flags.items():
        if value is not None:
            cfg = replace_path(cfg, key, value)
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq:
            raise DeepfakeError(f"--set {item!r}: expected KEY=VALUE")
        cfg = replace_path(cfg, key.strip(), parse_override(cfg, key.strip(), value))
    return cfg


def step_limit(args: argparse.Namespace) -> bool:
    """Whether the config's step count limits this run: not when --minutes is the only limit given."""
    steps_set = args.steps is not None or any(item.partition("=")[0].strip() == "steps" for item in args.set)
    return steps_set or not args.minutes


def run(args: argparse.Namespace) -> int:
    from deepfake.config_io import to_dict
    from deepfake.faceset import split_train_val
    from deepfake.model_dir import write_config
    from deepfake.models.autoencoder import validate
    from deepfake.train.loss_masks import check_mask_config

    cfg = resolve_config(args)
    validate(cfg.model)
    check_mask_config(cfg)
    split_train_val(2, cfg.val_fraction, how=cfg.val_split)  # a bad val_split fails now, not after the cache is built
    if args.minutes is not None and args.minutes <= 0:
        raise DeepfakeError(f"--minutes {args.minutes:g}: must be positive")
    if isinstance(args.batch, str) and not args.dry_run:
        cfg = _auto_batch(cfg, int(args.batch.partition(":")[2]))
    if args.reset is not None and args.start_from is None:
        raise DeepfakeError("--reset needs --from MODEL_DIR")
    reset = args.reset or "inter"
    if args.start_from is not None and args.dry_run:
        from dataclasses import replace

        from deepfake.train.reuse import read_start

        cfg = replace(cfg, start=read_start(args.start_from, cfg, reset).record)
        print(json.dumps(to_dict(cfg), indent=2))
        print(f"dry run: nothing trained or saved ({args.out} must not hold a run for --from)")
        return 0
    if args.dry_run:
        print(json.dumps(to_dict(cfg), indent=2))
        write_config(args.out, cfg)
        print(f"saved {Path(args.out) / 'config.json'} (dry run: nothing trained)")
        from deepfake.train.memory import estimate

        try:
            print(estimate(cfg))
        except Exception as e:  # noqa: BLE001 - an estimate must never fail a dry run that succeeded
            print(f"memory estimate unavailable for this config: {type(e).__name__}: {str(e)[:200]}")
        return 0
    from deepfake.train import train

    result = train(cfg, args.a, args.b, args.out, progress=not args.no_progress, minutes=args.minutes,
                   step_limit=step_limit(args), start_from=args.start_from, reset=reset)
    if not result.main:
        return 130 if result.stopped_by == "SIGINT" else 0  # rank 0 reports for the whole DDP job
    print(summary(result, cfg.steps, args.minutes))
    if result.interrupted:
        print(f"{result.stopped_by}: saved at step {result.step}; run the same command again to resume")
    # Ctrl-C keeps the shell's convention; SIGTERM is how a supervisor asks for a clean stop: 0.
    return 130 if result.stopped_by == "SIGINT" else 0


def summary(result, steps: int, minutes: float | None) -> str:
    """One line: the last losses, what stopped the run, and where the model is."""
    last = result.metrics[-1] if result.metrics else {}
    text = f"step {result.step}: loss {last.get('loss', float('nan')):.4f}"
    if last.get("val_loss") is not None:
        text += f", val {last['val_loss']:.4f}"
    if result.skipped_steps:
        text += f", {result.skipped_steps} non-finite step(s) skipped"
    if result.compile_s is not None:
        text += f", compile {result.compile_s:.1f} s"
    if result.gpu_busy is not None:
        # The share of wall time in the G and D phases; the rest is data, logging and saving.
        text += f", device busy {result.gpu_busy:.0%}"
    if last.get("peak_mem_gib") is not None:
        text += f", peak memory {last['peak_mem_gib']:.2f} GiB"
    stopped = {
        "steps": f"reached the step limit ({steps})",
        "minutes": f"the {minutes:g}-minute budget was spent" if minutes else "the time budget was spent",
        "stop_at": f"reached step {result.step}",
        "SIGINT": "Ctrl-C (SIGINT)",
        "SIGTERM": "SIGTERM",
    }[result.stopped_by]
    return f"{text}. Stopped: {stopped}. Model in {result.model_dir}"


def _auto_batch(cfg, start: int):
    from dataclasses import replace

    from deepfake.devices import resolve_device
    from deepfake.train.memory import find_train_batch

    if resolve_device(cfg.device).type == "cpu":
        print(f"--batch auto: no device memory to probe on the CPU; keeping batch {cfg.batch}")
        return cfg
    batch = find_train_batch(cfg, start)
    print(f"--batch auto: batch {batch} fits (probed from {start}, halving on out-of-memory)")
    return replace(cfg, batch=batch)
