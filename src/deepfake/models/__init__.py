"""The networks: autoencoders (generators) and discriminators, built from typed configs."""

from deepfake.models.autoencoder import build_autoencoder
from deepfake.models.discriminator import build_discriminator
from deepfake.models.presets import PRESETS, preset_config

__all__ = ["build_autoencoder", "build_discriminator", "preset_config", "PRESETS"]
