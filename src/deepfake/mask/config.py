"""The segmenter's configs: the network, its augmentation and its training run. Saved as the mask
model folder's config.json (deepfake.config_io round trips), so the folder alone rebuilds the network."""

from __future__ import annotations

from dataclasses import dataclass, field

from deepfake.errors import DeepfakeError
from deepfake.faces.mask import MASK_REGIONS
from deepfake.models.blocks import ACTIVATIONS, NORMS


@dataclass
class SegmenterConfig:
    resolution: int = 128  # faces are resized to this before the network and the masks back after
    base_channels: int = 8  # channels at full resolution; doubled at every level down
    max_channels: int = 64  # cap on the doubling, so depth costs little at the bottom
    depth: int = 4  # downsamplings: the bottom level sees resolution / 2**depth
    norm: str = "batch"  # none | batch | instance | group (batch folds into the convs at inference)
    activation: str = "leaky_relu"


@dataclass
class MaskAugmentConfig:
    """Probabilities are per face and step; sizes are fractions of the face crop."""

    rotation: float = 15.0  # degrees, either way
    scale: float = 0.10  # zoom, either way
    shift: float = 0.06  # fraction of the crop
    flip: bool = True
    background: float = 0.5  # paste another face's surroundings outside this face's hull
    occluders: float = 0.8  # give the face at least one occluder
    max_occluders: int = 3
    occluder_size: tuple[float, float] = (0.12, 0.55)  # smallest and largest occluder extent
    color: float = 0.2  # brightness, contrast and saturation jitter, either way
    blur: float = 0.25  # Gaussian blur
    blur_sigma: float = 2.0  # largest blur sigma, px at the segmenter's resolution
    jpeg: float = 0.25  # JPEG artefacts (DCT quantisation on the device, mask/jpeg.py)
    jpeg_quality: tuple[int, int] = (15, 75)


@dataclass
class MaskTrainConfig:
    model: SegmenterConfig = field(default_factory=SegmenterConfig)
    augment: MaskAugmentConfig = field(default_factory=MaskAugmentConfig)
    region: str = "whole"  # the hull the pretraining targets: full (to the brows) | whole (with forehead)
    steps: int = 20000  # the run ends at this step (pretraining included)
    pretrain_steps: int = 4000  # steps on hull targets before the labels take over
    label_share: float = 0.5  # faces of a label-phase batch drawn from labelled faces (the rest: hulls)
    batch: int = 16
    lr: float = 1e-3  # Adam
    bce_weight: float = 1.0  # sigmoid cross-entropy: sharp per-pixel decisions
    dssim_weight: float = 1.0  # DSSIM of the probabilities: the mask's shape and edges, not just its area
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.05  # faces held out per faceset, scored with a fixed augmentation
    val_faces: int = 32  # at most this many of them
    log_every: int = 50
    save_every: int = 500
    preview_every: int = 500
    keep_backups: int = 2


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
