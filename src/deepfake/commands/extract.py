"""`deepfake extract INPUT... -o FACESET`: parse arguments, build an ExtractConfig, run extract."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake.commands import config_from_args
from deepfake.config import ExtractConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ExtractConfig()
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files")
    p.add_argument("-o", "--output", required=True, metavar="FACESET", help="faceset folder (created, or appended to)")
    p.add_argument("--size", type=int, default=d.size, help="aligned face size in px")
    p.add_argument("--coverage", type=float, default=d.coverage, help="fraction of the crop the canonical face spans")
    p.add_argument("--every", type=int, default=d.every, metavar="N", help="take every Nth video frame")
    p.add_argument("--frames", type=int, default=d.frames, metavar="N", help="video: only the first N frames (0 = all)")
    p.add_argument("--min-face", type=int, default=d.min_face, metavar="PX", help="smallest face box side kept")
    p.add_argument("--max-faces", type=int, default=d.max_faces, help="faces kept per frame, largest first (0 = all)")
    p.add_argument("--detector", choices=["hog", "cnn"], default=d.detector, help="dlib HOG (fast) or CNN (MMOD, slow, finds harder faces)")
    p.add_argument("--reference", nargs="+", default=[], metavar="IMG", help="keep only faces of the person in these images")
    p.add_argument("--reference-threshold", type=float, default=d.reference_threshold, help="max identity distance to the reference")
    p.add_argument("--no-smooth", action="store_true", help="do not smooth landmarks over video frames")
    p.add_argument("--mask-region", choices=["full", "whole"], default=d.mask_region,
                   help="the hull mask: whole (with the forehead) or full (stops at the brows, keeps fringes and hats out)")
    p.add_argument("--format", choices=["png", "jpg"], default=d.image_format, help="aligned face image format")
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes")
    p.add_argument("--device", default=d.device, help="identity embeddings on auto | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and the inputs, then stop")


def run(args: argparse.Namespace) -> int:
    import json

    from deepfake.config_io import to_dict
    from deepfake.errors import DeepfakeError
    from deepfake.extract import collect_inputs, extract

    if args.size < 16 or args.size > 2048:
        raise DeepfakeError(f"--size {args.size}: must be between 16 and 2048")
    if not 0.2 <= args.coverage <= 1.5:
        raise DeepfakeError(f"--coverage {args.coverage}: must be between 0.2 and 1.5")
    if args.every < 1:
        raise DeepfakeError("--every must be at least 1")
    if args.workers < 1:
        raise DeepfakeError("--workers must be at least 1")
    cfg = config_from_args(
        ExtractConfig, args, reference=list(args.reference), smooth=not args.no_smooth, image_format=args.format
    )
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
