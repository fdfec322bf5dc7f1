"""Training's data: each identity's faceset decoded once into the uint8 cache on the device, the fixed
validation and preview faces, and each step's augmented micro-batches.

A step moves no faces between host and device: batches are index gathers from the on-device cache,
augmented on the device (augment.py), drawn on a side stream beside the previous step's phases
(data_stream.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn as nn

from deepfake.config import LossConfig, TrainConfig
from deepfake.errors import DeepfakeError
from deepfake.faceset import Faceset, read_faceset, side_split
from deepfake.faceset.cache import EpochSampler, FaceCache
from deepfake.faceset.mask_files import MaskSource
from deepfake.train import distributed as dist
from deepfake.train.augment import Augmented, augment, no_augment
from deepfake.train.build import to_layout
from deepfake.train.data_stream import DataStream
from deepfake.train.losses import per_face_loss, reconstruction_loss

log = logging.getLogger(__name__)


@dataclass
class Side:
    """One identity's data for the training device."""

    device: torch.device  # where batches go (the cache itself may stay in pinned host memory)
    cache: FaceCache
    train_rows: torch.Tensor  # (N_train,) rows of the cache
    val: Augmented | None  # the fixed validation faces, un-augmented
    preview: torch.Tensor  # (P, 3, R, R) float: the faces shown in previews
    sampler: EpochSampler


def load_side(path, cfg: TrainConfig, device: torch.device, side: str, generator: torch.Generator, progress: bool,
              masks: MaskSource | None = None):
    """Read a faceset (a folder or a read Faceset), decode it once with `masks` (train/loss_masks.py; default
    its hulls), split off the validation faces, put it on the device."""
    fs = path if isinstance(path, Faceset) else read_faceset(path)
    with dist.main_first():  # rank 0 builds the on-disk cache, the others then map it
        cache = FaceCache.from_faceset(fs, cfg.model.resolution, progress=progress and dist.is_main(), masks=masks)
    train_idx, val_idx = side_split(len(cache), cfg.val_fraction, cfg.seed, side, cfg.val_split)
    return fs, make_side(cache, train_idx, val_idx, cfg, device, generator)


def make_side(cache: FaceCache, train_idx, val_idx, cfg: TrainConfig, device: torch.device,
              generator: torch.Generator) -> Side:
    """One side's data from a decoded cache and its train/validation rows: the cache on the device (or
    pinned beside it), the fixed validation and preview faces, and the sampler over the training rows."""
    on_device = cache.pin()
    nbytes = on_device.images.numel() + on_device.masks.numel()
    if device.type != "cuda" or nbytes < 0.25 * torch.cuda.get_device_properties(device).total_memory:
        on_device = on_device.to(device)  # the usual case: the whole set lives on the device
    else:
        log.info("%s: %.1f GiB of faces stay in pinned host memory; batches are streamed", cache.cache_path, nbytes / 2**30)
    val = None
    if len(val_idx):
        v = on_device.subset(val_idx[: cfg.val_faces]).to(device)
        val = no_augment(v.images, v.masks, v.landmarks)
    # Preview columns: the validation faces first, topped up with training faces on small sets.
    shown_rows = torch.as_tensor(list(val_idx[: cfg.preview_faces]) + list(train_idx[: max(0, cfg.preview_faces - len(val_idx))]))
    shown = on_device.subset(shown_rows).to(device).images.float() / 255  # (P, 3, R, R)
    return Side(
        device=device,
        cache=on_device,
        train_rows=torch.as_tensor(train_idx, dtype=torch.int64).to(on_device.device),  # (N_train,) beside the cache
        val=val,
        preview=shown,
        sampler=EpochSampler(len(train_idx), generator, on_device.device,
                             yaw_weights([cache.records[i] for i in train_idx], cfg.data.yaw_bins) if cfg.data.uniform_yaw else None),
    )


