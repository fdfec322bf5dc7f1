"""Live speed: `deepfake live`'s pipeline against a naive per-frame loop, in the same run.

    python benchmarks/live_speed.py [--clip ../shared/media/d6.mp4] [--seconds 10] [--presets quick df128]

The clip (480x480, 30 fps) is played as live, at its own rate, as `deepfake live CLIP` plays it: frames
the pipeline cannot keep up with are dropped. Per preset, with untrained weights (speed does not depend
on them) in a model folder at the face size extract writes by default:

- live: deepfake.live.run.run_live, the command's own code: the newest frame wins, landmarks tracked with
  a detection every 10 frames, the model as an ONNX graph exported on the fly (onnxruntime, 1 thread),
  capture, landmarks and model + paste on three threads. Reported: frames swapped per second of wall
  clock, the share of frames dropped, p50/p95 latency from capture to output.
- naive: the same frames decoded beforehand, one at a time: detect on every frame (the analyzer, no
  tracking), the model in PyTorch eager, the same compose and mark, nothing overlapped. Reported: frames
  per second of its own work (it never waits for the clock), and that rate over the live rate.

Goals (issue 28), quick on 2 CPU cores: >= 90 % of frames swapped, p95 latency <= 100 ms, >= 3x the
naive loop's rate. Rows print as Markdown for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def model_folder(root: Path, preset: str, face_size: int) -> Path:
    """A model folder with the preset's untrained weights, as `deepfake train` would leave it."""
    import torch
    from safetensors.torch import save_file

    from deepfake.model_dir import write_config
    from deepfake.models import build_autoencoder
    from deepfake.models.presets import preset_config

    torch.manual_seed(0)
    cfg = dataclasses.replace(preset_config(preset), face_size=face_size, coverage=0.75)
    folder = root / preset
    folder.mkdir(parents=True)
    ae = build_autoencoder(cfg.model)
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(folder / "autoencoder.safetensors"),
              metadata={"step": "0"})
    write_config(folder, cfg)
    return folder


def naive(frames: list[np.ndarray], folder: Path, torch_threads: int) -> float:
    """Frames per second of the per-frame loop over `frames`."""
    import torch

    from deepfake.faces.analyzer import FaceAnalyzer
    from deepfake.live.engine import MARK_TEXT
    from deepfake.config import LiveConfig
    from deepfake.provenance.label import add_watermark
    from deepfake.swap.compose import compose_face
    from deepfake.swap.model import load_swap_model
    from deepfake.swap.pipeline import analyzer_config

    torch.set_num_threads(torch_threads)
    cfg = LiveConfig().swap_config()
    model = load_swap_model(folder, cfg)
    analyzer = FaceAnalyzer(analyzer_config(model.face_size, model.coverage, device="cpu"), with_embedding=False)
    start = time.perf_counter()
    for rgb in frames:
        out = rgb.copy()
        for f in analyzer.analyze(rgb)[:1]:
            faces, learned = model.model(f.aligned[None])
            compose_face(out, f.aligned, f.mask, f.matrix, faces[0], learned[0], cfg)
        add_watermark(out, MARK_TEXT)
    return len(frames) / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", default=str(ROOT.parent / "shared" / "media" / "d6.mp4"))
    p.add_argument("--seconds", type=float, default=10.0, help="of the clip played as live")
    p.add_argument("--presets", nargs="+", default=["quick", "df128"])
    p.add_argument("--face-size", type=int, default=256, help="extract's default aligned size")
    p.add_argument("--naive-frames", type=int, default=60)
    p.add_argument("--threads", type=int, default=1, help="live: onnxruntime's threads")
    p.add_argument("--naive-threads", type=int, default=2, help="naive: torch's threads")
    p.add_argument("--record", action="store_true",
                   help="one more live run per preset with -o FILE (libx264 and the invisible mark on the encoder thread)")
    args = p.parse_args()

    from deepfake.io.video import VideoReader
    from deepfake.config import LiveConfig
    from deepfake.live.run import run_live

    clip = Path(args.clip)
    with VideoReader(clip, stop=args.naive_frames) as r:
        frames = [rgb for _, _, rgb in r]
        size, fps = f"{r.width}x{r.height}", r.fps
    print(f"{clip.name}: {size} at {fps:g} fps, {args.seconds:g} s played as live; {platform.processor() or platform.machine()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            folder = model_folder(Path(tmp), preset, args.face_size)
            cfg = LiveConfig(threads=args.threads, seconds=args.seconds)
            runs = [(preset, None)] + ([(f"{preset}, -o file", Path(tmp) / f"{preset}.mp4")] if args.record else [])
            naive_fps = naive(frames, folder, args.naive_threads)
            print(f"{preset}: naive {naive_fps:.2f} frames/s")
            for name, output in runs:
                s = run_live(str(clip), None, folder, cfg, output=output, progress=False).stats.as_dict()
                swapped = s["frames_swapped"] / s["frames_in"]
                dropped = s["frames_dropped"] / s["frames_in"]
                rows.append(f"| {name} | {s['frames_in']} | {swapped:.0%} | {dropped:.0%} | {s['fps']:.1f} | "
                            f"{s['latency_ms']['p50']:.0f} | {s['latency_ms']['p95']:.0f} | {naive_fps:.1f} | "
                            f"{s['fps'] / naive_fps:.2f} |")
                print(f"{name}: live {s}")
    print("\n| preset | frames in | swapped | dropped | live swapped frames/s | p50 ms | p95 ms | naive frames/s | live / naive |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
