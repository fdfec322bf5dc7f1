"""Training snapshots: everything needed to resume exactly (weights, both optimizers' state, RNG
states, the trainer's bookkeeping), under MODEL_DIR/checkpoints/step_XXXXXX/ (model_dir.py has the
folder's layout).

Crash safety: a snapshot is written into a hidden temp folder, fsynced, then renamed into place in one
step, so a `checkpoints/step_*` folder is always complete. A kill -9 at any moment leaves the previous
snapshot (and the previous top-level weights) intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import torch

from deepfake.errors import ModelDirError
from deepfake.io.atomic import atomic_path, atomic_write_json, fsync_path
from deepfake.model_dir import AUTOENCODER, DISCRIMINATOR, SNAPSHOTS, list_snapshots, load_tensors, save_tensors

T = TypeVar("T")

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


@contextlib.contextmanager
def snapshot_folder(model_dir: str | Path, step: int) -> Iterator[Path]:
    """A hidden temp folder to write the snapshot of `step` into. On a clean exit it is fsynced and
    renamed to checkpoints/step_XXXXXX in one step (replacing a snapshot of the same step), so a
    `step_*` folder is always complete; on an error it is removed. Used by `train` and `mask train`."""
    root = Path(model_dir) / SNAPSHOTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_path(tmp)
        if final.exists():  # the same step saved again (e.g. Ctrl-C right after a resume)
            _discard(final)
        os.rename(tmp, final)
        fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
            _publish(final / name, model_dir / name)
    rotate_snapshots(model_dir, keep)
    return final


def save_optimizer(folder: Path, name: str, state_dict: dict[str, Any]) -> None:
    """An optimizer's state_dict as NAME.safetensors (its tensors) and NAME.json (the rest)."""
    tensors, plain = flatten_optimizer(state_dict)
    save_tensors(folder / f"{name}.safetensors", tensors)
    atomic_write_json(folder / f"{name}.json", plain)


def load_optimizer(folder: Path, name: str, device: str = "cpu") -> dict[str, Any]:
    meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    return unflatten_optimizer(load_tensors(folder / f"{name}.safetensors", device), meta)


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


def rotate_snapshots(model_dir: str | Path, keep: int) -> None:
    """Drop leftovers of killed saves, then all but the newest `keep` (at least one) snapshots."""
    root = Path(model_dir) / SNAPSHOTS
    for stale in list(root.glob(".tmp-*")) + list(root.glob(".trash-*")):
        shutil.rmtree(stale, ignore_errors=True)
    snaps = list_snapshots(model_dir)
    for old in snaps[: max(0, len(snaps) - max(1, keep))]:
        _discard(old)


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


def newest_readable(model_dir: str | Path, load: Callable[[Path], T]) -> T | None:
    """`load` of the newest snapshot folder it can read, or None when there is none."""
    for folder in reversed(list_snapshots(model_dir)):
        try:
            return load(folder)
        except (ModelDirError, OSError, ValueError, KeyError):
            continue  # damaged by something other than us (the rename makes ours complete); try older
    return None