def yaw_weights(records, bins: int) -> torch.Tensor:
    """(N,) sampling weights that make every yaw bin (equal width over the faces' yaw range) as likely
    as any other: 1 / the face's bin count. Faces without a pose share the middle bin."""
    yaws = np.array([float(r.pose.get("yaw", np.nan)) if r.pose else np.nan for r in records], dtype=np.float64)
    known = np.isfinite(yaws)
    if not known.any():
        raise DeepfakeError("data.uniform_yaw: the faceset records no head pose (re-extract it)")
    lo, hi = yaws[known].min(), yaws[known].max()
    edges = np.linspace(lo, hi, max(1, bins) + 1)[1:-1]
    which = np.where(known, np.digitize(np.nan_to_num(yaws, nan=(lo + hi) / 2), edges), len(edges) // 2)
    counts = np.bincount(which, minlength=len(edges) + 1)
    return torch.as_tensor(1.0 / counts[which], dtype=torch.float64)  # (N,)


def hardest(batch: Augmented, per_face_loss: torch.Tensor, k: int) -> Augmented:
    """The `k` faces of `batch` with the highest loss (hard-sample mining)."""
    top = per_face_loss.topk(k).indices  # (k,)
    return Augmented(**{f.name: getattr(batch, f.name)[top] for f in fields(batch)})


@torch.no_grad()
def mine_step(side_a: Side, side_b: Side, batch: int, cfg: TrainConfig, autoencoder: nn.Module, aug_gen: torch.Generator,
              step: int, autocast) -> tuple[list[Augmented], list[Augmented]]:
    """One step's batches of the hardest faces: `mining_pool` x batch faces drawn per side as usual, scored
    by the current model (per-face reconstruction loss), the hardest `batch` of each side kept."""
    pool = batch * max(1, cfg.data.mining_pool)
    out = []
    for side, which in ((side_a, "a"), (side_b, "b")):
        drawn = _draw(side, pool, cfg, aug_gen, step)
        with autocast():
            rgb, _ = autoencoder(drawn.inputs, which)
        out.append([hardest(drawn, per_face_loss(rgb, drawn.target, drawn.target_mask), batch)])
    to_layout(out[0] + out[1], cfg, side_a.device)
    return out[0], out[1]


def _draw(side: Side, batch: int, cfg: TrainConfig, aug_gen: torch.Generator, step: int, kernel=None) -> Augmented:
    rows = side.train_rows[side.sampler.next(batch * dist.world_size())]  # (global B,) one draw for all ranks
    rows = rows[dist.rank() * batch : (dist.rank() + 1) * batch]  # (B,) this rank's slice
    faces = side.cache.gather(rows, side.device)
    return augment(faces.images, faces.masks, faces.landmarks, cfg.augment, aug_gen, step, kernel)


def draw_step(side_a: Side, side_b: Side, batch: int, cfg: TrainConfig, aug_gen: torch.Generator, step: int,
              kernel, stream: DataStream) -> tuple[list[Augmented], list[Augmented]]:
    """The data section of one step: `grad_accum` augmented micro-batches per side, drawn on the data
    stream (beside the previous step's G and D phases on CUDA) and handed over to the main stream."""
    with stream.section():
        batches_a = [_draw(side_a, batch, cfg, aug_gen, step, kernel) for _ in range(cfg.grad_accum)]
        batches_b = [_draw(side_b, batch, cfg, aug_gen, step, kernel) for _ in range(cfg.grad_accum)]
        to_layout(batches_a + batches_b, cfg, side_a.device)
    stream.hand_over(batches_a + batches_b)
    return batches_a, batches_b


@torch.no_grad()
def validate(autoencoder: nn.Module, side: Side, which: str, loss_cfg: LossConfig, batch: int, autocast) -> torch.Tensor:
    """Mean reconstruction loss over the fixed validation faces of one side: a 0-d float32 tensor on the
    side's device, NaN without validation faces. Nothing is read back here (no host sync): the log row
    reads it, one window later."""
    if side.val is None:
        return torch.full((), float("nan"), device=side.device)
    was = autoencoder.training
    autoencoder.eval()
    total, n = torch.zeros((), device=side.val.inputs.device), side.val.inputs.shape[0]
    for i in range(0, n, batch):
        sl = slice(i, i + batch)
        with autocast():
            rgb, mask = autoencoder(side.val.inputs[sl], which)
            loss, _ = reconstruction_loss(rgb, mask, side.val.target[sl], side.val.target_mask[sl], side.val.landmarks[sl], loss_cfg)
        total += loss.float() * rgb.shape[0]
    autoencoder.train(was)
    return total / n
