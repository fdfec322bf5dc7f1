"""Starting a run from another model's weights (`deepfake train --from MODEL_DIR --reset ...`): a
pretrained model (pretrain.py), or a model of another pair with the same architecture.

What `--reset` re-initialises, as DeepFaceLab does when pretraining ends:
- inter (the default): the bottleneck. DF: `inter`; LIAE: `inter_ab` and `inter_b`. The encoder and the
  decoders keep their weights: they know faces, and the new pair's codes are learned afresh.
- decoders: the decoders (DF: `decoder_a`, `decoder_b`; LIAE: its one `decoder`). The encoder and the
  bottleneck keep theirs: for a source whose decoders learned people unlike the new pair's.
- none: nothing. A<->B reused for A<->C, where A is the same person: A's decoder is already trained.
A re-initialised module gets exactly the weights a fresh run of the same seed would give it; every other
tensor is the source's, bitwise. The step counter starts at 0 (the preset's schedules, warp then GAN,
run again from their start). The discriminator is the source's when it has one of the same shape, else
fresh.

Every kept tensor also keeps its optimizer state (Adam's moments and step count) from the source's
snapshot of the same step, as DFL keeps its optimizer's when pretraining ends: a fresh Adam's first
update moves every weight by the full learning rate whatever its gradient, where the source's state
scales it by what the source's gradients were. A re-initialised tensor starts with none. A source
without that snapshot (weights copied without checkpoints/) or with another optimizer starts the
optimizer fresh, and says so. (What it changed in quality, within noise: docs/TUNING.md.)

The new folder's config.json records the start (`start`: the source folder, its config hash and step,
the reset), so a resumed run, and anyone reading the folder, knows where its weights came from.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Iterator

import torch

from deepfake.config import StartConfig, TrainConfig
from deepfake.config.choices import RESETS
from deepfake.config_io import to_dict
from deepfake.errors import DeepfakeError, ModelDirError
from deepfake.model_dir import (CONFIG, DISCRIMINATOR, SNAPSHOTS, checkpoint_weights, load_tensors, read_config,
                                step_of)
from deepfake.run_folder import load_optimizer

log = logging.getLogger(__name__)

# --reset NAME -> the autoencoder's modules it re-initialises, per architecture.
RESET_MODULES: dict[str, dict[str, tuple[str, ...]]] = {
    "df": {"inter": ("inter",), "decoders": ("decoder_a", "decoder_b"), "none": ()},
    "liae": {"inter": ("inter_ab", "inter_b"), "decoders": ("decoder",), "none": ()},
}
# Model fields that change memory or speed, never the weights: they may differ from the source's.
FREE_FIELDS = {"checkpoint_decoder"}


@dataclass
class Start:
    """A source model's weights, checked against the run that starts from them."""

    record: StartConfig  # what config.json records
    weights: Path  # the source's autoencoder weight file
    autoencoder: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor] | None
    optimizer_g: dict | None = None  # the source's optimizer states at the same step, where it kept them
    optimizer_d: dict | None = None


def config_hash(cfg: TrainConfig) -> str:
    """sha256 of a config as canonical JSON (sorted keys): the same settings, the same hash."""
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()


def first_difference(a, b, prefix: str) -> tuple[str, object, object] | None:
    """(dotted field, a's value, b's value) of the first field but FREE_FIELDS in which two dataclasses differ."""
    return next((d for d in differences(a, b, prefix) if d[0].rpartition(".")[2] not in FREE_FIELDS), None)


def differences(a, b, prefix: str = "") -> Iterator[tuple[str, object, object]]:
    """(dotted field, a's value, b's value) for every field in which two dataclasses differ."""
    for f in fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if is_dataclass(va):
            yield from differences(va, vb, f"{prefix}{f.name}.")
        elif (list(va) if isinstance(va, (list, tuple)) else va) != (list(vb) if isinstance(vb, (list, tuple)) else vb):
            yield f"{prefix}{f.name}", va, vb


def read_start(source, cfg: TrainConfig, reset: str) -> Start:
    """The weights of model folder `source` (its latest), for a run of `cfg` that re-initialises
    `reset`. One-line errors: a missing or corrupt source names the file, a different architecture or
    resolution names the field."""
    if reset not in RESETS:
        raise DeepfakeError(f"--reset {reset}: choose {', '.join(RESETS)}")
    source = Path(source)
    if not source.is_dir():
        raise ModelDirError(f"{source}: --from: no such model folder")
    src_cfg = read_config(source)  # names config.json when it is missing or unreadable
    diff = first_difference(src_cfg.model, cfg.model, "model.")
    if diff is not None:
        name, theirs, ours = diff
        raise DeepfakeError(f"{source / CONFIG}: --from needs the same architecture: {name} is {theirs} there, "
                            f"{ours} here (train with the source's --preset, or pick another source)")
    weights = checkpoint_weights(source, "last")  # names the weight file when it is missing
    autoencoder = load_tensors(weights)  # names it when it is not a readable safetensors file
    d_path = weights.with_name(DISCRIMINATOR)
    discriminator = load_tensors(d_path) if d_path.is_file() else None
    record = StartConfig(source=str(source.resolve()), source_config_hash=config_hash(src_cfg),
                         source_step=step_of(weights) or 0, reset=reset)
    opt_g = opt_d = None
    snapshot = source / SNAPSHOTS / f"step_{record.source_step:06d}"
    if src_cfg.optimizer != cfg.optimizer:
        log.info("%s: trained with %s, this run uses %s: the optimizer starts fresh", source, src_cfg.optimizer,
                 cfg.optimizer)
    elif not (snapshot / "optimizer_g.json").is_file():
        log.info("%s: no snapshot of step %d: the optimizer starts fresh", source, record.source_step)
    else:
        opt_g, opt_d = (_read_optimizer(snapshot, name) for name in ("optimizer_g", "optimizer_d"))
    return Start(record, weights, autoencoder, discriminator, opt_g, opt_d)


