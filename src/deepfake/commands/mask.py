"""`deepfake mask train|apply|label`: parse arguments, resolve the segmenter's config, call deepfake.segment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepfake.commands import Help
from deepfake.errors import DeepfakeError

HELP = "occlusion-aware masks: train a segmenter on your faces, label, apply"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deepfake.config import MaskLabelConfig, MaskTrainConfig, SegmentApplyConfig, SegmentRun
    from deepfake.config.options import add_options

    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fmt = Help

    t = sub.add_parser("train", formatter_class=fmt,
                       help="train a segmenter on facesets: hull masks first, then the labels")
    t.add_argument("facesets", nargs="+", metavar="FACESET", help="faceset folders (their labels.json is used)")
    t.add_argument("-o", "--out", required=True, metavar="MASK_MODEL", help="mask model folder; an existing one is resumed")
    add_options(t, SegmentRun)
    add_options(t, MaskTrainConfig, overrides=True)
    t.add_argument("--config", default=None, metavar="JSON", help="a full MaskTrainConfig JSON (e.g. from --dry-run)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set model.base_channels=16 --set augment.jpeg=0.5")
    t.add_argument("--dry-run", action="store_true", help="print and save the resolved config, then exit")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    a = sub.add_parser("apply", formatter_class=fmt,
                       help="write the segmenter's masks into a faceset (FACESET/masks_segmenter/)")
    a.add_argument("faceset", metavar="FACESET")
    a.add_argument("-m", "--model", required=True, metavar="MASK_MODEL", help="folder made by `deepfake mask train`")
    add_options(a, SegmentApplyConfig)
    a.add_argument("--no-progress", action="store_true", help="no progress bar")

    lab = sub.add_parser("label", formatter_class=fmt,
                         help="check labels.json; export the faces worth labelling; import LabelMe polygons")
    lab.add_argument("faceset", metavar="FACESET")
    lab.add_argument("--export", action="store_true",
                     help="write a sheet of the most varied poses (and, with -m, the faces the model is least sure "
                          "of) and copy them to FACESET/label_queue/")
    add_options(lab, MaskLabelConfig)
    lab.add_argument("-m", "--model", default=None, metavar="MASK_MODEL", help="mask model for the unsure faces")
    lab.add_argument("-o", "--output", default=None, metavar="PNG", help="the sheet (default FACESET/labels_todo.png)")
    lab.add_argument("--import", dest="import_dir", default=None, metavar="DIR",
                     help="merge LabelMe JSON files (shapes named include / exclude) into labels.json")


def run(args: argparse.Namespace) -> int:
    return {"train": _train, "apply": _apply, "label": _label}[args.action](args)


# ----------------------------------------------------------------------------------------------------
# train


def resolve_config(args: argparse.Namespace):
    """The config from --config, else the folder's own config.json, else the defaults; then the flags,
    then --set."""
    from deepfake.commands.train import apply_overrides
    from deepfake.config.options import given_values
    from deepfake.config_io import load_json
    from deepfake.segment.checkpoint import CONFIG, read_config
    from deepfake.config import MaskTrainConfig

    if args.config:
        cfg = load_json(MaskTrainConfig, args.config)
    elif (Path(args.out) / CONFIG).is_file():
        cfg = read_config(args.out)
    else:
        cfg = MaskTrainConfig()
    flags = given_values(MaskTrainConfig, args)
    return apply_overrides(cfg, flags, args.set)


def _train(args: argparse.Namespace) -> int:
    from deepfake.config import SegmentRun
    from deepfake.config.options import config_from_args
    from deepfake.config_io import to_dict
    from deepfake.segment.checkpoint import write_config
    from deepfake.segment.checks import validate

    out = Path(args.out)
    if out.exists() and not out.is_dir():  # before reading a config from it, or a dry run writing one
        raise DeepfakeError(f"{out}: mask model output exists and is not a folder")
    cfg = resolve_config(args)
    config_from_args(SegmentRun, args)  # --minutes in its range
    if args.dry_run:
        validate(cfg)  # a real run is checked where train_segmenter enters
        print(json.dumps(to_dict(cfg), indent=2))
        write_config(args.out, cfg)
        print(f"saved {Path(args.out) / 'config.json'} (dry run: nothing trained)")
        return 0
    from deepfake.commands.train import step_limit
    from deepfake.segment.train import train_segmenter

    result = train_segmenter(cfg, args.facesets, args.out, minutes=args.minutes, step_limit=step_limit(args),
                             progress=not args.no_progress)
    last = result.rows[-1] if result.rows else {}
    text = f"step {result.step} ({result.phase}): loss {last.get('loss', float('nan')):.4f}"
    if last.get("val_iou") is not None:
        text += f", validation IoU {last['val_iou']:.3f}"
    labels = f"{result.labelled} labelled" if result.labelled else "no labels: hull targets only"
    stopped = {"steps": f"reached the step limit ({cfg.steps})", "minutes": f"the {args.minutes or 0:g}-minute budget was spent",
               "SIGINT": "Ctrl-C (SIGINT)", "SIGTERM": "SIGTERM"}[result.stopped_by]
    print(f"{text}; {result.faces} faces, {labels}. Stopped: {stopped}. Mask model in {result.folder}")
    if result.stopped_by in ("SIGINT", "SIGTERM"):
        print(f"{result.stopped_by}: saved at step {result.step}; run the same command again to resume")
    return 130 if result.stopped_by == "SIGINT" else 0


# ----------------------------------------------------------------------------------------------------
# apply, label


def _apply(args: argparse.Namespace) -> int:
    from deepfake.devices import resolve_device
    from deepfake.segment.apply import apply_to_faceset
    from deepfake.segment.checkpoint import load_mask_model

    if args.batch < 1:
        raise DeepfakeError(f"--batch {args.batch}: must be >= 1")
    device = resolve_device(args.device)
    result = apply_to_faceset(args.faceset, load_mask_model(args.model, device), device, args.batch,
                              progress=not args.no_progress)
    for line in result.lines():
        print(line)
    return 0


def _label(args: argparse.Namespace) -> int:
    from deepfake.config import MaskLabelConfig
    from deepfake.config.options import config_from_args
    from deepfake.faceset import read_faceset
    from deepfake.segment.labels import labels_path, read_labels

    fs = read_faceset(args.faceset)
    if args.import_dir:
        from deepfake.segment.labelme import import_labelme

        count, path = import_labelme(fs, args.import_dir)
        print(f"imported labels of {count} face(s) from {args.import_dir} into {path}")
    labels = read_labels(fs)  # validates: a bad file is one line naming it, the face and the problem
    n_inc = sum(len(v.include) for v in labels.values())
    n_exc = sum(len(v.exclude) for v in labels.values())
    where = labels_path(fs) if labels else f"{labels_path(fs)} (none yet)"
    print(f"{where}: {len(labels)} of {len(fs)} faces labelled, {n_inc} include and {n_exc} exclude polygons")
    if args.export:
        from deepfake.devices import resolve_device
        from deepfake.segment.checkpoint import load_mask_model
        from deepfake.segment.export import QUEUE, export_label_sheet

        opts = config_from_args(MaskLabelConfig, args)
        device = resolve_device(opts.device)
        loaded = load_mask_model(args.model, device) if args.model else None
        path, picks = export_label_sheet(fs.root, opts.faces, loaded, args.output, device)
        kinds = ", ".join(f"{sum(p.reason == r for p in picks)} {r}" for r in ("pose", "unsure") if any(p.reason == r for p in picks))
        print(f"wrote {path}: {len(picks)} faces worth labelling ({kinds}); copies in {fs.root / QUEUE}")
        for p in picks:
            print(f"  {p.file}  {p.reason} {p.score:.3f}")
    return 0
