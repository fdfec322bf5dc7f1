"""The generators: DF (shared encoder, one decoder per identity) and LIAE (shared encoder and decoder,
with `inter_AB` / `inter_B` bottlenecks, as in DeepFaceLab's SAEHD).

Both expose the same interface, which swap, evaluate and train code against:

    z = model.encode(x)               # x: (B, 3, R, R) float in [0, 1]
    rgb, mask = model.decode(z, "a")  # (B, 3, R, R), (B, 1, R, R), both in [0, 1]
    rgb, mask = model(x, "b")         # reconstruct through side b
    rgb, mask = model.swap(x, "a")    # any face rendered as identity a
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from deepfake.config import ModelConfig
from deepfake.errors import DeepfakeError
from deepfake.models.blocks import ConvBlock, ResBlock, Upscale

SIDES = ("a", "b")


def bottleneck_res(cfg: ModelConfig) -> int:
    """Side of the grid the dense bottleneck projects back to (before its own 2x upscale)."""
    return cfg.bottleneck_res or cfg.resolution // 2 ** (cfg.decoder_stages + 1)


def validate(cfg: ModelConfig) -> None:
    """One-line errors for configs that cannot build (checked before any allocation)."""
    r = cfg.resolution
    if not 64 <= r <= 512 or r % 16:
        raise DeepfakeError(f"model.resolution {r}: must be a multiple of 16 between 64 and 512")
    if cfg.arch not in ("df", "liae"):
        raise DeepfakeError(f"model.arch '{cfg.arch}': choose df or liae")
    if len(cfg.encoder_channels) != cfg.encoder_stages:
        raise DeepfakeError(f"model.encoder_channels has {len(cfg.encoder_channels)} entries for {cfg.encoder_stages} stages")
    if len(cfg.decoder_channels) != cfg.decoder_stages:
        raise DeepfakeError(f"model.decoder_channels has {len(cfg.decoder_channels)} entries for {cfg.decoder_stages} stages")
    if r % 2**cfg.encoder_stages:
        raise DeepfakeError(f"model.resolution {r} is not divisible by 2^{cfg.encoder_stages} encoder stages")
    low = bottleneck_res(cfg)
    if low < 1 or low * 2 ** (cfg.decoder_stages + 1) != r:
        raise DeepfakeError(
            f"model: bottleneck {low}px x 2^{cfg.decoder_stages + 1} upscales != resolution {r} "
            "(set bottleneck_res to 0 for automatic, or change decoder_stages)"
        )


class Encoder(nn.Module):
    """Strided 5x5 convolutions: (B, 3, R, R) -> (B, C * (R / 2^stages)^2), flattened."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, c = [], 3
        for o in cfg.encoder_channels:
            layers.append(ConvBlock(c, o, cfg.activation, cfg.norm))
            c = o
        self.body = nn.Sequential(*layers)
        self.out_features = c * (cfg.resolution // 2**cfg.encoder_stages) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)  # (B, C*h*w)


class Inter(nn.Module):
    """Dense latent and back: (B, F) -> latent_dims -> (B, Cb, r, r) -> upscale -> (B, Cb, 2r, 2r)."""

    def __init__(self, in_features: int, cfg: ModelConfig):
        super().__init__()
        self.res = bottleneck_res(cfg)
        self.channels = cfg.bottleneck_channels
        self.dense1 = nn.Linear(in_features, cfg.latent_dims)
        self.dense2 = nn.Linear(cfg.latent_dims, self.res * self.res * self.channels)
        self.up = Upscale(self.channels, self.channels, cfg.activation, cfg.norm)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.dense2(self.dense1(h))  # (B, Cb*r*r)
        z = z.view(-1, self.channels, self.res, self.res)  # (B, Cb, r, r)
        return self.up(z)  # (B, Cb, 2r, 2r)


class Decoder(nn.Module):
    """Upscale blocks (optionally each followed by a residual block), then RGB + a learned mask."""

    def __init__(self, in_channels: int, cfg: ModelConfig):
        super().__init__()
        stages, c = [], in_channels
        for o in cfg.decoder_channels:
            stage = [Upscale(c, o, cfg.activation, cfg.norm)]
            if cfg.residual_blocks:
                stage.append(ResBlock(o, cfg.activation, cfg.norm))
            stages.append(nn.Sequential(*stage))
            c = o
        self.stages = nn.ModuleList(stages)
        self.to_rgb = nn.Conv2d(c, 3, 5, 1, 2)
        # The mask gets its own head so its gradient does not fight the colour channels for capacity.
        self.to_mask = nn.Conv2d(c, 1, 5, 1, 2) if cfg.learned_mask else None
        self.checkpoint = cfg.checkpoint_decoder

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = z
        for stage in self.stages:
            if self.checkpoint and self.training and torch.is_grad_enabled():
                # Recompute activations in backward instead of storing them: 256-512 px fits small cards.
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)  # (B, C, 2H, 2W)
        y = self._heads(x)  # (B, 3 [+ 1], R, R)
        rgb = torch.sigmoid(y[:, :3])  # (B, 3, R, R)
        if self.to_mask is None:
            mask = torch.ones_like(rgb[:, :1])  # (B, 1, R, R)
        else:
            mask = torch.sigmoid(y[:, 3:4])  # (B, 1, R, R)
        return rgb, mask

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """to_rgb [and to_mask] as one convolution: (B, 3 [+ 1], R, R) before the sigmoids."""
        return stacked_conv(x, [self.to_rgb] + ([self.to_mask] if self.to_mask is not None else []))


