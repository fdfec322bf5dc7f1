"""The segmenter's configs (`deepfake mask`): the network, its augmentation and its training run, saved as
the mask model folder's config.json so the folder alone rebuilds the network; and applying it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from deepfake.config.choices import DEVICE_HELP, MASK_REGIONS
from deepfake.config.options import DEVICE_PATTERN, option
from deepfake.config.train import RunBudget


@dataclass
class SegmenterConfig:
    resolution: int = option(128, "segmenter input size in px: faces are resized to this before the network "
                             "and the masks back after", lo=32, hi=1024)
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
    jpeg: float = 0.25  # JPEG artefacts (DCT quantisation on the device, segment/jpeg.py)
    jpeg_quality: tuple[int, int] = (15, 75)


@dataclass
class MaskTrainConfig:
    OPTION_FLAGS: ClassVar[dict[str, str]] = {"model.resolution": "resolution"}

    model: SegmenterConfig = field(default_factory=SegmenterConfig)
    augment: MaskAugmentConfig = field(default_factory=MaskAugmentConfig)
    region: str = option("whole", "hull the pretraining targets: full (stops at the brows) or whole (with the "
                         "forehead)", choices=MASK_REGIONS, flag="mask-region")
    steps: int = option(20000, "train until this step, pretraining included (unless --minutes is given alone)", lo=0)
    pretrain_steps: int = option(4000, "steps on hull masks before the labels take over", lo=0)
    label_share: float = 0.5  # faces of a label-phase batch drawn from labelled faces (the rest: hulls)
    batch: int = option(16, "faces per step", lo=1, hi=4096)
    lr: float = option(1e-3, "Adam learning rate", above=0, hi=1)
    bce_weight: float = 1.0  # sigmoid cross-entropy: sharp per-pixel decisions
    dssim_weight: float = 1.0  # DSSIM of the probabilities: the mask's shape and edges, not just its area
    seed: int = option(0, "random seed", lo=0)
    device: str = option("auto", DEVICE_HELP, pattern=DEVICE_PATTERN)
    val_fraction: float = 0.05  # faces held out per faceset, scored with a fixed augmentation
    val_faces: int = 32  # at most this many of them
    log_every: int = 50
    save_every: int = option(500, "checkpoint every N steps", lo=1)
    preview_every: int = option(500, "preview sheet every N steps (0 = none)", lo=0)
    keep_backups: int = 2


@dataclass
class SegmentRun(RunBudget):
    """What one `deepfake mask train` run takes besides its MaskTrainConfig: its time budget."""


@dataclass
class MaskLabelConfig:
    """`deepfake mask label --export`: the sheet of faces worth labelling."""

    faces: int = option(24, "faces on the exported sheet", lo=1, hi=1024, short="-n")
    device: str = option("auto", DEVICE_HELP, pattern=DEVICE_PATTERN)


@dataclass
class SegmentApplyConfig:
    """`deepfake mask apply`."""

    batch: int = option(32, "faces per forward pass", lo=1, hi=4096)
    device: str = option("auto", DEVICE_HELP, pattern=DEVICE_PATTERN)
