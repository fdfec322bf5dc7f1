"""Resuming a model folder: whether it holds a run, which settings a resume may change, its newest
readable snapshot, and that snapshot restored into the built run. The loop and `train --dry-run` apply
the same checks, so a dry run refuses what the run would refuse.

A resumed run keeps what decides its weights' shapes and its held-out faces: the network, the seed,
the validation split and the optimizer. Any other setting may change; the loop says which did.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import torch

from deepfake.config import TrainConfig
from deepfake.config.options import show
from deepfake.errors import DeepfakeError, ModelDirError
from deepfake.faceset import side_split
from deepfake.model_dir import AUTOENCODER, CONFIG, DISCRIMINATOR, SNAPSHOTS, list_snapshots, read_config
from deepfake.train import distributed as dist
from deepfake.train.checkpoint import CODE_DISCRIMINATOR, Snapshot, load_snapshot
from deepfake.train.reuse import differences

log = logging.getLogger(__name__)

# Settings a resume refuses to change, and why.
FIXED = {
    "seed": "it draws the held-out faces",
    "val_split": "it decides which faces are held out",
    "val_fraction": "it decides which faces are held out",
    "optimizer": "the saved optimizer state is of the other kind",
}
# Not settings of the run: `start` is where the weights began (kept as saved), a pool's folders are
# checked with its faces.
NOT_SETTINGS = ("start", "data.pool")


def holds_run(model_dir: str | Path) -> bool:
    """Whether `model_dir` holds trained weights or snapshots: a run to resume, never to start over. A
    folder with config.json alone (a dry run's) holds a config to start from."""
    model_dir = Path(model_dir)
    return (model_dir / AUTOENCODER).is_file() or bool(list_snapshots(model_dir))


def check_resumable(saved: TrainConfig, cfg: TrainConfig, model_dir: Path, pooled: bool) -> list[str]:
    """DeepfakeError (one line, naming the field) when `cfg` cannot resume the run saved with `saved`;
    otherwise the settings it changes, as "name old -> new"."""
    where = Path(model_dir) / CONFIG
    # A pair's folder resumed as a pretraining run (or the reverse) would silently turn into the other kind.
    if bool(saved.data.pool) != pooled:
        if pooled:
            raise DeepfakeError(f"{model_dir}: holds a pair's run (deepfake train), not a pretraining one; "
                                "resume it with deepfake train, or pretrain into a new folder")
        raise DeepfakeError(f"{model_dir}: holds a pretraining run (deepfake pretrain); resume it with deepfake "
                            f"pretrain, or start a pair from it in a new folder with --from {model_dir}")
    # Activation checkpointing changes memory and speed, not weights: it may be switched on a resume.
    saved = replace(saved, model=replace(saved.model, checkpoint_decoder=cfg.model.checkpoint_decoder))
    # A run trained without a discriminator may add one of any kind.
    network = ("model.", "discriminator.") if saved.loss.gan_weight > 0 else ("model.",)
    changes = []
    for name, old, new in differences(saved, cfg):
        if name.startswith(network):
            raise DeepfakeError(f"{where}: {name} is {show(old)} there, {show(new)} here: a resumed run keeps its "
                                "network; leave the change out, or train into a new folder")
        if name in FIXED:
            raise DeepfakeError(f"{where}: {name} is {show(old)} there, {show(new)} here, and a resumed run keeps "
                                f"it ({FIXED[name]}); leave it out, or train into a new folder")
        if not name.startswith(NOT_SETTINGS):
            changes.append(f"{name} {show(old)} -> {show(new)}")
    return changes


def _from_weights(model_dir: Path) -> str:
    return (f"to go on from its weights, train into a new folder: deepfake train --a A --b B -o NEW_DIR --from "
            f"{model_dir} --reset none")


def newest_snapshot(model_dir: str | Path, device: str = "cpu") -> tuple[Snapshot, Path]:
    """The newest readable snapshot and its folder. A damaged newer one is skipped with a warning; with
    none readable the run cannot resume exactly, and training from random weights would overwrite the
    folder's: ModelDirError naming the first unreadable file."""
    model_dir = Path(model_dir)
    snaps = list_snapshots(model_dir)
    if not snaps:
        raise ModelDirError(f"{model_dir / SNAPSHOTS}: missing, so {model_dir} cannot resume (its weights alone "
                            f"keep no optimizer or data-order state); {_from_weights(model_dir)}")
    skipped = []
    for folder in reversed(snaps):
        try:
            snap = load_snapshot(folder, device)
        except (ModelDirError, OSError, ValueError, KeyError) as e:
            skipped.append(_why(folder, e))
            continue
        if skipped:
            log.warning("%s; resuming from the older step %d", skipped[0], snap.step)
        return snap, folder
    raise ModelDirError(f"{skipped[0]}; no checkpoint of {model_dir} is readable ({len(snaps)} tried), so it "
                        f"cannot resume; {_from_weights(model_dir)}")


def _why(folder: Path, error: Exception) -> str:
    """What made a snapshot unreadable, naming its file."""
    if isinstance(error, ModelDirError):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            return f"{path}: unreadable ({e})"
    return f"{folder}: unreadable snapshot ({type(error).__name__}: {error})"


def check_faces(snap: Snapshot, train_counts: list[tuple[str, int]], model_dir: Path, pooled: bool) -> None:
    """DeepfakeError when a side has another number of training faces than when the snapshot was saved:
    its saved data order is over the old faces. `train_counts`: (what the side draws from, its training
    faces now) for side a, then b."""
    for (what, now), key in zip(train_counts, ("sampler_a", "sampler_b")):
        then = snap.rng[key].numel() - 1  # the saved state is the position, then the epoch's order
        if then != now:
            todo = "pretrain on the facesets it was saved with, or into a new folder" if pooled else _from_weights(model_dir)
            raise DeepfakeError(f"{what}: {now} training faces now, {then} when {model_dir} was saved (faces added "
                                f"or removed since), so the run cannot resume on it; {todo}")


def pair_train_counts(cfg: TrainConfig, facesets) -> list[tuple[str, int]]:
    """(faceset A's folder, its training faces), then B's: what check_faces compares."""
    return [(f"{fs.root} (faceset {side.upper()})", len(side_split(len(fs), cfg.val_fraction, cfg.seed, side,
                                                                   cfg.val_split)[0]))
            for side, fs in zip("ab", facesets)]


def describe(model_dir: Path, cfg: TrainConfig, pooled: bool) -> str:
    """What resuming `model_dir` with `cfg` would do, as `train --dry-run` says it; the run's own checks
    (one-line errors) when it could not."""
    changes = check_resumable(read_config(model_dir), cfg, model_dir, pooled)
    snap, folder = newest_snapshot(model_dir)
    _fits_on_meta(snap, folder, cfg, model_dir)
    changed = f", changing {', '.join(changes)}" if changes else " with its own settings"
    return f"dry run: would resume {model_dir} at step {snap.step}{changed}; nothing written"


def _fits_on_meta(snap: Snapshot, folder: Path, cfg: TrainConfig, model_dir: Path) -> None:
    """The snapshot's weights against the network config.json builds, shapes only (the meta device)."""
    from deepfake.models import build_autoencoder

    with torch.device("meta"):
        net = build_autoencoder(cfg.model)
    _load(net, snap.autoencoder, folder / AUTOENCODER, model_dir, assign=True)


def _load(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path, model_dir: Path,
          assign: bool = False) -> None:
    try:
        module.load_state_dict(tensors, assign=assign)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]  # the first line only names the module's class
        raise ModelDirError(f"{path}: weights do not match {Path(model_dir) / CONFIG} ({detail})") from None


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict, path: Path, model_dir: Path) -> None:
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as e:
        raise ModelDirError(f"{path}: optimizer state does not match {Path(model_dir) / CONFIG} ({e})") from None


