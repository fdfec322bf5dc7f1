"""`deepfake swap INPUT -m MODEL_DIR -o OUTPUT`: parse, then call the library."""

from __future__ import annotations

import argparse

from deepfake.commands import config_from_args
from deepfake.config import SwapConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = SwapConfig()
    p.add_argument("input", metavar="INPUT", help="an image, a folder of images, or a video")
    p.add_argument("-m", "--model", required=True, metavar="MODEL_DIR", help="model folder made by `deepfake train`")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="output file (same kind as the input; a folder for a folder of images)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default=d.direction,
                   help="a2b puts A's face onto B (the input shows B); b2a the reverse")
    p.add_argument("--mask", choices=["learned", "hull", "learned*hull", "segmenter", "segmenter*hull",
                                      "learned*segmenter", "learned*segmenter*hull"], default=d.mask,
                   help="the blend mask: the model's learned mask, the landmark hull, a trained segmenter "
                        "(--mask-model), or their intersection joined by *")
    p.add_argument("--mask-model", default=argparse.SUPPRESS, metavar="MASK_MODEL",
                   help="folder made by `deepfake mask train`: the segmenter of --mask segmenter (and segmenter*hull)")
    p.add_argument("--mask-region", choices=["full", "whole"], default=argparse.SUPPRESS,
                   help="the hull: full (stops at the brows) or whole (with the forehead); default: the model's")
    p.add_argument("--erode", type=int, default=d.erode, help="shrink the mask by N px of the aligned face (negative grows)")
    p.add_argument("--blur", type=int, default=d.blur, help="feather the mask edge over N px (0 = automatic, -1 = none)")
    p.add_argument("--color", choices=["rct", "lct", "idt", "hist", "none"], default=d.color, help="colour matching")
    p.add_argument("--blend", choices=["feather", "poisson"], default=d.blend)
    p.add_argument("--sharpen", type=float, default=d.sharpen, help="unsharp-mask amount (0 = off)")
    p.add_argument("--all-faces", action="store_true", help="swap every face, not only those matching the model's identity")
    p.add_argument("--identity-threshold", type=float, default=d.identity_threshold,
                   help="max embedding distance for a face to count as the model's identity")
    p.add_argument("--batch", type=int, default=d.batch, help="frames per model batch")
    p.add_argument("--crf", type=int, default=d.crf, help="libx264 quality (lower = better, 0..51)")
    p.add_argument("--preset", default=d.preset, help="libx264 preset (ultrafast .. veryslow)")
    p.add_argument("--frames", type=int, default=d.frames, help="video: only the first N frames (0 = all)")
    p.add_argument("--preview", action="store_true",
                   help="a quick before/after look instead of the full output: OUTPUT.png gives a sheet of "
                   "frames spread over the video, a video OUTPUT the first --preview-seconds side by side")
    p.add_argument("--preview-frames", type=int, default=d.preview_frames)
    p.add_argument("--preview-seconds", type=float, default=d.preview_seconds)
    p.add_argument("--watermark", action="store_true", help="also draw a small visible 'AI-GENERATED' mark")
    p.add_argument("--no-invisible-mark", dest="invisible_mark", action="store_false",
                   help="leave out the invisible mark (tool marker + model hash in every swapped face); the "
                        "Content Credentials then say it is off")
    p.add_argument("--sign-cert", default=d.sign_cert, metavar="PEM",
                   help="certificate chain (signing certificate first) for the Content Credentials; default: "
                        "a local chain made on first use in the config folder")
    p.add_argument("--sign-key", default=d.sign_key, metavar="PEM", help="the private key of --sign-cert")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--checkpoint", default="last", metavar="best|last|STEP",
                   help="which weights: the last saved, the validation minimum (best), or a kept step")
    p.add_argument("--amp", choices=["auto", "bf16", "off"], default=d.amp,
                   help="model precision: auto = bf16 on a GPU that supports it, fp32 on CPU")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from deepfake.swap.run import swap

    cfg = config_from_args(SwapConfig, args)
    summary = swap(args.input, args.output, args.model, cfg, progress=not args.quiet)
    print(summary.line())
    return 0
