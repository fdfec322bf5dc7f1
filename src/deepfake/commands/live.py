"""`deepfake live [SOURCE] -m MODEL`: parse, then call the library."""

from __future__ import annotations

import argparse
import json
import sys

from deepfake.config import LiveConfig
from deepfake.config.options import add_options, config_from_args

HELP = "swap live from a camera or a video played as live (file, virtual camera)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", default=None, metavar="SOURCE",
                   help="a video file (played as live, at its own frame rate), a stream URL, or /dev/videoN")
    p.add_argument("--camera", type=int, default=None, metavar="N", help="camera index N instead of SOURCE")
    p.add_argument("-m", "--model", required=True, metavar="MODEL",
                   help="a model folder made by `deepfake train`, or a .onnx / .dfm file (ours or DeepFaceLab's)")
    p.add_argument("-o", "--output", default=None, metavar="OUT", help="also record to this video file (tagged synthetic)")
    p.add_argument("--stats", default=None, metavar="FILE.json", help="write the run's stats here")
    add_options(p, LiveConfig)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from deepfake.live.run import RESPONSIBLE_USE, run_live

    cfg = config_from_args(LiveConfig, args)
    if not cfg.watermark:
        print(RESPONSIBLE_USE, file=sys.stderr)
    result = run_live(args.source, args.camera, args.model, cfg, args.output, args.stats, progress=not args.quiet)
    print(result.line())
    print(json.dumps(result.stats.as_dict()))
    return 0
