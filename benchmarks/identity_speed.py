"""Identity embeddings per second: dlib's per-face call against the torch port, on the same chips.

    python benchmarks/identity_speed.py [--faces 64] [--batch 32] [--threads N] [--device cpu] [--quick]

Faces are the first frames of d6.mp4 and d14.mp4 (dlib HOG + 68 landmarks), cut into 150 px chips
with dlib.get_face_chip. Baseline: dlib's face_recognition_model_v1.compute_face_descriptor(chip), one
face per call, as deepfake.faces.identity uses it. Ours: IdentityNet on batches of `--batch` chips
(uint8, under inference_mode). Also printed, not in the ratio: dlib's own batched call on the list of
chips, and our chip extraction + net from the full frames (embed_faces). The best of `--repeat` runs
counts; the
ratio is the median over rounds in which the cases take turns. Torch runs on one thread by default,
as dlib's call does (it is single-threaded); on a shared 2-core box two torch threads also stall on
each other's barriers (measured here: 5-110 faces/s from run to run). `--quick` is a smoke test: 8
faces, one round.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared harness beside this file
from harness import MEDIA  # noqa: E402


def load_faces(n: int):
    """n (frame, dlib shape, chip) from d6.mp4 and d14.mp4, half from each."""
    import dlib

    from deepfake.faces.dlib_models import SHAPE_68, dlib_model_path
    from deepfake.io.video import VideoReader

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path(SHAPE_68)))
    faces = []
    for clip, count in (("d6.mp4", (n + 1) // 2), ("d14.mp4", n // 2)):
        with VideoReader(MEDIA / clip, stop=count) as v:
            for _, _, rgb in v:
                dets = detector(rgb, 0)
                if dets:
                    shape = predictor(rgb, dets[0])
                    faces.append((rgb, shape, dlib.get_face_chip(rgb, shape, size=150, padding=0.25)))
    return faces


def measure(cases: dict, n_faces: int, repeat: int) -> dict[str, list[float]]:
    """Faces per second of each case (a function that embeds all faces once), `repeat` times. The
    cases take turns within each round, so a busy neighbour on a shared box slows all of them alike."""
    for fn in cases.values():
        fn()  # warm-up: first calls allocate
    rates = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            rates[name].append(n_faces / (time.perf_counter() - t0))
    return rates


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads; 1 (default) matches dlib's one thread; 0: torch's default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="8 faces, one run (CI smoke test)")
    args = p.parse_args()
    if args.quick:
        args.faces, args.repeat = 8, 1
    if not (MEDIA / "d6.mp4").exists():
        print(f"shared media not found at {MEDIA} (set DEEPFAKE_MEDIA)", file=sys.stderr)
        return 2

    import dlib
    import numpy as np
    import torch

    from deepfake.faces.dlib_models import RESNET, dlib_model_path
    from deepfake.faces.identity_net import IdentityNet

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    faces = load_faces(args.faces)
    n = len(faces)
    chips = [c for _, _, c in faces]
    dlib_net = dlib.face_recognition_model_v1(str(dlib_model_path(RESNET)))
    net = IdentityNet.from_dlib().to(device)
    batches = [torch.from_numpy(np.stack(chips[i : i + args.batch])).permute(0, 3, 1, 2).to(device) for i in range(0, n, args.batch)]
    # Full frames for embed_faces, batched per clip (the clips' frames differ in size).
    full = []
    for size in dict.fromkeys(f.shape for f, _, _ in faces):
        same = [(f, s) for f, s, _ in faces if f.shape == size]
        for i in range(0, len(same), args.batch):
            part = same[i : i + args.batch]
            imgs = torch.from_numpy(np.stack([f for f, _ in part])).permute(0, 3, 1, 2).to(device)  # (b, 3, H, W) uint8
            lms = torch.tensor(np.array([[(q.x, q.y) for q in s.parts()] for _, s in part]), dtype=torch.float32, device=device)
            full.append((imgs, lms))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def ours():
        with torch.inference_mode():
            for b in batches:
                net(b)
        sync()

    def ours_full():
        with torch.inference_mode():
            for imgs, lms in full:
                net.embed_faces(imgs.float() / 255, lms)
        sync()

    print(f"{n} faces (d6.mp4, d14.mp4), batch {args.batch}, device {device}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    rates = measure({
        "dlib compute_face_descriptor(chip), per face": lambda: [dlib_net.compute_face_descriptor(c) for c in chips],
        "dlib compute_face_descriptor(chips), batched": lambda: dlib_net.compute_face_descriptor(chips),
        f"IdentityNet(chips), batch {args.batch}": ours,
        "embed_faces(frames, landmarks), chip + net": ours_full,
    }, n, args.repeat)
    for i, (name, r) in enumerate(rates.items()):
        note = "" if i in (0, 2) else "   (not in the ratio)"
        print(f"{name:46s}: {max(r):8.1f} faces/s (best of {len(r)}){note}")
    per_face, batched = rates["dlib compute_face_descriptor(chip), per face"], rates[f"IdentityNet(chips), batch {args.batch}"]
    ratios = sorted(o / d for o, d in zip(batched, per_face))
    print(f"IdentityNet / dlib per face: {ratios[len(ratios) // 2]:.2f}x (median of {len(ratios)} paired runs; "
          f"range {ratios[0]:.2f}-{ratios[-1]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
