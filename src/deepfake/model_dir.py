"""The model folder: the contract between train and swap / evaluate / detect, as the faceset is between
extract and train. Weights in safetensors, everything else in JSON. Nothing is ever unpickled.

    MODEL_DIR/
      config.json                 the full resolved TrainConfig (face_size and coverage included)
      identities.json             {"a": [128 floats], "b": [...]}: mean dlib embeddings of each faceset
      autoencoder.safetensors     latest weights (hard link into the newest snapshot); metadata: step
      discriminator.safetensors   only when trained with a GAN
      metrics.csv, previews/, tensorboard/
      best/                       weights at the lowest validation loss so far; metadata: step, val_loss
      timeline/step_XXXXXX/       weights every `keep_every` steps (evaluate --timeline)
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
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from deepfake.config import DiscriminatorConfig, TrainConfig

from deepfake.config_io import from_dict, to_dict
from deepfake.errors import DeepfakeError, ModelDirError
from deepfake.io.atomic import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

CONFIG = "config.json"
IDENTITIES = "identities.json"
AUTOENCODER = "autoencoder.safetensors"
DISCRIMINATOR = "discriminator.safetensors"
# Metadata key of a discriminator weight file whose settings are not config.json's (`deepfake discriminator`
# may train another kind): its DiscriminatorConfig as JSON.
D_SETTINGS = "discriminator_config"
SNAPSHOTS = "checkpoints"
BEST = "best"
TIMELINE = "timeline"
# Config keys of speed paths since removed: they changed neither weights nor results, so a folder that
# still names them loads without them.
RETIRED_KEYS = {"compile_scope": (), "head_conv": ("model",)}


@dataclass
class LoadedModel:
    config: TrainConfig
    autoencoder: torch.nn.Module
    discriminator: torch.nn.Module | None
    step: int
    identities: dict[str, np.ndarray] | None = None  # "a"/"b" -> (128,) mean embedding, when recorded


# ----------------------------------------------------------------------------------------------------
# safetensors helpers.


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_tensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelDirError(f"{path}: unreadable weight file ({e})") from None


def step_of(path: Path) -> int | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return int(meta["step"]) if "step" in meta else None
    except (SafetensorError, OSError, ValueError):
        return None


def discriminator_config(path: Path, cfg: TrainConfig) -> DiscriminatorConfig:
    """The settings of the discriminator in weight file `path`: its own when the file records them, else
    the model's (config.json)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(D_SETTINGS)
    except (SafetensorError, OSError) as e:
        raise ModelDirError(f"{path}: unreadable weight file ({e})") from None
    if text is None:
        return cfg.discriminator
    try:
        return from_dict(DiscriminatorConfig, json.loads(text), where=f"{path} {D_SETTINGS}")
    except ValueError as e:
        raise ModelDirError(f"{path}: unreadable {D_SETTINGS} ({e})") from None
    except DeepfakeError as e:
        raise ModelDirError(str(e)) from None


