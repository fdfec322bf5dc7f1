"""`deepfake extract INPUT... -o FACESET`: parse arguments, build an ExtractConfig, run extract."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake.config import ExtractConfig
from deepfake.config.options import add_options, config_from_args

HELP = "detect, align and mask faces from images and videos into a faceset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files")
    p.add_argument("-o", "--output", required=True, metavar="FACESET", help="faceset folder (created, or appended to)")
    add_options(p, ExtractConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and the inputs, then stop")


def run(args: argparse.Namespace) -> int:
    import json

    from deepfake.config_io import to_dict
    from deepfake.extract import collect_inputs, extract

    cfg = config_from_args(ExtractConfig, args)
    if args.dry_run:
        items, skipped = collect_inputs(args.inputs, exclude=Path(args.output))
        print(json.dumps(to_dict(cfg), indent=2))
        for it in items:
            print(f"{it.kind}: {it.path}")
        for path, reason in skipped:
            print(f"skip: {path}: {reason}")
        return 0

    def on_skip(path: str, reason: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"skipped: {path}: {reason}", file=sys.stderr)

    summary = extract(args.inputs, args.output, cfg, progress=not args.no_progress, on_skip=on_skip)
    for line in summary.lines():
        print(line)
    if summary.faces_kept + summary.duplicates == 0:
        if summary.rejected_identity:
            print(f"error: none of the {summary.rejected_identity} faces found matched the --reference person", file=sys.stderr)
        else:
            print(f"error: no face was extracted from the {len(args.inputs)} input(s)", file=sys.stderr)
        return 1
    print(f"faceset: {args.output}")
    return 0
