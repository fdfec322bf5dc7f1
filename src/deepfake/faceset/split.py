"""Which faces of a faceset train and which are held out for validation."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from deepfake.config.choices import VAL_SPLITS
from deepfake.errors import DeepfakeError
from deepfake.faceset.manifest import FaceRecord


def frame_order(records: Sequence[FaceRecord]) -> list[int]:
    """Record indices in (source, frame) order: sources in the order they first appear, each one's
    frames ascending, ties in manifest order. Extract writes a pass in this order; an
    append's faces of a video already in the faceset belong among that video's frames, not after them."""
    rank: dict[str, int] = {}
    for r in records:
        rank.setdefault(r.source_id or r.source, len(rank))
    return sorted(range(len(records)), key=lambda i: (rank[records[i].source_id or records[i].source],
                                                      -1 if records[i].frame is None else records[i].frame))


def split_train_val(n: int, fraction: float, seed: int = 0, how: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation index split. At least one validation face when n >= 2 and fraction > 0.

    random: faces drawn by `seed`. tail: the last faces in manifest order, which extract writes in
    (source, frame) order (`frame_order`), appends included: the end of the clip. From a video a random
    split holds out neighbours of training frames, nearly the same faces, so validation cannot see the
    model memorise; a tail split holds out a stretch the model never saw. A larger fraction's held-out
    faces contain a smaller one's, either way."""
    if how not in VAL_SPLITS:
        raise DeepfakeError(f"val_split '{how}': choose {' or '.join(VAL_SPLITS)}")
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    n_val = int(round(n * fraction))
    if fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, n - 1)
    if how == "tail":
        return np.arange(n - n_val, dtype=np.int64), np.arange(n - n_val, n, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# Each identity gets its own split seed, so A's and B's held-out faces are drawn independently.
SIDE_SEED_OFFSET = {"a": 0, "b": 1}


def side_split(n: int, fraction: float, seed: int, side: str, how: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """The train/validation split of one identity's faceset, as `deepfake train` makes it.

    Everything that must respect a model's held-out faces (evaluate, discriminator, detect tests) calls
    this with the model's `seed`, `val_fraction` and `val_split`, so no stage can drift from the training split.
    """
    return split_train_val(n, fraction, seed + SIDE_SEED_OFFSET[side], how)
