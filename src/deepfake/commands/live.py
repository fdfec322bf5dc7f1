"""`deepfake live [SOURCE] -m MODEL`: parse, then call the library."""

from __future__ import annotations

import argparse
import json
import sys

from deepfake.commands import config_from_args
from deepfake.live.config import RUNTIMES, LiveConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = LiveConfig()
    p.add_argument("source", nargs="?", default=None, metavar="SOURCE",
                   help="a video file (played as live, at its own frame rate), a stream URL, or /dev/videoN")
    p.add_argument("--camera", type=int, default=None, metavar="N", help="camera index N instead of SOURCE")
    p.add_argument("-m", "--model", required=True, metavar="MODEL",
                   help="a model folder made by `deepfake train`, or a .onnx / .dfm file (ours or DeepFaceLab's)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default=d.direction,
                   help="a2b puts A's face onto the person in the source; b2a the reverse (model folders)")
    p.add_argument("--checkpoint", default=d.checkpoint, metavar="best|last|STEP", help="a model folder's weights")
    p.add_argument("--runtime", choices=RUNTIMES, default=d.runtime,
                   help="a model folder runs as an ONNX graph exported on the fly (onnxruntime) or in PyTorch")
    p.add_argument("--threads", type=int, default=d.threads, help="the model runtime's threads")
    p.add_argument("--detect-every", type=int, default=d.detect_every,
                   help="frames between face detections while a face is tracked (1 = every frame)")
    p.add_argument("-o", "--output", default=None, metavar="OUT", help="also record to this video file (tagged synthetic)")
    p.add_argument("--virtual-camera", action="store_true", help="also send the frames to a virtual camera (v4l2loopback)")
    p.add_argument("--stats", default=None, metavar="FILE.json", help="write the run's stats here")
    p.add_argument("--no-watermark", dest="watermark", action="store_false",
                   help="no visible 'SYNTHETIC' mark on the frames (prints a responsible-use note)")
    p.add_argument("--no-invisible-mark", dest="invisible_mark", action="store_false",
                   help="leave out the invisible mark (tool + model hash) that `deepfake detect` reads in each swapped face")
    p.add_argument("--frames", type=int, default=d.frames, help="stop after N source frames (0 = no limit)")
    p.add_argument("--seconds", type=float, default=d.seconds, help="stop after S seconds (0 = no limit)")
    p.add_argument("--mask", default=d.mask, help="blend mask, as swap's --mask (learned, hull, learned*hull)")
    p.add_argument("--color", choices=["rct", "lct", "idt", "hist", "none"], default=d.color, help="colour matching")
    p.add_argument("--blend", choices=["feather", "poisson"], default=d.blend)
    p.add_argument("--erode", type=int, default=d.erode, help="shrink the mask by N px (negative grows)")
    p.add_argument("--blur", type=int, default=d.blur, help="feather the mask edge over N px (0 = automatic)")
    p.add_argument("--sharpen", type=float, default=d.sharpen, help="unsharp-mask amount (0 = off)")
    p.add_argument("--crf", type=int, default=d.crf, help="-o file: libx264 quality")
    p.add_argument("--preset", default=d.preset, help="-o file: libx264 preset")
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