def restore(snap: Snapshot, folder: Path, built, gens, side_a, side_b, model_dir: Path) -> None:
    """Load a snapshot's weights, optimizer states, samplers and random streams into the run (loop.py's
    Built, Generators and Sides). ModelDirError (one line) when its weights do not fit config.json."""
    cfg = built.cfg
    _load(built.autoencoder, snap.autoencoder, folder / AUTOENCODER, model_dir)
    _load_optimizer(built.opt_g, snap.optimizer_g, folder / "optimizer_g.json", model_dir)
    if built.discriminator is not None and snap.discriminator is not None:
        _load(built.discriminator, snap.discriminator, folder / DISCRIMINATOR, model_dir)
        if snap.optimizer_d is not None:
            _load_optimizer(built.opt_d, snap.optimizer_d, folder / "optimizer_d.json", model_dir)
    elif built.discriminator is not None:
        log.info("adding a discriminator to a model trained without one")
    code_d = built.likeness.code_d if built.likeness is not None else None
    if code_d is not None and snap.code_discriminator is not None:
        _load(code_d, snap.code_discriminator, folder / CODE_DISCRIMINATOR, model_dir)
        _load_optimizer(built.likeness.opt_code, snap.optimizer_code, folder / "optimizer_code.json", model_dir)
    # A loaded optimizer state brings the saved hyperparameters with it: this run's settings win (the
    # generator's learning rate is set every step by the loop).
    for opt, lr in ((built.opt_g, None), (built.opt_d, cfg.d_lr),
                    (built.likeness.opt_code if code_d is not None else None, cfg.d_lr)):
        for group in opt.param_groups if opt is not None else ():
            group.update(betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **({"lr": lr} if lr else {}))
    gens.sample.set_state(snap.rng["sample_gen"])
    saved_aug = snap.rng.get("aug_gen_ranks")  # (world, state): every rank's augmentation stream
    if saved_aug is not None and saved_aug.shape[0] == dist.world_size():
        gens.aug.set_state(saved_aug[dist.rank()].clone())  # exactly where each rank stopped
    elif dist.world_size() == 1:
        gens.aug.set_state(snap.rng["aug_gen"])
    else:
        # Saved with another number of processes: each rank starts a fresh stream of its own, so the
        # resumed run is correct but not bitwise the uninterrupted one.
        log.info("resuming on %d processes a run saved on another number: fresh augmentation streams", dist.world_size())
        gens.aug.manual_seed(dist.rank_seed(cfg.seed + 1 + snap.step))
    side_a.sampler.load(snap.rng["sampler_a"])
    side_b.sampler.load(snap.rng["sampler_b"])
