"""Landmark jitter on the shared clips: the raw detector (a fresh HOG detection and 68 landmarks on
every frame, no smoothing) against the extract pipeline (tracking + One-Euro smoothing).

    python benchmarks/extract_jitter.py [--frames 150]

Jitter = median over consecutive frame pairs of the mean landmark motion not explained by the face's
own similarity motion, as % of the inter-ocular distance (deepfake.faces.smooth.median_jitter).
Goal: >= 40 % lower than the raw detector's on every clip.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake.config import ExtractConfig
from deepfake.faces.analyzer import FaceAnalyzer
from deepfake.faces.smooth import median_jitter
from deepfake.io.video import VideoReader

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared harness beside this file
from harness import MEDIA  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", nargs="+", default=["d6.mp4", "d14.mp4", "d3.mp4", "d18.mp4", "s18.mp4"])
    p.add_argument("--frames", type=int, default=150)
    args = p.parse_args()
    analyzer = FaceAnalyzer(ExtractConfig(), with_embedding=False)
    worst = 100.0
    for clip in args.clips:
        path = MEDIA / clip
        if not path.exists():
            print(f"missing: {path}", file=sys.stderr)
            return 2
        raw, smooth = [], []
        smoother = analyzer.new_smoother()
        with VideoReader(path, stop=args.frames) as v:
            for _, t, rgb in v:
                a, b = analyzer.analyze(rgb), analyzer.analyze(rgb, smoother, t)
                if len(a) == 1 and len(b) == 1:
                    raw.append(a[0].landmarks)
                    smooth.append(b[0].landmarks)
        jr, js = median_jitter(raw), median_jitter(smooth)
        cut = 100 * (1 - js / jr)
        worst = min(worst, cut)
        print(f"{clip:>8}: {len(raw)} frames, raw {jr:.2f} % IOD, smoothed {js:.2f} % IOD, {cut:.0f} % lower")
    print(f"smallest reduction: {worst:.0f} % (goal >= 40 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
