"""`deepfake swap INPUT -m MODEL_DIR -o OUTPUT`: parse, then call the library."""

from __future__ import annotations

import argparse

from deepfake.config import SwapConfig
from deepfake.config.options import add_options, config_from_args

HELP = "put the trained face into images or video"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="an image, a folder of images, or a video")
    p.add_argument("-m", "--model", required=True, metavar="MODEL_DIR", help="model folder made by `deepfake train`")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="output file (same kind as the input; a folder for a folder of images)")
    add_options(p, SwapConfig)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from deepfake.swap.run import swap

    cfg = config_from_args(SwapConfig, args)
    summary = swap(args.input, args.output, args.model, cfg, progress=not args.quiet)
    print(summary.line())
    return 0
