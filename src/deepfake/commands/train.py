"""`deepfake train --a FACESET_A --b FACESET_B -o MODEL_DIR`: parse, resolve the config, call train()."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepfake.errors import DeepfakeError

HELP = "train the autoencoder and discriminator adversarially"


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
    from deepfake.config import TrainConfig
    from deepfake.config.options import declared

    why = next(d for d in declared(TrainConfig) if d.path == "batch").check_range(value)
    if why:
        raise argparse.ArgumentTypeError(why.partition(": ")[2])
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deepfake.config import TrainConfig, TrainRun
    from deepfake.config.options import add_options, declared

    p.add_argument("--a", required=True, metavar="FACESET_A", help="faceset of identity A (the face to put in)")
    p.add_argument("--b", required=True, metavar="FACESET_B", help="faceset of identity B")
    p.add_argument("-o", "--out", required=True, metavar="MODEL_DIR", help="model folder; an existing one is resumed")
    add_options(p, TrainRun)
    p.add_argument("--config", default=None, metavar="JSON", help="a full TrainConfig JSON file (e.g. from --dry-run)")
    add_options(p, TrainConfig, overrides=True, exclude=("batch",), default_text="")
    # The one option with a form of its own: a number as declared, or auto[:N] (probed on the GPU).
    batch = next(d for d in declared(TrainConfig) if d.path == "batch")
    p.add_argument("--batch", type=_batch_arg, default=None,
                   help=f"{batch.opt.help} [{batch.range_text()}] (global, over all GPUs); 'auto' or 'auto:N' probes "
                        "the largest batch <= N (default 256) that fits in GPU memory, halving on out-of-memory"
                   ).declared = batch
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set model.latent_dims=256 --set augment.flip=false")
    p.add_argument("--dry-run", action="store_true", help="print and save the resolved config, then exit; on a folder "
                   "that holds a run, check the resume and say what it would do, saving nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.epilog = ("An option without a default above keeps the value of the preset (or of the resumed folder's "
                "config.json: a resume keeps its own settings, and says which options given change them); "
                "`--dry-run` prints the resolved config.")


def starting_config(args: argparse.Namespace, rules=None):
    """The config a run starts from, before its flags: a folder that holds a run, its own config.json;
    else --config, else --preset, else (--from into a new folder) the source's, else the folder's own
    config.json (a dry run's), else original64. `pretrain` starts the same way, with its `rules` applied
    to a new run's start (a resumed folder's config has them already)."""
    from deepfake.model_dir import read_config
    from deepfake.train.resume import holds_run

    if args.config and args.preset:
        raise DeepfakeError("give --config or --preset, not both")
    if holds_run(args.out):
        if getattr(args, "start_from", None):
            raise DeepfakeError(f"{args.out}: already holds a run; resume it without --from, or start into a new folder")
        saved = read_config(args.out)
        _same_start(args, saved, rules)
        return saved
    cfg = _new_start(args)
    return rules(cfg) if rules else cfg


def _new_start(args: argparse.Namespace):
    from deepfake.config import TrainConfig
    from deepfake.config_io import load_json
    from deepfake.model_dir import read_config
    from deepfake.models import preset_config

    start_from = getattr(args, "start_from", None)
    if args.config:
        return load_json(TrainConfig, args.config)
    if args.preset:
        return preset_config(args.preset)
    if start_from and not (Path(args.out) / "config.json").is_file():
        from deepfake.train.reuse import source_config

        return source_config(start_from)
    if (Path(args.out) / "config.json").is_file():
        return read_config(args.out)
    return preset_config("original64")


def _same_start(args: argparse.Namespace, saved, rules) -> None:
    """A resumed folder keeps its own settings: a --preset or --config that would replace them is refused;
    given again unchanged (the first command run again) it is fine."""
    from dataclasses import replace

    from deepfake.config import TrainConfig
    from deepfake.config_io import load_json
    from deepfake.train.reuse import first_difference

    keep = f"{Path(args.out) / 'config.json'}: a resumed folder keeps its own settings"
    todo = "leave it out (change single settings with their options or --set), or train into a new folder"
    if args.preset and args.preset != saved.preset:
        raise DeepfakeError(f"{keep} (preset {saved.preset}), not --preset {args.preset}'s; {todo}")
    if args.config:
        given = load_json(TrainConfig, args.config)
        given = rules(given) if rules else given
        # What train fills in (from the facesets, the start) the file may leave at its defaults.
        given = replace(given, face_size=saved.face_size, coverage=saved.coverage, mask_region=saved.mask_region,
                        start=saved.start, data=replace(given.data, pool=saved.data.pool))
        # The options given apply to either: what they set is no disagreement.
        flags = command_flags(args)
        diff = first_difference(apply_overrides(saved, flags, args.set), apply_overrides(given, flags, args.set), "")
        if diff is not None:
            name, theirs, ours = diff
            raise DeepfakeError(f"{keep} ({name} {theirs}), not --config {args.config}'s ({ours}); {todo}")


def command_flags(args: argparse.Namespace) -> dict:
    """{dotted path: value} of the TrainConfig options given (--batch only as a number: auto is probed later)."""
    from deepfake.config import TrainConfig
    from deepfake.config.options import given_values

    flags = given_values(TrainConfig, args)
    if not isinstance(getattr(args, "batch", None), int):
        flags.pop("batch", None)
    return flags


def resolve_config(args: argparse.Namespace):
    """The starting config, then the flags given, then each --set."""
    return apply_overrides(starting_config(args), command_flags(args), args.set)


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
    from deepfake.config import TrainRun
    from deepfake.config.options import config_from_args
    from deepfake.config_io import to_dict
    from deepfake.model_dir import write_config
    from deepfake.train.checks import validate
    from deepfake.train.resume import describe, holds_run

    config_from_args(TrainRun, args)  # --minutes in its range
    cfg = resolve_config(args)
    if args.dry_run or isinstance(args.batch, str):
        validate(cfg)  # these use the config before train(), which checks it where every caller enters
    if isinstance(args.batch, str) and not args.dry_run:
        cfg = _auto_batch(cfg, int(args.batch.partition(":")[2]))
    given_reset = getattr(args, "reset", "")  # left out of the namespace when not given
    if given_reset and args.start_from is None:
        raise DeepfakeError("--reset needs --from MODEL_DIR")
    reset = given_reset or "inter"
    if args.dry_run and holds_run(args.out):
        would = describe(Path(args.out), cfg, pooled=False)  # the resume's checks, before anything is printed
        print(json.dumps(to_dict(cfg), indent=2))
        print(would)
        return 0
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
