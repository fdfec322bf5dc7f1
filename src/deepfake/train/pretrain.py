"""Pretraining (`deepfake pretrain`): one autoencoder learns faces in general from a pool of facesets of
any number of people, in training's own loop (loop.py's `pool`), with DeepFaceLab's pretrain rules.

The rules, as `pretrain_config` sets them:
- both sides draw from the whole pool, so each decoder learns every face and the encoder and bottleneck
  learn faces in general, not one pair;
- random warp off, flips on: the warp teaches a pair's model to generalise from few faces, which a pool
  of many people does by itself;
- no GAN and no learning-rate dropout, both end-of-training refinements of one pair;
- uniform yaw: batches balanced over head yaw across the pool, so profiles are not starved.
The identity loss and true face are off as well: each pulls a decoder towards one person, and a pool has many.

A pair then starts from the pretrained folder with `train --from` (reuse.py).

    cfg = pretrain_config(preset_config("quick"))
    pretrain(cfg, ["facesets/d3", "facesets/d18", "facesets/s18"], "models/pretrained", minutes=10)
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from deepfake.config import TrainConfig
from deepfake.faceset import split_train_val
from deepfake.faceset.cache import EpochSampler, FaceCache
from deepfake.train import distributed as dist
from deepfake.train.batches import Side, make_side
from deepfake.train.checks import RunInputs

log = logging.getLogger(__name__)


def pretrain_config(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with DeepFaceLab's pretrain rules (the module's docstring says why each)."""
    return replace(
        cfg,
        augment=replace(cfg.augment, warp=False, warp_until_step=0, flip=True, affine_until_step=0),
        loss=replace(cfg.loss, gan_weight=0.0, gan_start_step=0, identity_weight=0.0, true_face_weight=0.0),
        data=replace(cfg.data, uniform_yaw=True),
        lr_dropout=0.0,
    )


def pretrain(cfg: TrainConfig, facesets, out_dir, **kwargs):
    """Train `cfg` (see pretrain_config) with both sides drawing from `facesets`; `train`'s keyword
    arguments (minutes, stop_at, progress, ...) pass through. An existing folder is resumed."""
    from deepfake.train.loop import train

    # An empty pool is refused in one line where train() enters (checks.finish).
    return train(cfg, None, None, out_dir, pool=[str(f) for f in facesets], **kwargs)


def interleave(groups: list[np.ndarray]) -> np.ndarray:
    """The rows of each group taken in turn (first of each, then second of each, ...): a pool's first
    validation and preview faces then show every person, not the first faceset's alone."""
    longest = max((len(g) for g in groups), default=0)
    return np.asarray([g[i] for i in range(longest) for g in groups if i < len(g)], dtype=np.int64)


def load_pool(inputs: RunInputs, device: torch.device, generator: torch.Generator,
              progress: bool) -> tuple[Side, Side]:
    """Both sides of a pretraining run (`inputs`: the pool, read and finished by checks.finish). The pool's
    faces are decoded once into one cache and split once (each faceset as `train` splits a side, so
    held-out faces stay held out for both decoders); the two sides share the cache, the training rows and
    the validation faces, each with its own sampler."""
    cfg = inputs.cfg
    caches = []
    for fs, masks in zip(inputs.facesets, inputs.masks):
        with dist.main_first():
            caches.append(FaceCache.from_faceset(fs, cfg.model.resolution, progress=progress and dist.is_main(),
                                                 masks=masks))
    pool = FaceCache(torch.cat([c.images for c in caches]), torch.cat([c.masks for c in caches]),
                     torch.cat([c.landmarks for c in caches]), [r for c in caches for r in c.records])
    train_idx, val_idx = pool_split([len(c) for c in caches], cfg)
    side_a = make_side(pool, train_idx, val_idx, cfg, device, generator)
    side_b = replace(side_a, sampler=EpochSampler(len(train_idx), generator, side_a.cache.device, side_a.sampler.weights))
    log.info("pretraining on %d faces of %d facesets (%d held out)", len(train_idx), len(caches), len(val_idx))
    return side_a, side_b


def pool_split(sizes: list[int], cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The pool's training and validation rows, for facesets of `sizes` faces stacked in that order: each
    faceset split as `train` splits a side (its own seed), the held-out faces interleaved."""
    trains, vals, offset = [], [], 0
    for i, n in enumerate(sizes):
        t, v = split_train_val(n, cfg.val_fraction, cfg.seed + i, cfg.val_split)
        trains.append(t + offset)
        vals.append(v + offset)
        offset += n
    return np.concatenate(trains), interleave(vals)


def pool_train_counts(cfg: TrainConfig, facesets) -> list[tuple[str, int]]:
    """What each side of a pretraining run draws from and its training faces (both sides: the pool's)."""
    n = len(pool_split([len(fs) for fs in facesets], cfg)[0])
    what = f"the pretraining pool ({', '.join(str(fs.root) for fs in facesets)})"
    return [(what, n), (what, n)]
