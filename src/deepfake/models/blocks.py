"""Building blocks shared by the autoencoders and the discriminators.

Choices are plain dicts of name -> constructor, passed explicitly (no registry, no import-time scanning).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepfake.errors import DeepfakeError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),  # faceswap and DFL use 0.1
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": lambda: nn.GELU(),
    "silu": lambda: nn.SiLU(inplace=True),
    "mish": lambda: nn.Mish(inplace=True),
}

NORMS = ("none", "batch", "instance", "group")


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise DeepfakeError(f"unknown activation '{name}' (choose from {', '.join(ACTIVATIONS)})") from None


def norm(name: str, channels: int) -> nn.Module:
    if name == "none":
        return nn.Identity()
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "group":
        # 32 groups as in GroupNorm's paper, or the largest divisor of `channels` below that.
        return nn.GroupNorm(math.gcd(32, channels), channels)
    raise DeepfakeError(f"unknown norm '{name}' (choose from {', '.join(NORMS)})")


class ConvBlock(nn.Sequential):
    """conv -> norm -> activation. Strided 5x5 by default: the encoder's downscale step."""

    def __init__(self, cin: int, cout: int, act: str, norm_name: str, kernel: int = 5, stride: int = 2):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=norm_name in ("none", "group")),
            norm(norm_name, cout),
            activation(act),
        )


class Upscale(nn.Module):
    """conv to 4x the channels, then pixel shuffle: (B, cin, H, W) -> (B, cout, 2H, 2W)."""

    def __init__(self, cin: int, cout: int, act: str, norm_name: str, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, kernel, 1, kernel // 2)
        self.norm = norm(norm_name, cout * 4)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(self.conv(x)))  # (B, 4*cout, H, W)
        return F.pixel_shuffle(x, 2)  # (B, cout, 2H, 2W)


class ResBlock(nn.Module):
    """Two 3x3 convs with a skip connection (DFL's decoder ResidualBlock)."""

    def __init__(self, channels: int, act: str, norm_name: str):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm1 = norm(norm_name, channels)
        self.act1 = activation(act)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm2 = norm(norm_name, channels)
        self.act2 = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.norm1(self.conv1(x)))  # (B, C, H, W)
        return self.act2(x + self.norm2(self.conv2(y)))  # (B, C, H, W)
