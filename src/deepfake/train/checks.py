"""A TrainConfig checked where a run enters (the command, and train() for library callers such as sweep
and the demo): one line naming the option that cannot train. Everything after receives a checked config;
what training fills in itself (face size, coverage, the hull region) comes from the facesets."""

from __future__ import annotations

from deepfake.config import TrainConfig
from deepfake.config.choices import COMPILE_MODES, VAL_SPLITS
from deepfake.errors import DeepfakeError
from deepfake.models.autoencoder import validate as validate_model
from deepfake.train.build import OPTIMIZERS
from deepfake.train.loss_masks import check_mask_config


def validate(cfg: TrainConfig) -> None:
    validate_model(cfg.model)
    check_mask_config(cfg)
    if cfg.val_split not in VAL_SPLITS:
        raise DeepfakeError(f"val_split '{cfg.val_split}': choose {' or '.join(VAL_SPLITS)}")
    if cfg.optimizer not in OPTIMIZERS:
        raise DeepfakeError(f"optimizer '{cfg.optimizer}': choose {' or '.join(OPTIMIZERS)}")
    if cfg.grad_accum < 1:
        raise DeepfakeError(f"grad_accum {cfg.grad_accum}: must be >= 1")
    if cfg.compile_mode not in COMPILE_MODES:
        raise DeepfakeError(f"compile_mode '{cfg.compile_mode}': choose one of {', '.join(COMPILE_MODES)}")
