"""The configs of the measuring commands: evaluate, sweep and detect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from deepfake.config.choices import CHECKPOINT_HELP, DETECTORS, DEVICE_HELP, DIRECTIONS, RANK_METRICS
from deepfake.config.options import CHECKPOINT_PATTERN, DEVICE_PATTERN, option


@dataclass
class EvaluateConfig:
    max_faces: int = option(64, "held-out faces per side, the model's own validation split (0 = all)", lo=0)
    max_frames: int = option(150, "video frames for the flicker measure (with --frames; 0 = all)", lo=0)
    verify_threshold: float = 0.6  # dlib's same-person distance
    batch: int = 16
    grid_faces: int = 6  # held-out faces shown per side in the swap grid
    detect_threshold: float = option(0.5, "discriminator P(real) threshold: at or above counts as real", lo=0, hi=1,
                                     flag="threshold", ui=False)
    device: str = option("auto", DEVICE_HELP, pattern=DEVICE_PATTERN)
    # Facesets of other people: more identities for the top-1 retrieval metric.
    distractors: list[str] = option(help="facesets of other people: more identities for the top-1 retrieval "
                                    "metric", factory=list, metavar="FACESET", ui=False)
    checkpoint: str = option("last", CHECKPOINT_HELP, metavar="best|last|STEP", pattern=CHECKPOINT_PATTERN)


@dataclass
class EvaluateRun:
    """What one `deepfake evaluate` run takes besides its EvaluateConfig."""

    frames_direction: str = option("a2b", "a2b: the flicker video shows B and gets A's face; b2a: the reverse",
                                   choices=DIRECTIONS, ui=False)
    timeline: bool = option(False, "instead: swap the same held-out faces at every kept step (train --keep-every N) "
                            "and mark the under-trained, best and over-trained ones (timeline.png, timeline.md "
                            "with the rules)")


@dataclass
class SweepConfig:
    # Its evaluate section offers one option, under its own name: the held-out faces each variant is scored on.
    OPTION_EXCLUDE: ClassVar[tuple[str, ...]] = ("evaluate",)
    OPTION_FLAGS: ClassVar[dict[str, str]] = {"evaluate.max_faces": "eval-faces"}

    base: str = option("tiny", "preset name, or a TrainConfig JSON file the variants start from",
                       pattern=r"^[a-z0-9_]+$")
    steps: int = option(200, "training steps per variant (ignored when --minutes is given)", lo=1)
    minutes: float = option(0.0, "wall-clock minutes per variant instead of steps; 0 = use steps", lo=0, ui=False)
    rank_by: str = option("ssim", "metric the results table is sorted by", choices=tuple(RANK_METRICS))
    seed: int = option(0, "same seed (and data split) for every variant", lo=0)
    device: str = option("auto", DEVICE_HELP, pattern=DEVICE_PATTERN)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


@dataclass
class DetectConfig:
    threshold: float = option(0.5, "P(real) below this is called synthetic", lo=0, hi=1)
    every: int = option(5, "video: score every Nth frame", lo=1)
    max_frames: int = option(200, "video: at most this many scored frames per file (0 = all)", lo=0)
    trust_anchors: str = option("", "PEM file of root certificates the Content Credentials' signer is checked "
                                "against (the C2PA trust list, an organisation's root); default: trust not checked",
                                metavar="PEM", ui=False)
    detector: str = option("hog", "face detector", choices=DETECTORS, ui=False)
    batch: int = 32
    device: str = option("auto", DEVICE_HELP, pattern=DEVICE_PATTERN)
    checkpoint: str = option("last", CHECKPOINT_HELP, metavar="best|last|STEP", pattern=CHECKPOINT_PATTERN,
                             ui=False)
