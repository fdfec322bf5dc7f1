"""Training snapshots: everything needed to resume exactly (weights, both optimizers' state, RNG
states, the trainer's bookkeeping), under MODEL_DIR/checkpoints/step_XXXXXX/ (model_dir.py has the
folder's layout).

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

import torch

from deepfake.errors import ModelDirError
from deepfake.io.atomic import atomic_path, atomic_write_json, fsync_path
from deepfake.model_dir import AUTOENCODER, DISCRIMINATOR, SNAPSHOTS, list_snapshots, load_tensors, save_tensors

CODE_DISCRIMINATOR = "code_discriminator.safetensors"  # in snapshots only: swap never needs it


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
    code_discriminator: dict[str, torch.Tensor] | None = None  # true face's latent-code discriminator
    optimizer_code: dict[str, Any] | None = None


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
        save_tensors(tmp / AUTOENCODER, snap.autoencoder, meta)
        if snap.discriminator is not None:
            save_tensors(tmp / DISCRIMINATOR, snap.discriminator, meta)
        if snap.code_discriminator is not None:
            save_tensors(tmp / CODE_DISCRIMINATOR, snap.code_discriminator, meta)
        for name, sd in (("optimizer_g", snap.optimizer_g), ("optimizer_d", snap.optimizer_d),
                         ("optimizer_code", snap.optimizer_code)):
            if sd is None:
                continue
            tensors, plain = flatten_optimizer(sd)
            save_tensors(tmp / f"{name}.safetensors", tensors)
            atomic_write_json(tmp / f"{name}.json", plain)
        save_tensors(tmp / "state.safetensors", snap.rng)
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


def load_snapshot(folder: Path, device: str = "cpu") -> Snapshot:
    def opt(name: str) -> dict[str, Any] | None:
        if not (folder / f"{name}.json").is_file():
            return None
        meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        return unflatten_optimizer(load_tensors(folder / f"{name}.safetensors", device), meta)

    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    return Snapshot(
        step=int(state.pop("step")),
        autoencoder=load_tensors(folder / AUTOENCODER, device),
        discriminator=load_tensors(folder / DISCRIMINATOR, device) if (folder / DISCRIMINATOR).exists() else None,
        optimizer_g=opt("optimizer_g"),
        optimizer_d=opt("optimizer_d"),
        code_discriminator=load_tensors(folder / CODE_DISCRIMINATOR, device) if (folder / CODE_DISCRIMINATOR).exists() else None,
        optimizer_code=opt("optimizer_code"),
        rng=load_tensors(folder / "state.safetensors"),
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
