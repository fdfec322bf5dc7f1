"""`deepfake demo [--minutes M] [--a VIDEO --b VIDEO] [-o demo_output]`: parse, then call the library."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deepfake.config import DemoConfig

    d = DemoConfig()
    p.add_argument("--minutes", type=float, default=d.minutes, help="training time budget (wall clock)")
    p.add_argument("--a", metavar="VIDEO", help="identity A's clip (default: bundled sample media)")
    p.add_argument("--b", metavar="VIDEO", help="identity B's clip; A's face is put onto it")
    p.add_argument("-o", "--output", default="demo_output", metavar="DIR", help="output folder")
    p.add_argument("--frames", type=int, default=d.frames, help="frames of each clip to use")
    p.add_argument("--preset", default=d.preset, help="training preset")
    p.add_argument("--from", dest="start_from", default=d.start_from, metavar="MODEL_DIR",
                   help="start training from this model (e.g. made by `deepfake pretrain`); its preset is used")
    p.add_argument("--face-size", type=int, default=d.face_size, help="aligned face size for extraction")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from deepfake.config import DemoConfig
    from deepfake.demo import run_demo

    cfg = DemoConfig(minutes=args.minutes, frames=args.frames, preset=args.preset, face_size=args.face_size,
                     batch=args.batch, device=args.device, start_from=args.start_from)
    result = run_demo(args.output, cfg, a=args.a, b=args.b, progress=not args.quiet)
    for path in (result.video, result.sheet, result.loss_plot, result.report):
        print(path)
    return 0