def write_config(model_dir: str | Path, cfg: TrainConfig, identities: dict[str, np.ndarray] | None = None) -> None:
    model_dir = Path(model_dir)
    atomic_write_json(model_dir / CONFIG, to_dict(cfg))
    if identities is not None:
        atomic_write_json(model_dir / IDENTITIES, {k: [float(x) for x in v] for k, v in identities.items()})


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
        return from_dict(TrainConfig, _drop_retired(json.loads(path.read_text(encoding="utf-8"))), where=str(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{path}: bad config ({e})") from None
    except DeepfakeError as e:
        raise ModelDirError(f"bad config: {e}") from None


def _drop_retired(data):
    for key, parents in RETIRED_KEYS.items():
        holder = data
        for p in parents:
            holder = holder.get(p, {}) if isinstance(holder, dict) else {}
        if isinstance(holder, dict) and holder.pop(key, None) is not None:
            log.info("config.json: ignoring the retired setting %s", ".".join(parents + (key,)))
    return data


def read_identities(model_dir: str | Path) -> dict[str, np.ndarray] | None:
    path = Path(model_dir) / IDENTITIES
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {k: np.asarray(v, dtype=np.float32) for k, v in data.items()}
    except (OSError, ValueError):
        return None


def _load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelDirError(f"{path}: weights do not match config.json ({first})") from None


def save_weights(folder: Path, weights: dict[str, dict[str, torch.Tensor]], meta: dict[str, str]) -> None:
    """Weights only, {"autoencoder": state dict, "discriminator": ...}, into `folder` (the best checkpoint,
    a timeline step). Each file is written atomically, the autoencoder last: its metadata says which step
    the folder holds, and a kill between the two leaves the previous autoencoder whole."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(weights, key=lambda n: n == "autoencoder"):
        save_tensors(folder / f"{name}.safetensors", weights[name], meta)


def kept_steps(model_dir: str | Path) -> dict[int, Path]:
    """Every step whose weights the folder holds: timeline steps and complete snapshots, step -> folder."""
    model_dir = Path(model_dir)
    found = {}
    for root in (model_dir / SNAPSHOTS, model_dir / TIMELINE):  # a timeline copy wins: it is never rotated
        if root.is_dir():
            for p in root.iterdir():
                if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit() and (p / AUTOENCODER).is_file():
                    found[int(p.name[5:])] = p
    return dict(sorted(found.items()))


def checkpoint_weights(model_dir: Path, checkpoint: str | int = "last") -> Path:
    """The autoencoder weight file of `checkpoint`: "last" (the newest), "best" (the validation minimum)
    or a step number. ModelDirError with the choices when it is not there."""
    if str(checkpoint) == "last":
        weights = model_dir / AUTOENCODER
        if weights.is_file():
            return weights
        # A kill before the first publish: the snapshot itself is complete.
        snaps = list_snapshots(model_dir)
        if not snaps or not (snaps[-1] / AUTOENCODER).is_file():
            raise ModelDirError(f"{weights}: missing weight file (has this model been trained and saved?)")
        return snaps[-1] / AUTOENCODER
    if str(checkpoint) == "best":
        weights = model_dir / BEST / AUTOENCODER
        if not weights.is_file():
            raise ModelDirError(f"{model_dir}: no best checkpoint (it is written at validations: train with val_every > 0)")
        return weights
    try:
        step = int(checkpoint)
    except ValueError:
        raise ModelDirError(f"checkpoint '{checkpoint}': expected best, last or a step number") from None
    kept = kept_steps(model_dir)
    if step not in kept:
        have = ", ".join(str(s) for s in kept) or "none"
        raise ModelDirError(f"{model_dir}: no checkpoint at step {step} (kept steps: {have})")
    return kept[step] / AUTOENCODER


def refuse_pretrained(model_dir: str | Path, cfg: TrainConfig, what: str) -> None:
    """ModelDirError when `model_dir` is a pretraining run: both its decoders draw the pool's faces in
    general, not one person, so a swap (or an export, for what) from it would show nobody."""
    if cfg.data.pool:
        raise ModelDirError(f"{model_dir}: a pretrained model (deepfake pretrain on {len(cfg.data.pool)} facesets) "
                            f"draws no one person, so it cannot {what}; train a pair from it first: deepfake train "
                            f"--a A --b B -o MODEL_DIR --from {model_dir}")


def load_model_dir(path: str | Path, device: str = "cpu", checkpoint: str | int = "last") -> LoadedModel:
    """Rebuild the trained networks from a model folder alone, with the weights of `checkpoint` (best,
    last or a step). Raises ModelDirError with a one-line reason."""
    from deepfake.models import build_autoencoder, build_discriminator

    model_dir = Path(path)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: model folder does not exist")
    cfg = read_config(model_dir)
    weights = checkpoint_weights(model_dir, checkpoint)
    try:
        autoencoder = build_autoencoder(cfg.model)
    except DeepfakeError as e:
        raise ModelDirError(f"{model_dir / CONFIG}: bad config ({e})") from None
    _load_into(autoencoder, load_tensors(weights, "cpu"), weights)
    discriminator = None
    d_weights = weights.with_name(DISCRIMINATOR)
    if d_weights.is_file():
        discriminator = build_discriminator(discriminator_config(d_weights, cfg), cfg.model.resolution)
        _load_into(discriminator, load_tensors(d_weights, "cpu"), d_weights)
        discriminator.to(device).eval()
    autoencoder.to(device).eval()
    step = step_of(weights) or 0
    return LoadedModel(cfg, autoencoder, discriminator, step, read_identities(model_dir))

