"""The segmenter's data: the faces of one or more facesets at the segmenter's resolution, each with two
hulls, and the rasterised labels of the faces that have them. Decoded once through the faceset's uint8
cache (faceset/cache.py), then sampled by index on the device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepfake.errors import DeepfakeError
from deepfake.faces.hull import hull_mask
from deepfake.faceset import FaceRecord, read_faceset, split_train_val
from deepfake.faceset.cache import FaceCache
from deepfake.segment.labels import read_labels, rasterise

log = logging.getLogger(__name__)


@dataclass
class MaskData:
    images: torch.Tensor  # (N, 3, R, R) uint8 RGB
    hulls: torch.Tensor  # (N, 1, R, R) uint8: the hull of the configured region, the pretraining target
    whole: torch.Tensor  # (N, 1, R, R) uint8: the whole-face hull, which bounds the surroundings kept
    label_rows: torch.Tensor  # (M,) int64: rows that have labels
    label_targets: torch.Tensor  # (M, 1, R, R) uint8: their rasterised labels
    label_of: torch.Tensor  # (N,) int64: each row's index into label_targets, -1 = no label
    train_rows: torch.Tensor  # (T,) int64
    val_rows: torch.Tensor  # (V,) int64, never labelled: the labels are too few to hold any back
    records: list[tuple[Path, FaceRecord]]  # (faceset root, record) per row

    def __len__(self) -> int:
        return len(self.records)

    def targets(self, rows: torch.Tensor) -> torch.Tensor:
        """Each row's label when it has one, else its hull. (B, 1, R, R) uint8."""
        hulls = self.hulls[rows]
        if self.label_targets.shape[0] == 0:
            return hulls
        idx = self.label_of[rows]  # (B,)
        return torch.where((idx >= 0).view(-1, 1, 1, 1), self.label_targets[idx.clamp_min(0)], hulls)

    def to(self, device: torch.device) -> "MaskData":
        move = {k: getattr(self, k).to(device) for k in ("images", "hulls", "whole", "label_rows", "label_targets",
                                                          "label_of", "train_rows", "val_rows")}
        return MaskData(**move, records=self.records)


def load_mask_data(facesets: list[str | Path], resolution: int, region: str, val_fraction: float,
                   val_faces: int, seed: int, progress: bool = True) -> MaskData:
    """All faces of `facesets` with their hulls and labels. DeepfakeError (one line) on a bad faceset or
    labels file."""
    images, hulls, whole, records, label_rows, label_targets, val = [], [], [], [], [], [], []
    for path in facesets:
        fs = read_faceset(path)
        labels = read_labels(fs)  # validated against this manifest: a bad file stops here, named
        cache = FaceCache.from_faceset(fs, resolution, progress=progress)
        lm = cache.landmarks.numpy()  # (n, 68, 2) px at `resolution`
        region_hulls = np.stack([hull_mask(p, resolution, region) for p in lm])  # (n, R, R)
        whole_hulls = region_hulls if region == "whole" else np.stack([hull_mask(p, resolution) for p in lm])
        start = len(records)
        for i, rec in enumerate(cache.records):
            if rec.file in labels:
                label_rows.append(start + i)
                label_targets.append(rasterise(labels[rec.file], rec.size or fs.size, resolution, region_hulls[i]))
        missing = sorted(set(labels) - {r.file for r in cache.records})
        if missing:
            log.warning("%s: %d labelled face(s) unreadable, skipped (first: %s)", fs.root, len(missing), missing[0])
        _, v = split_train_val(len(cache), val_fraction, seed)
        val.extend(start + int(i) for i in v)
        images.append(cache.images)
        hulls.append(torch.from_numpy(region_hulls[:, None]))
        whole.append(torch.from_numpy(whole_hulls[:, None]))
        records.extend((fs.root, r) for r in cache.records)
    if not records:
        raise DeepfakeError("no faces to train the segmenter on")
    labelled = set(label_rows)
    val = [i for i in val if i not in labelled][:val_faces]
    train = sorted(set(range(len(records))) - set(val))
    if not train:
        raise DeepfakeError("no faces left to train on after holding out validation faces (lower val_fraction)")
    r = resolution
    label_of = torch.full((len(records),), -1, dtype=torch.int64)
    label_of[label_rows] = torch.arange(len(label_rows))
    return MaskData(
        images=torch.cat(images), hulls=torch.cat(hulls), whole=torch.cat(whole),
        label_rows=torch.tensor(label_rows, dtype=torch.int64),
        label_targets=torch.from_numpy(np.stack(label_targets)[:, None]) if label_targets else torch.zeros(0, 1, r, r, dtype=torch.uint8),
        label_of=label_of,
        train_rows=torch.tensor(train, dtype=torch.int64), val_rows=torch.tensor(val, dtype=torch.int64),
        records=records,
    )