def _read_optimizer(folder: Path, name: str) -> dict | None:
    if not (folder / f"{name}.json").is_file():
        return None
    try:
        return load_optimizer(folder, name)
    except (OSError, ValueError, KeyError) as exc:  # JSON or layout; load_tensors names a bad tensor file itself
        raise ModelDirError(f"{folder / (name + '.json')}: unreadable optimizer state ({exc})") from None


def source_config(source) -> TrainConfig:
    """The config a run from `source` gets when none is given: the source's preset, with the source's
    network and discriminator (so a network changed with --set still matches), and the preset's schedule,
    not the source's (a pretrained source's warp-off, GAN-off rules are for pretraining)."""
    from deepfake.models import PRESETS, preset_config

    if not Path(source).is_dir():
        raise ModelDirError(f"{source}: --from: no such model folder")
    src = read_config(source)
    base = preset_config(src.preset) if src.preset in PRESETS else src
    return replace(base, model=src.model, discriminator=src.discriminator)


def reset_modules(arch: str, reset: str) -> tuple[str, ...]:
    return RESET_MODULES[arch][reset]


def apply_start(start: Start, autoencoder: torch.nn.Module, discriminator: torch.nn.Module | None,
                opt_g: torch.optim.Optimizer | None = None, opt_d: torch.optim.Optimizer | None = None) -> list[str]:
    """Copy the source's weights into freshly built nets, except the modules `start.record.reset`
    names, which keep their fresh initialisation; the kept weights' optimizer states with them, where
    the source kept them and optimizers are given. Returns what was re-initialised, for the log."""
    fresh = reset_modules(autoencoder.config.arch, start.record.reset)
    own = autoencoder.state_dict()
    if set(own) != set(start.autoencoder) or any(own[k].shape != v.shape for k, v in start.autoencoder.items()):
        raise ModelDirError(f"{start.weights}: weights do not match the source's config.json")
    with torch.no_grad():
        for name, tensor in start.autoencoder.items():
            if name.split(".", 1)[0] not in fresh:
                own[name].copy_(tensor)
    reinit = list(fresh)
    if discriminator is not None:
        d_own = discriminator.state_dict()
        same = start.discriminator is not None and set(d_own) == set(start.discriminator) and all(
            d_own[k].shape == v.shape for k, v in start.discriminator.items())
        if same:
            with torch.no_grad():
                for name, tensor in start.discriminator.items():
                    d_own[name].copy_(tensor)
            if opt_d is not None and start.optimizer_d is not None:
                carry_state(start.optimizer_d, opt_d, discriminator, ())
        else:
            reinit.append("discriminator")
    if opt_g is not None and start.optimizer_g is not None:
        carried = carry_state(start.optimizer_g, opt_g, autoencoder, fresh)
        log.info("optimizer state of %d of %d tensors taken from %s", carried,
                 sum(len(g["params"]) for g in opt_g.param_groups), start.record.source)
    return reinit


def carry_state(theirs: dict, optimizer: torch.optim.Optimizer, net: torch.nn.Module, fresh: tuple[str, ...]) -> int:
    """Give `optimizer`'s parameters of `net` the source's per-parameter state `theirs` (an optimizer
    state_dict of a net of the same layout, so the same parameter order), except those of the modules
    `fresh` names, which start with none. The hyperparameters stay this run's. Returns how many got it."""
    names = {id(p): n for n, p in net.named_parameters()}
    ours = optimizer.state_dict()
    carried, index = 0, 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            slots = theirs["state"].get(index)
            name = names.get(id(param))
            if slots and name is not None and name.split(".", 1)[0] not in fresh and all(
                    v.shape == param.shape for v in slots.values() if torch.is_tensor(v) and v.dim() > 0):
                ours["state"][index] = {k: v.clone() if torch.is_tensor(v) else v for k, v in slots.items()}
                carried += 1
            index += 1
    optimizer.load_state_dict(ours)
    return carried


def check_source_unchanged(start: Start, recorded: StartConfig) -> None:
    """A run that recorded its start but saved nothing before it stopped starts again from the source:
    refused when the source has changed since (other weights than the run was meant to get)."""
    if recorded.source_config_hash and (start.record.source_config_hash, start.record.source_step) != (
            recorded.source_config_hash, recorded.source_step):
        raise DeepfakeError(f"{recorded.source}: the model this run started from has changed since (now step "
                            f"{start.record.source_step}, was {recorded.source_step}); train into a new folder")
