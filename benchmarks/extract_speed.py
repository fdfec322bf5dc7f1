"""Extraction speed: `extract` (worker processes, tracking, writer thread) against a naive
single-process loop, back to back on the same clips, same machine. Prints frames/s and the ratio.

    python benchmarks/extract_speed.py [--frames 200] [--clips d6.mp4 d18.mp4 s18.mp4]

The naive loop is what one would write first: for every frame, dlib HOG on the whole frame, 68
landmarks, Umeyama alignment, warp, hull mask, and PNG files for face and mask. It is run twice:
  * "naive+id": also the ResNet identity embedding every frame (the same outputs extract produces),
  * "naive":    without the embedding (less work than extract does; the conservative baseline).
Goal: extract >= 1.7x the naive loop on 2 cores.

On a machine shared with other jobs the wall-clock ratio mostly measures the other jobs; the CPU
ms/frame line is the steadier number, and `nice -n -15` (as root) gets closer to an idle machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import dlib
import numpy as np

from deepfake.config import ExtractConfig
from deepfake.extract import extract
from deepfake.faces.align import align_matrix, transform_points, warp_face
from deepfake.faces.dlib_models import SHAPE_68, dlib_model_path
from deepfake.faces.identity import FaceEmbedder
from deepfake.faces.hull import hull_mask
from deepfake.io.video import VideoReader

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared harness beside this file
from harness import MEDIA  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (extract's workers are joined before it returns)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def naive(clips: list[Path], frames: int, size: int, out: Path, with_identity: bool) -> tuple[int, float]:
    t0 = time.perf_counter()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path(SHAPE_68)))
    embedder = FaceEmbedder() if with_identity else None
    n = k = 0
    out.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        with VideoReader(clip, stop=frames) as v:
            for _, _, rgb in v:
                n += 1
                for rect in detector(rgb, 0):
                    shape = predictor(rgb, rect)
                    lm = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
                    m = align_matrix(lm, size, 0.75)
                    face = warp_face(rgb, m, size)
                    mask = hull_mask(transform_points(lm, m), size)
                    if embedder is not None:
                        embedder.embed(rgb, lm)
                    cv2.imwrite(str(out / f"{k:06d}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
                    cv2.imwrite(str(out / f"{k:06d}_mask.png"), mask)
                    k += 1
    return n, time.perf_counter() - t0


def ours(clips: list[Path], frames: int, size: int, out: Path, workers: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    s = extract(clips, out, ExtractConfig(size=size, frames=frames, workers=workers), progress=False)
    return s.frames_read, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", nargs="+", default=["d6.mp4", "d18.mp4", "s18.mp4"])
    p.add_argument("--frames", type=int, default=200, help="first N frames of each clip")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    clips = [MEDIA / c for c in args.clips]
    missing = [c for c in clips if not c.exists()]
    if missing:
        print(f"missing media: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    print(f"clips: {', '.join(args.clips)}, first {args.frames} frames each, size {args.size}, cores: {os.cpu_count()}")
    results, cpu = {}, {}
    load_before = os.getloadavg()[0]
    runs = {
        "naive": lambda out: naive(clips, args.frames, args.size, out, with_identity=False),
        "naive+id": lambda out: naive(clips, args.frames, args.size, out, with_identity=True),
        "extract": lambda out: ours(clips, args.frames, args.size, out, args.workers),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in runs.items():
            c0 = cpu_seconds()
            results[name] = fn(Path(tmp) / name)
            cpu[name] = cpu_seconds() - c0
    fps = {k: n / t for k, (n, t) in results.items()}
    for k, (n, t) in results.items():
        print(f"{k:>9}: {n} frames in {t:6.1f} s = {fps[k]:6.1f} frames/s; CPU {1000 * cpu[k] / n:5.1f} ms/frame")
    print(f"ratio extract / naive    = {fps['extract'] / fps['naive']:.2f}x (goal >= 1.7x)")
    print(f"ratio extract / naive+id = {fps['extract'] / fps['naive+id']:.2f}x (same outputs)")
    print(f"CPU per frame, naive / extract = {cpu['naive'] / results['naive'][0] / (cpu['extract'] / results['extract'][0]):.2f}x")
    print(f"load average (1 min) before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
          " (other processes share the cores: wall-clock ratios are only meaningful on an idle machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
