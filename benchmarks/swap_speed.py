"""Swap throughput: the overlapped, batched pipeline against a naive per-frame loop, in the same run.

    python benchmarks/swap_speed.py [--clip ../shared/media/d6.mp4] [--frames 90] [--preset original64]

Both paths do the same work on the same frames of a 480-512 px clip: decode, detect + landmarks +
smoothing + alignment + identity embedding, the model, mask + colour + feather paste-back, libx264 encode.
The naive loop runs them one frame at a time on one thread; the pipeline overlaps decode, detection,
the batched model and encoding (deepfake.swap.run.swap_video). Weights are untrained: speed does not
depend on them. Targets (issue 4): >= 2x the naive loop; >= 10 frames/s on 2 CPU cores with original64;
>= 60 frames/s on a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared harness beside this file
from harness import ROOT  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", default=str(ROOT.parent / "shared" / "media" / "d6.mp4"))
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--preset", default="original64")
    p.add_argument("--face-size", type=int, default=256, help="extract's default aligned size")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--encode-preset", default="veryfast")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"], help="model precision")
    args = p.parse_args()

    import torch

    from deepfake.config import SwapConfig
    from deepfake.devices import resolve_device
    from deepfake.faces.analyzer import FaceAnalyzer
    from deepfake.io.video import VideoReader
    from deepfake.io.video_writer import VideoWriter
    from deepfake.models import build_autoencoder
    from deepfake.models.presets import preset_config
    from deepfake.swap.model import AutoencoderModel, SwapModel
    from deepfake.swap.pipeline import Swapper, analyzer_config
    from deepfake.swap.run import swap_video

    device = str(resolve_device(args.device))  # SwapConfig stores the name
    tcfg = preset_config(args.preset)
    torch.manual_seed(0)
    ae = build_autoencoder(tcfg.model)
    model = AutoencoderModel(ae, tcfg.model.resolution, "a", device, args.amp)
    clip = Path(args.clip)
    coverage = 0.75

    # The identity filter is on, as with a real model: embed the clip's person from its first frame.
    probe = FaceAnalyzer(analyzer_config(args.face_size, coverage), with_embedding=True)
    with VideoReader(clip) as r:
        first = next(iter(r))[2]
        width, height, fps = r.width, r.height, r.fps
    identity = probe.analyze(first)[0].embedding
    cfg = SwapConfig(batch=args.batch, preset=args.encode_preset, device=device, frames=args.frames)
    swap_model = SwapModel(model, args.face_size, coverage, identity, f"random-{args.preset}")

    print(f"clip {clip.name} {width}x{height}, {args.frames} frames, preset {args.preset} "
          f"({tcfg.model.resolution} px), face size {args.face_size}, device {device}, "
          f"amp {args.amp} (bf16: {model.bf16}), torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")

    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up: first torch call, dlib model loading.
        model(probe.analyze(first)[0].aligned[None])

        # Naive: one frame at a time, nothing overlapped.
        t0 = time.perf_counter()
        analyzer = FaceAnalyzer(analyzer_config(args.face_size, coverage), with_embedding=True)
        swapper = Swapper(model, analyzer, dataclasses.replace(cfg, batch=1), identity, analyzer.new_smoother())
        n_naive = 0
        with VideoReader(clip, stop=args.frames) as r, VideoWriter(Path(tmp) / "naive.mp4", fps, width, height,
                                                                    preset=args.encode_preset) as w:
            for result in swapper.swap_frames_serial(r):
                w.write(result.frame)
                n_naive += 1
        naive_s = time.perf_counter() - t0

        # Pipeline.
        t0 = time.perf_counter()
        summary = swap_video(clip, Path(tmp) / "pipeline.mp4", swap_model, cfg, progress=False)
        pipe_s = time.perf_counter() - t0

    naive_fps, pipe_fps = n_naive / naive_s, summary.frames / pipe_s
    print(f"naive loop : {n_naive} frames in {naive_s:.1f} s = {naive_fps:.2f} frames/s")
    print(f"pipeline   : {summary.frames} frames in {pipe_s:.1f} s = {pipe_fps:.2f} frames/s "
          f"({summary.frames_swapped} swapped)")
    print(f"speed-up   : {pipe_fps / naive_fps:.2f}x (target >= 2x)")
    target = 60 if device.startswith("cuda") else 10
    print(f"absolute   : {pipe_fps:.1f} frames/s vs target {target} frames/s on {device}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