def stacked_conv(x: torch.Tensor, convs: list[nn.Conv2d]) -> torch.Tensor:
    """Convolutions of the same kernel and padding on the same input as one convolution of their stacked
    weights (the parameters stay separate): their outputs, concatenated along channels.

    The decoder's heads: cuDNN has no fast kernel for a 5x5 convolution with 3 or 1 output channels, and
    stacked they run as one (benchmarks/RESULTS.md, "decoder heads stacked")."""
    weight = torch.cat([c.weight for c in convs])  # (sum of outputs, C, k, k)
    bias = torch.cat([c.bias for c in convs])
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        weight = weight.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, weight, bias, padding=convs[0].padding)


def _side(side: str) -> str:
    s = str(side).lower()
    if s not in SIDES:
        raise DeepfakeError(f"unknown side '{side}' (choose a or b)")
    return s


class _Autoencoder(nn.Module):
    """What DF and LIAE share: the validated config, the encoder, and `forward`/`swap` built on the
    `encode`/`decode` each architecture defines."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        validate(cfg)
        self.config = cfg
        self.encoder = Encoder(cfg)

    def forward(self, x: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.encode(x), side)

    def swap(self, x: torch.Tensor, to_side: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.encode(x), to_side)


class DFAutoencoder(_Autoencoder):
    """DF: shared encoder + bottleneck, one decoder per identity. Swapping = decoding with the other side."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.inter = Inter(self.encoder.out_features, cfg)
        self.decoder_a = Decoder(cfg.bottleneck_channels, cfg)
        self.decoder_b = Decoder(cfg.bottleneck_channels, cfg)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.inter(self.encoder(x))  # (B, Cb, 2r, 2r)

    def decode(self, z: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.decoder_a if _side(side) == "a" else self.decoder_b)(z)


class LIAEAutoencoder(_Autoencoder):
    """LIAE: shared encoder and decoder. `inter_AB` sees both identities, `inter_B` only B.

    Side a decodes [inter_AB(h), inter_AB(h)]; side b decodes [inter_B(h), inter_AB(h)]. Rendering any
    face as a therefore uses inter_AB only, which carries pose and expression but not B's identity code.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.inter_ab = Inter(self.encoder.out_features, cfg)
        self.inter_b = Inter(self.encoder.out_features, cfg)
        self.decoder = Decoder(2 * cfg.bottleneck_channels, cfg)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, F)

    def decode(self, z: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        ab = self.inter_ab(z)  # (B, Cb, 2r, 2r)
        first = ab if _side(side) == "a" else self.inter_b(z)
        return self.decoder(torch.cat([first, ab], dim=1))  # code: (B, 2Cb, 2r, 2r)


ARCHS: dict[str, type[nn.Module]] = {"df": DFAutoencoder, "liae": LIAEAutoencoder}


def build_autoencoder(cfg: ModelConfig) -> nn.Module:
    validate(cfg)
    return ARCHS[cfg.arch](cfg)

