"""Discriminators: real/fake logits per patch.

`patch` is a PatchGAN (pix2pix): strided 4x4 convolutions, each output logit judges one receptive field.
`unet` follows DFL's UNetPatchDiscriminator: the same downsampling path, then an upsampling path with
skip connections, so every pixel gets a logit that sees both local texture and global structure.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepfake.config import DiscriminatorConfig
from deepfake.errors import DeepfakeError
from deepfake.models.blocks import ConvBlock, activation, norm


def _widths(cfg: DiscriminatorConfig) -> list[int]:
    # Width doubles per stage, capped at 8x like pix2pix's NLayerDiscriminator.
    return [cfg.channels * 2 ** min(i, 3) for i in range(cfg.depth)]


class PatchDiscriminator(nn.Module):
    """(B, 3, R, R) -> (B, 1, R / 2^depth, R / 2^depth) logits."""

    def __init__(self, cfg: DiscriminatorConfig, resolution: int):
        super().__init__()
        layers, c = [], 3
        for i, o in enumerate(_widths(cfg)):
            # No norm on the first layer: it would wash out the raw colour statistics D needs.
            layers.append(ConvBlock(c, o, cfg.activation, "none" if i == 0 else cfg.norm, kernel=4, stride=2))
            c = o
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x * 2 - 1))  # (B, 1, h, w)


class UNetDiscriminator(nn.Module):
    """(B, 3, R, R) -> (B, 1, R, R) logits: a U-Net whose decoder judges every pixel."""

    def __init__(self, cfg: DiscriminatorConfig, resolution: int):
        super().__init__()
        widths = _widths(cfg)
        self.down = nn.ModuleList()
        c = 3
        for i, o in enumerate(widths):
            self.down.append(ConvBlock(c, o, cfg.activation, "none" if i == 0 else cfg.norm, kernel=4, stride=2))
            c = o
        self.up = nn.ModuleList()
        skips = [3] + widths[:-1]
        for skip, o in zip(reversed(skips), reversed([cfg.channels] + widths[:-1])):
            self.up.append(
                nn.Sequential(
                    nn.Conv2d(c + skip, o, 3, 1, 1),
                    norm(cfg.norm, o),
                    activation(cfg.activation),
                )
            )
            c = o
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * 2 - 1
        feats = []
        for block in self.down:
            feats.append(h)
            h = block(h)  # (B, C, H/2, W/2)
        for block, skip in zip(self.up, reversed(feats)):
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")  # (B, C, 2H, 2W)
            h = block(torch.cat([h, skip], dim=1))
        return self.head(h)  # (B, 1, R, R)


KINDS: dict[str, type[nn.Module]] = {"patch": PatchDiscriminator, "unet": UNetDiscriminator}


def build_discriminator(cfg: DiscriminatorConfig, resolution: int) -> nn.Module:
    if cfg.kind not in KINDS:
        raise DeepfakeError(f"discriminator.kind '{cfg.kind}': choose from {', '.join(KINDS)}")
    if cfg.depth < 1 or resolution % 2**cfg.depth:
        raise DeepfakeError(f"discriminator.depth {cfg.depth}: resolution {resolution} must be divisible by 2^depth")
    return KINDS[cfg.kind](cfg, resolution)
