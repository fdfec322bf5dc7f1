"""Model folders: weights in safetensors, everything else in JSON. Nothing is ever unpickled.

    MODEL_DIR/
      config.json                 the full resolved TrainConfig (face_size and coverage included)
      identities.json             {"a": [128 floats], "b": [...]}: mean dlib embeddings of each faceset
      autoencoder.safetensors     latest weights (hard link into the newest snapshot); metadata: step
      discriminator.safetensors   only when trained with a GAN
      metrics.csv, previews/, tensorboard/
      checkpoints/step_XXXXXX/    complete snapshots, the newest `keep_backups` of them
        autoencoder.safetensors, discriminator.safetensors
        optimizer_g.safetensors + optimizer_g.json   optimizer tensors / the rest of its state_dict
        optimizer_d.safetensors + optimizer_d.json
        state.safetensors + state.json               RNG states / step and trainer bookkeeping

Crash safety: a snapshot is written into a hidden temp folder, fsynced, then renamed into place in one
step, so a `checkpoints/step_*` folder is always complete. A kill -9 at any moment leaves the previous
snapshot (and the previous top-level weights) intact.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepfake.config import TrainConfig, from_dict, to_dict
from deepfake.errors import DeepfakeError, ModelDirError
from deepfake.io.atomic import fsync_path, atomic_path, atomic_write_json

CONFIG = "config.json"
IDENTITIES = "identities.json"
AUTOENCODER = "autoencoder.safetensors"
DISCRIMINATOR = "discriminator.safetensors"
SNAPSHOTS = "checkpoints"


@dataclass
class LoadedModel:
    config: TrainConfig
    autoencoder: torch.nn.Module
    discriminator: torch.nn.Module | None
    step: int
    identities: dict[str, np.ndarray] | None = None  # "a"/"b" -> (128,) mean embedding, when recorded


@dataclass
class Snapshot:
    """Everything needed to resume exactly: weights, optimizer states, RNG states and bookkeeping."""

    step: int
    autoencoder: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor] | None
    optimizer_g: dict[str, Any]
    optimizer_d: dict[str, Any] | None
    rng: dict[str, torch.Tensor]  # name -> torch.Generator.get_state() (uint8)
    state: dict[str, Any]  # JSON-able trainer bookkeeping


# ----------------------------------------------------------------------------------------------------
# safetensors helpers.


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _load_tensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelDirError(f"{path}: unreadable weight file ({e})") from None


def _step_of(path: Path) -> int | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return int(meta["step"]) if "step" in meta else None
    except (SafetensorError, OSError, ValueError):
        return None


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and the JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, slots in state_dict["state"].items():
        plain[str(pid)] = {}
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value
            else:
                plain[str(pid)][name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain": plain}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(slots) for pid, slots in meta["plain"].items()}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# ----------------------------------------------------------------------------------------------------
# Writing.


def write_config(model_dir: str | Path, cfg: TrainConfig, identities: dict[str, np.ndarray] | None = None) -> None:
    model_dir = Path(model_dir)
    atomic_write_json(model_dir / CONFIG, to_dict(cfg))
    if identities is not None:
        atomic_write_json(model_dir / IDENTITIES, {k: [float(x) for x in v] for k, v in identities.items()})


def save_snapshot(model_dir: str | Path, snap: Snapshot, keep: int = 3) -> Path:
    """Write a complete snapshot, publish its weights at the top level, drop snapshots beyond `keep`."""
    model_dir = Path(model_dir)
    root = model_dir / SNAPSHOTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{snap.step:06d}"
    tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = {"step": str(snap.step)}
        _save_tensors(tmp / AUTOENCODER, snap.autoencoder, meta)
        if snap.discriminator is not None:
            _save_tensors(tmp / DISCRIMINATOR, snap.discriminator, meta)
        for name, sd in (("optimizer_g", snap.optimizer_g), ("optimizer_d", snap.optimizer_d)):
            if sd is None:
                continue
            tensors, plain = flatten_optimizer(sd)
            _save_tensors(tmp / f"{name}.safetensors", tensors)
            atomic_write_json(tmp / f"{name}.json", plain)
        _save_tensors(tmp / "state.safetensors", snap.rng)
        atomic_write_json(tmp / "state.json", {"step": snap.step, **snap.state})
        fsync_path(tmp)
        if final.exists():  # the same step saved again (e.g. Ctrl-C right after a resume)
            _discard(final)
        os.rename(tmp, final)
        fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Publish: the top-level files are hard links into the snapshot, swapped in atomically.
    for name in (AUTOENCODER, DISCRIMINATOR):
        if (final / name).exists():
            _publish(final / name, model_dir / name)
    _rotate(root, keep)
    return final


def _publish(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(src, tmp)


def _discard(folder: Path) -> None:
    # Rename first (atomic), so a kill during the slow delete leaves no half-deleted step_* folder.
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _rotate(root: Path, keep: int) -> None:
    for stale in list(root.glob(".tmp-*")) + list(root.glob(".trash-*")):
        shutil.rmtree(stale, ignore_errors=True)  # leftovers of a killed save
    snaps = list_snapshots(root.parent)
    for old in snaps[: max(0, len(snaps) - max(1, keep))]:
        _discard(old)


# ----------------------------------------------------------------------------------------------------
# Reading.


def list_snapshots(model_dir: str | Path) -> list[Path]:
    """Complete snapshots, oldest first."""
    root = Path(model_dir) / SNAPSHOTS
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit():
            found.append((int(p.name[5:]), p))
    return [p for _, p in sorted(found)]


def read_config(model_dir: str | Path) -> TrainConfig:
    path = Path(model_dir) / CONFIG
    if not path.is_file():
        raise ModelDirError(f"{path}: missing (not a model folder made by `deepfake train`)")
    try:
        return from_dict(TrainConfig, json.loads(path.read_text(encoding="utf-8")), where=str(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{path}: bad config ({e})") from None
    except DeepfakeError as e:
        raise ModelDirError(f"bad config: {e}") from None


def read_identities(model_dir: str | Path) -> dict[str, np.ndarray] | None:
    path = Path(model_dir) / IDENTITIES
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {k: np.asarray(v, dtype=np.float32) for k, v in data.items()}
    except (OSError, ValueError):
        return None


def load_snapshot(folder: Path, device: str = "cpu") -> Snapshot:
    def opt(name: str) -> dict[str, Any] | None:
        if not (folder / f"{name}.json").is_file():
            return None
        meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        return unflatten_optimizer(_load_tensors(folder / f"{name}.safetensors", device), meta)

    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    return Snapshot(
        step=int(state.pop("step")),
        autoencoder=_load_tensors(folder / AUTOENCODER, device),
        discriminator=_load_tensors(folder / DISCRIMINATOR, device) if (folder / DISCRIMINATOR).exists() else None,
        optimizer_g=opt("optimizer_g"),
        optimizer_d=opt("optimizer_d"),
        rng=_load_tensors(folder / "state.safetensors"),
        state=state,
    )


def latest_snapshot(model_dir: str | Path, device: str = "cpu") -> Snapshot | None:
    """The newest readable snapshot, or None for a fresh folder."""
    for folder in reversed(list_snapshots(model_dir)):
        try:
            return load_snapshot(folder, device)
        except (ModelDirError, OSError, ValueError, KeyError):
            continue  # damaged by something other than us (the rename makes ours complete); try older
    return None


def _load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelDirError(f"{path}: weights do not match config.json ({first})") from None


def load_model_dir(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Rebuild the trained networks from a model folder alone. Raises ModelDirError with a one-line reason."""
    from deepfake.models import build_autoencoder, build_discriminator

    model_dir = Path(path)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: model folder does not exist")
    cfg = read_config(model_dir)
    weights = model_dir / AUTOENCODER
    if not weights.is_file():
        # A kill before the first publish: the snapshot itself is complete.
        snaps = list_snapshots(model_dir)
        if not snaps or not (snaps[-1] / AUTOENCODER).is_file():
            raise ModelDirError(f"{weights}: missing weight file (has this model been trained and saved?)")
        weights = snaps[-1] / AUTOENCODER
    try:
        autoencoder = build_autoencoder(cfg.model)
    except DeepfakeError as e:
        raise ModelDirError(f"{model_dir / CONFIG}: bad config ({e})") from None
    _load_into(autoencoder, _load_tensors(weights, "cpu"), weights)
    discriminator = None
    d_weights = weights.with_name(DISCRIMINATOR)
    if d_weights.is_file():
        discriminator = build_discriminator(cfg.discriminator, cfg.model.resolution)
        _load_into(discriminator, _load_tensors(d_weights, "cpu"), d_weights)
        discriminator.to(device).eval()
    autoencoder.to(device).eval()
    step = _step_of(weights) or 0
    return LoadedModel(cfg, autoencoder, discriminator, step, read_identities(model_dir))

