"""The segmenter's config checks: one line naming the option that cannot train."""

from __future__ import annotations

from deepfake.config import MaskTrainConfig
from deepfake.errors import DeepfakeError
from deepfake.faces.hull import MASK_REGIONS
from deepfake.models.blocks import ACTIVATIONS, NORMS


def validate(cfg: MaskTrainConfig) -> None:
    """One-line DeepfakeError for a config that cannot train."""
    m, a = cfg.model, cfg.augment
    if m.depth < 1 or m.base_channels < 1 or m.max_channels < m.base_channels:
        raise DeepfakeError(f"model: depth {m.depth}, base_channels {m.base_channels}, max_channels {m.max_channels} "
                            "must be >= 1 with max_channels >= base_channels")
    if m.resolution < 32 or m.resolution % max(8, 2**m.depth):
        raise DeepfakeError(f"model.resolution {m.resolution}: must be >= 32 and a multiple of "
                            f"{max(8, 2**m.depth)} (2**depth, and the 8 px JPEG blocks)")
    if m.norm not in NORMS:
        raise DeepfakeError(f"model.norm '{m.norm}': choose from {', '.join(NORMS)}")
    if m.activation not in ACTIVATIONS:
        raise DeepfakeError(f"model.activation '{m.activation}': choose from {', '.join(ACTIVATIONS)}")
    if cfg.region not in MASK_REGIONS:
        raise DeepfakeError(f"region '{cfg.region}': choose from {', '.join(MASK_REGIONS)}")
    for name in ("background", "occluders", "blur", "jpeg"):
        if not 0.0 <= getattr(a, name) <= 1.0:
            raise DeepfakeError(f"augment.{name} {getattr(a, name)}: a probability, 0..1")
    lo, hi = a.occluder_size
    if not 0 < lo <= hi <= 1:
        raise DeepfakeError(f"augment.occluder_size {a.occluder_size}: need 0 < smallest <= largest <= 1")
    qlo, qhi = a.jpeg_quality
    if not 1 <= qlo <= qhi <= 100:
        raise DeepfakeError(f"augment.jpeg_quality {a.jpeg_quality}: need 1 <= lowest <= highest <= 100")
    if a.max_occluders < 1:
        raise DeepfakeError(f"augment.max_occluders {a.max_occluders}: must be >= 1")
    if not 0.0 <= cfg.label_share <= 1.0:
        raise DeepfakeError(f"label_share {cfg.label_share}: a fraction, 0..1")
    if cfg.batch < 1 or cfg.steps < 0 or cfg.pretrain_steps < 0:
        raise DeepfakeError(f"batch {cfg.batch}, steps {cfg.steps}, pretrain_steps {cfg.pretrain_steps}: "
                            "batch >= 1, steps >= 0")
    if min(cfg.log_every, cfg.save_every) < 1 or cfg.preview_every < 0:
        raise DeepfakeError("log_every and save_every must be >= 1, preview_every >= 0")
