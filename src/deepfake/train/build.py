"""The one builder of what training runs: from a `TrainConfig`, the networks in their memory layout, the
optimizers and the step. The loop, the memory estimate, the batch finder, the discriminator-alone
trainer and every benchmark call it, so whatever they measure is the step `deepfake train` runs.

    built = build(preset_config("tiny"))
    logs = built.step.step(batches_a, batches_b, step=0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from deepfake.config import DiscriminatorConfig, TrainConfig
from deepfake.devices import configure_cuda, resolve_amp, resolve_device
from deepfake.models import build_autoencoder, build_discriminator
from deepfake.train.likeness import Likeness, build_likeness
from deepfake.train.step import AdversarialStep

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@dataclass
class Built:
    """Everything one training run steps: its nets, their optimizers and the step over them."""

    cfg: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None  # the step's autocast dtype; None = float32
    autoencoder: nn.Module
    discriminator: nn.Module | None  # None when gan_weight is 0
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    step: AdversarialStep
    likeness: Likeness | None = None  # the identity net and the true-face discriminator, when on

    def networks(self) -> list[nn.Module]:
        """The trained networks (the frozen identity net is not one)."""
        nets = [self.autoencoder] + ([self.discriminator] if self.discriminator is not None else [])
        return nets + ([self.likeness.code_d] if self.likeness is not None and self.likeness.code_d is not None else [])

    def parameters(self) -> list[nn.Parameter]:
        return [p for net in self.networks() for p in net.parameters()]


def make_optimizer(cfg: TrainConfig, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """cfg.optimizer over `params`, fused where the device has the kernel: one kernel for all
    parameters, and it skips a non-finite step on the device without a host sync."""
    params = list(params)
    kwargs = dict(lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    try:
        return OPTIMIZERS[cfg.optimizer](params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # a device without a fused kernel
        return OPTIMIZERS[cfg.optimizer](params, **kwargs)


def place(module: nn.Module, cfg: TrainConfig, device: torch.device, move: bool = True) -> nn.Module:
    """A net on `device`, channels_last where training uses it (CUDA: cuDNN's fast layout for bf16).
    `move` False leaves it where it was built (fake tensors for the memory estimate cannot move)."""
    if move:
        module = module.to(device)
    if cfg.channels_last and device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module


def build(cfg: TrainConfig, device: torch.device | None = None, *, move: bool = True,
          identities: dict[str, np.ndarray] | None = None) -> Built:
    """The nets, optimizers and step of `cfg` on `device` (default: cfg.device resolved).

    The discriminator exists only when cfg.loss.gan_weight > 0, the identity net and the true-face
    discriminator only when their weights are (likeness.py); `identities` are the facesets' mean
    embeddings the identity loss pulls towards. Weights are freshly initialised from the current torch
    seed; the loop loads a checkpoint into them when it resumes."""
    device = resolve_device(cfg.device) if device is None else torch.device(device)
    configure_cuda(device)
    amp_dtype = resolve_amp(cfg.amp, device)
    autoencoder = place(build_autoencoder(cfg.model), cfg, device, move)
    discriminator = None
    if cfg.loss.gan_weight > 0:
        discriminator = place(build_discriminator(cfg.discriminator, cfg.model.resolution), cfg, device, move)
    opt_g = make_optimizer(cfg, autoencoder.parameters(), cfg.lr)
    opt_d = make_optimizer(cfg, discriminator.parameters(), cfg.d_lr) if discriminator is not None else None
    likeness = build_likeness(cfg, autoencoder, device, make_optimizer, identities, move)
    if likeness is not None and likeness.code_d is not None:
        likeness.code_d = place(likeness.code_d, cfg, device, move)
    step = AdversarialStep(cfg, autoencoder, discriminator, opt_g, opt_d, device, amp_dtype, likeness)
    return Built(cfg, device, amp_dtype, autoencoder, discriminator, opt_g, opt_d, step, likeness)


def to_layout(batches: list, cfg: TrainConfig, device: torch.device) -> None:
    """Give augmented batches the nets' memory layout (in place): channels_last inputs on CUDA."""
    if cfg.channels_last and device.type == "cuda":
        for b in batches:
            b.inputs = b.inputs.contiguous(memory_format=torch.channels_last)


def build_discriminator_alone(cfg: TrainConfig, dcfg: DiscriminatorConfig, device: torch.device,
                              lr: float) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A fresh discriminator of `dcfg` for the faces of model `cfg`, with cfg's optimizer at `lr`: what
    `deepfake discriminator` trains on its own."""
    disc = place(build_discriminator(dcfg, cfg.model.resolution), cfg, device)
    return disc, make_optimizer(cfg, disc.parameters(), lr)
