"""How long the face cache's key takes at 10,000 faces: one stat per face image and per hull file, the
manifest hashed (faceset/cache_key.py). Baseline in the same run: the manifest hash alone (a key blind to
the files), and reading the manifest, which every cache load does anyway.

    python benchmarks/cache_key_speed.py [--faces 10000] [--repeats 7]

The faces are small real PNGs in a temp folder (the key never reads them, only their size and time).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from deepfake.faceset import FaceRecord, new_header, read_faceset, write_manifest
from deepfake.faceset.cache_key import cache_key, manifest_hash
from deepfake.faceset.mask_files import MaskSource


def make_faceset(root: Path, n: int, size: int = 16) -> None:
    (root / "faces").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    lm = np.zeros((68, 2), np.float32).tolist()
    mask = np.full((size, size), 255, np.uint8)
    records = []
    for i in range(n):
        cv2.imwrite(str(root / "faces" / f"{i:06d}.png"), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "masks" / f"{i:06d}.png"), mask)
        records.append(FaceRecord(file=f"faces/{i:06d}.png", mask=f"masks/{i:06d}.png", source="bench", source_id="bench",
                                  frame=i, time=i / 30, face_index=0, bbox=[0, 0, size, size], landmarks=lm,
                                  aligned_landmarks=lm, matrix=[[1, 0, 0], [0, 1, 0]], size=size, score=1.0, blur=100.0,
                                  pose={"yaw": 0.0, "pitch": 0.0, "roll": 0.0}, embedding=[0.0] * 128))
    write_manifest(root, new_header({"size": size, "coverage": 0.75}), records)


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call, median of the next `repeats`) in milliseconds."""
    t = time.perf_counter()
    fn()
    first = (time.perf_counter() - t) * 1000
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return first, statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "faceset"
        t = time.perf_counter()
        make_faceset(root, args.faces)
        print(f"made {args.faces} faces in {time.perf_counter() - t:.1f} s ({platform.processor() or platform.machine()})")
        fs = read_faceset(root)
        key = cache_key(fs, MaskSource())
        assert len(key.files) == 2 * args.faces
        for name, fn in (("cache key (manifest + every face and hull file's size and mtime)", lambda: cache_key(fs, MaskSource())),
                         ("manifest hash alone (a key blind to the files)", lambda: manifest_hash(root)),
                         ("read_faceset (every cache load does it)", lambda: read_faceset(root))):
            first, median = timed(fn, args.repeats)
            print(f"{name}: first {first:.1f} ms, median of {args.repeats} {median:.1f} ms")


if __name__ == "__main__":
    main()
