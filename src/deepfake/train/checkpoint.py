"""Training snapshots: everything needed to resume exactly (weights, both optimizers' state, RNG
states, the trainer's bookkeeping), under MODEL_DIR/checkpoints/step_XXXXXX/ (model_dir.py has the
folder's layout).

Crash safety: a snapshot is written into a hidden temp folder, fsynced, then renamed into place in one
step, so a `checkpoints/step_*` folder is always complete. A kill -9 at any moment leaves the previous
snapshot (and the previous top-level weights) intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepfake.io.atomic import atomic_write_json
from deepfake.model_dir import AUTOENCODER, DISCRIMINATOR, SNAPSHOTS, load_tensors, save_tensors
from deepfake.run_folder import (  # noqa: F401  (flatten/unflatten: this folder's format, tested from here)
    flatten_optimizer,
    load_optimizer,
    newest_readable,
    publish,
    rotate_snapshots,
    save_optimizer,
    snapshot_folder,
    unflatten_optimizer,
)

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


def save_snapshot(model_dir: str | Path, snap: Snapshot, keep: int = 3) -> Path:
    """Write a complete snapshot, publish its weights at the top level, drop snapshots beyond `keep`."""
    model_dir = Path(model_dir)
    with snapshot_folder(model_dir, snap.step) as tmp:
        meta = {"step": str(snap.step)}
        save_tensors(tmp / AUTOENCODER, snap.autoencoder, meta)
        if snap.discriminator is not None:
            save_tensors(tmp / DISCRIMINATOR, snap.discriminator, meta)
        if snap.code_discriminator is not None:
            save_tensors(tmp / CODE_DISCRIMINATOR, snap.code_discriminator, meta)
        for name, sd in (("optimizer_g", snap.optimizer_g), ("optimizer_d", snap.optimizer_d),
                         ("optimizer_code", snap.optimizer_code)):
            if sd is not None:
                save_optimizer(tmp, name, sd)
        save_tensors(tmp / "state.safetensors", snap.rng)
        atomic_write_json(tmp / "state.json", {"step": snap.step, **snap.state})
    final = model_dir / SNAPSHOTS / f"step_{snap.step:06d}"
    # Publish: the top-level files are hard links into the snapshot, swapped in atomically.
    for name in (AUTOENCODER, DISCRIMINATOR):
        if (final / name).exists():
            publish(final / name, model_dir / name)
    rotate_snapshots(model_dir, keep)
    return final


def load_snapshot(folder: Path, device: str = "cpu") -> Snapshot:
    def opt(name: str) -> dict[str, Any] | None:
        return load_optimizer(folder, name, device) if (folder / f"{name}.json").is_file() else None

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
    return newest_readable(model_dir, lambda folder: load_snapshot(folder, device))
