"""Named starting points. Each returns a full TrainConfig; any field can then be overridden.

tiny       : for tests and smoke runs (64 px, a few hundred k parameters, fast on CPU)
quick      : tiny's network with DeepFaceLab's schedule, the tuning study's winner on a CPU budget
             (docs/TUNING.md); what `deepfake demo` trains. DFL's Quick96 is the same idea
original64 : faceswap's classic "Original" (64 px, 1024-D latent)
df128/256  : DeepFaceLab SAEHD-like DF (ae_dims 256, e_dims 64, d_dims 64, residual decoder)
liae256    : the same widths in DFL's LIAE layout, with a U-Net patch discriminator
"""

from __future__ import annotations

import dataclasses

from deepfake.config import AugmentConfig, DiscriminatorConfig, LossConfig, ModelConfig, TrainConfig
from deepfake.errors import DeepfakeError


def _model(
    resolution: int,
    encoder_channels: list[int],
    latent_dims: int,
    bottleneck_channels: int,
    decoder_channels: list[int],
    arch: str = "df",
    residual_blocks: bool = False,
) -> ModelConfig:
    """Every preset's model spelled out, so a change to ModelConfig's defaults never changes a preset.
    The stage counts follow from the channel lists."""
    return ModelConfig(
        arch=arch,
        resolution=resolution,
        encoder_stages=len(encoder_channels),
        encoder_channels=encoder_channels,
        latent_dims=latent_dims,
        bottleneck_channels=bottleneck_channels,
        decoder_stages=len(decoder_channels),
        decoder_channels=decoder_channels,
        residual_blocks=residual_blocks,
    )


def _tiny() -> TrainConfig:
    return TrainConfig(
        model=_model(64, [16, 32, 64, 64], latent_dims=64, bottleneck_channels=64, decoder_channels=[64, 32, 16]),
        discriminator=DiscriminatorConfig(kind="patch", depth=3, channels=16),
        preset="tiny",
        batch=8,
        lr=5e-4,
        steps=500,
        val_every=50,
        save_every=100,
        preview_every=100,
        log_every=10,
    )


def _quick() -> TrainConfig:
    # Random warp for the first 300 steps only, then the GAN term from step 450: the study's highest
    # masked SSIM at 2 CPU minutes, and +0.06 SSIM over tiny at 4 (docs/TUNING.md).
    tiny = _tiny()
    return dataclasses.replace(
        tiny,
        augment=AugmentConfig(warp_until_step=300),
        loss=LossConfig(gan_weight=0.1, gan_start_step=450),
        preset="quick",
    )


def _original64() -> TrainConfig:
    model = _model(64, [128, 256, 512, 1024], latent_dims=1024, bottleneck_channels=512, decoder_channels=[256, 128, 64])
    return TrainConfig(model=model, preset="original64", batch=64, lr=5e-5)


def _df(resolution: int, arch: str = "df") -> ModelConfig:
    e, d = 64, 64  # DFL's e_dims / d_dims
    return _model(
        resolution,
        [e, e * 2, e * 4, e * 8],
        latent_dims=256,
        bottleneck_channels=512,
        decoder_channels=[d * 8, d * 4, d * 2],
        arch=arch,
        residual_blocks=True,
    )


def _df128() -> TrainConfig:
    return TrainConfig(model=_df(128), preset="df128", batch=32, lr=5e-5)


def _df256() -> TrainConfig:
    return TrainConfig(
        model=_df(256),
        discriminator=DiscriminatorConfig(kind="patch", depth=4, channels=64),
        loss=LossConfig(),
        preset="df256",
        batch=32,
        lr=5e-5,
    )


def _liae256() -> TrainConfig:
    return TrainConfig(
        model=_df(256, arch="liae"),
        discriminator=DiscriminatorConfig(kind="unet", depth=4, channels=32),
        preset="liae256",
        batch=16,
        lr=5e-5,
    )


PRESETS = {"tiny": _tiny, "quick": _quick, "original64": _original64, "df128": _df128, "df256": _df256, "liae256": _liae256}


def preset_config(name: str) -> TrainConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise DeepfakeError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})") from None
