"""The mask model folder: the contract between `mask train` and `mask apply` / `swap --mask segmenter`.
Weights in safetensors, everything else in JSON; nothing is ever unpickled.

    MASK_MODEL/
      config.json                  the resolved MaskTrainConfig (the network's config included)
      segmenter.safetensors        latest weights; metadata: step, phase
      metrics.csv, previews/step_XXXXXX.png
      checkpoints/step_XXXXXX/     complete snapshots, the newest `keep_backups` of them
        segmenter.safetensors
        optimizer.safetensors + optimizer.json    Adam's tensors / the rest of its state_dict
        state.safetensors + state.json            RNG states / step, wall time, phase

Snapshots are written by train/checkpoint.py's snapshot_folder: into a hidden temp folder, fsynced and
renamed into place, so a `step_*` folder is always complete and a kill -9 leaves the last one loadable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepfake.config_io import load_json, save_json
from deepfake.errors import ModelDirError
from deepfake.io.atomic import atomic_write_json
from deepfake.config import MaskTrainConfig
from deepfake.segment.checks import validate
from deepfake.model_dir import AUTOENCODER, SNAPSHOTS, list_snapshots, load_tensors, save_tensors, step_of
from deepfake.models.segmenter import Segmenter, build_segmenter
from deepfake.run_folder import load_optimizer, newest_readable, rotate_snapshots, save_optimizer, snapshot_folder

CONFIG = "config.json"
SEGMENTER = "segmenter.safetensors"
KIND = "deepfake.segmenter"  # in the weights' metadata: tells a mask model from an autoencoder folder


@dataclass
class MaskSnapshot:
    step: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]  # name -> torch.Generator state
    state: dict[str, Any]  # JSON-able bookkeeping


@dataclass
class LoadedSegmenter:
    config: MaskTrainConfig
    net: Segmenter
    step: int
    path: Path


def write_config(folder: str | Path, cfg: MaskTrainConfig) -> None:
    save_json(cfg, Path(folder) / CONFIG)


def is_mask_model(folder: str | Path) -> bool:
    """Whether `folder` holds a mask model: its weights, or a config.json with the segmenter's own
    pretrain_steps (written before the first weights). A face-swap model's config has no such key."""
    folder = Path(folder)
    if (folder / SEGMENTER).is_file():
        return True
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "pretrain_steps" in config


def read_config(folder: str | Path) -> MaskTrainConfig:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ModelDirError(f"{path}: missing (not a mask model folder made by `deepfake mask train`)")
    if (Path(folder) / AUTOENCODER).is_file():
        raise ModelDirError(f"{folder}: a face-swap model (deepfake train), not a mask model (deepfake mask train)")
    cfg = load_json(MaskTrainConfig, path)
    validate(cfg)
    return cfg


def save_snapshot(folder: str | Path, snap: MaskSnapshot, keep: int = 2) -> Path:
    """Write a complete snapshot, publish its weights at the top level, drop snapshots beyond `keep`."""
    folder = Path(folder)
    meta = {"kind": KIND, "step": str(snap.step), "phase": str(snap.state.get("phase", ""))}
    with snapshot_folder(folder, snap.step) as tmp:
        save_tensors(tmp / SEGMENTER, snap.weights, meta)
        save_optimizer(tmp, "optimizer", snap.optimizer)
        save_tensors(tmp / "state.safetensors", snap.rng)
        atomic_write_json(tmp / "state.json", {"step": snap.step, **snap.state})
    save_tensors(folder / SEGMENTER, snap.weights, meta)  # small: a second atomic write, not a link
    rotate_snapshots(folder, keep)
    return folder / SNAPSHOTS / f"step_{snap.step:06d}"


def load_snapshot(path: Path) -> MaskSnapshot:
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    return MaskSnapshot(
        step=int(state.pop("step")),
        weights=load_tensors(path / SEGMENTER),
        optimizer=load_optimizer(path, "optimizer"),
        rng=load_tensors(path / "state.safetensors"),
        state=state,
    )


def latest_snapshot(folder: str | Path) -> MaskSnapshot | None:
    """The newest readable snapshot, or None for a fresh folder."""
    return newest_readable(folder, load_snapshot)


def load_mask_model(folder: str | Path, device: str | torch.device = "cpu") -> LoadedSegmenter:
    """Rebuild the segmenter from its folder alone, in eval mode on `device`. One-line ModelDirError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelDirError(f"{folder}: mask model folder does not exist")
    cfg = read_config(folder)
    weights = folder / SEGMENTER
    if not weights.is_file():
        snaps = list_snapshots(folder)
        if not snaps or not (snaps[-1] / SEGMENTER).is_file():
            raise ModelDirError(f"{weights}: missing (has this mask model been trained and saved?)")
        weights = snaps[-1] / SEGMENTER
    net = build_segmenter(cfg.model)
    try:
        net.load_state_dict(load_tensors(weights), strict=True)
    except RuntimeError as e:
        raise ModelDirError(f"{weights}: weights do not match config.json ({str(e).strip().splitlines()[0]})") from None
    return LoadedSegmenter(cfg, net.to(device).eval(), step_of(weights) or 0, folder)
