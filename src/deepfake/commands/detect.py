"""`deepfake detect INPUT... [-m MODEL_DIR]`: parse, then call the library."""

from __future__ import annotations

import argparse
import json

from deepfake.config import DetectConfig
from deepfake.config.options import add_options, config_from_args

HELP = "read the provenance (tag, Content Credentials, invisible mark) of images and video; score their faces"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images, videos, or folders of them")
    p.add_argument("-m", "--model", default=None, metavar="MODEL_DIR",
                   help="model folder with a trained discriminator to score faces; without it only provenance is read")
    add_options(p, DetectConfig)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from deepfake.provenance.inspect import Detector, detect_files, format_reports

    cfg = config_from_args(DetectConfig, args)
    detector = Detector.from_model_dir(args.model, cfg) if args.model else None
    reports = detect_files(args.inputs, detector, progress=not args.json, cfg=cfg)
    if args.json:
        print(json.dumps({"threshold": cfg.threshold, "files": [r.to_dict() for r in reports]}, indent=2))
    else:
        print(format_reports(reports, cfg.threshold))
        skipped = [r for r in reports if r.error]
        done = "scored" if detector is not None else "checked for provenance"
        print(f"{len(reports) - len(skipped)} file(s) {done}, {len(skipped)} skipped")
    return 0 if any(r.error is None for r in reports) else 2
