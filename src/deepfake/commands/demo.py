"""`deepfake demo [--minutes M] [--a VIDEO --b VIDEO] [-o demo_output]`: parse, then call the library."""

from __future__ import annotations

import argparse

HELP = "zero-setup end-to-end demo: extract, train, swap, report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deepfake.config import DemoConfig
    from deepfake.config.options import add_options

    p.add_argument("--a", metavar="VIDEO", help="identity A's clip (default: bundled sample media)")
    p.add_argument("--b", metavar="VIDEO", help="identity B's clip; A's face is put onto it")
    p.add_argument("-o", "--output", default="demo_output", metavar="DIR", help="output folder")
    add_options(p, DemoConfig)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from deepfake.config import DemoConfig
    from deepfake.config.options import config_from_args
    from deepfake.demo import run_demo

    cfg = config_from_args(DemoConfig, args)
    result = run_demo(args.output, cfg, a=args.a, b=args.b, progress=not args.quiet)
    for path in (result.video, result.sheet, result.loss_plot, result.report):
        print(path)
    return 0
