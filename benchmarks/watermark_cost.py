"""What the invisible mark and the Content Credentials add to `deepfake swap`'s time per frame.

    python benchmarks/watermark_cost.py [--clip ../shared/media/d18.mp4] [--frames 90] [--preset original64]

The same run swaps the first --frames frames of a 480p clip with a model of train's default preset
(untrained weights: a model's cost does not depend on what it learned), with the mark and credentials
on and off, alternating, and prints the median seconds per frame of each and the ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch


def untrained_model(folder: Path, preset: str) -> Path:
    from safetensors.torch import save_file

    from deepfake.model_dir import write_config
    from deepfake.models import build_autoencoder
    from deepfake.models.presets import preset_config

    folder.mkdir(parents=True)
    from deepfake.config import ExtractConfig

    e = ExtractConfig()  # the facesets train would have seen: extract's defaults
    cfg = dataclasses.replace(preset_config(preset), face_size=e.size, coverage=e.coverage)
    ae = build_autoencoder(cfg.model)
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(folder / "autoencoder.safetensors"),
              metadata={"step": "0"})
    write_config(folder, cfg, {})
    return folder


def main() -> int:
    from deepfake.config import SwapConfig
    from deepfake.swap.run import swap

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "media" / "d18.mp4"))
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", default="original64", help="the model's preset (train's default): its cost "
                    "per face does not depend on its training")
    args = ap.parse_args()
    torch.set_num_threads(2)
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        model = untrained_model(Path(tmp) / args.preset, args.preset)
        for r in range(args.repeats):
            for on in (False, True):
                cfg = SwapConfig(all_faces=True, frames=args.frames, invisible_mark=on, preset="ultrafast", device="cpu")
                out = Path(tmp) / f"out_{r}_{on}.mp4"
                if not on:  # "off" also leaves out the signing: the credentials' cost is counted with the mark
                    out = out.with_suffix(".mkv")
                t0 = time.perf_counter()
                s = swap(args.clip, out, model, cfg, progress=False)
                times[on].append((time.perf_counter() - t0) / s.frames)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"without: {off * 1000:.1f} ms/frame, with mark + credentials: {on * 1000:.1f} ms/frame, "
          f"+{(on / off - 1) * 100:.1f} %  (runs: {[round(t * 1000, 1) for t in times[False]]} / "
          f"{[round(t * 1000, 1) for t in times[True]]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
