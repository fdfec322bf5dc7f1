"""What the invisible mark and the Content Credentials add to `deepfake swap`'s time per frame.

    python benchmarks/watermark_cost.py [--clip ../shared/media/d18.mp4] [--frames 90] [--repeats 2]

The same run swaps the first --frames frames of a 480p clip with a tiny model, with the mark and
credentials on and off, alternating, and prints the median seconds per frame of each and the ratio.
The model is untrained: the model's share of the time is as small as it gets, so the ratio is an upper
bound for real models.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch


def tiny_model(folder: Path) -> Path:
    from safetensors.torch import save_file

    from deepfake.model_dir import write_config
    from deepfake.models import build_autoencoder
    from deepfake.models.presets import preset_config

    folder.mkdir(parents=True)
    cfg = dataclasses.replace(preset_config("tiny"), face_size=128, coverage=0.75)
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
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "tiny")
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
