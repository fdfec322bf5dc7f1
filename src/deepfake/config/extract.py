"""Extract's config, and the thresholds of `deepfake faceset clean`."""

from __future__ import annotations

from dataclasses import dataclass

from deepfake.config.choices import DETECTORS, DEVICE_HELP, IMAGE_FORMATS, MASK_REGIONS
from deepfake.config.options import DEVICE_PATTERN, option


@dataclass
class ExtractConfig:
    size: int = option(256, "aligned face size in px", lo=16, hi=2048)
    coverage: float = option(0.75, "fraction of the crop the canonical face spans (DFL 'whole face' ~ 0.75)",
                             lo=0.2, hi=1.5)
    every: int = option(1, "take every Nth video frame", lo=1, metavar="N")
    frames: int = option(0, "video: only the first N frames (0 = all)", lo=0, metavar="N")
    min_face: int = option(40, "smallest face box side kept, px in the source frame", lo=0, metavar="PX")
    max_faces: int = option(0, "faces kept per frame, largest first (0 = all)", lo=0)
    detector: str = option("hog", "dlib HOG (fast) or CNN (MMOD, slow, finds harder faces)", choices=DETECTORS)
    detect_max_side: int = 640  # frames are downscaled to this long side for detection
    upsample_when_empty: bool = True  # retry with tiles/upsampling when nothing is found at the coarse scale
    # The person to keep: images of them (paths; the dashboard names them in its own inputs/ folder).
    reference: list[str] = option(help="keep only faces of the person in these images", factory=list,
                                  metavar="IMG", ui=False)
    reference_threshold: float = option(0.6, "max identity distance to the reference", lo=0)
    smooth: bool = option(True, "do not smooth landmarks over video frames", flag="no-smooth")
    smooth_min_cutoff: float = 1.0  # One-Euro filter: cutoff (Hz) at rest
    smooth_beta: float = 5.0  # One-Euro filter: how fast the cutoff rises with speed (no lag on fast motion)
    image_format: str = option("png", "aligned face image format", choices=IMAGE_FORMATS, flag="format")
    embed_every: int = 25  # video: refresh a tracked face's identity embedding every N frames (it costs ~80 ms)
    workers: int = option(2, "worker processes", lo=1)
    device: str = option("auto", "identity embeddings on " + DEVICE_HELP, pattern=DEVICE_PATTERN)
    mask_region: str = option("whole", "the hull mask: whole (with the forehead) or full (stops at the brows, "
                              "keeps fringes and hats out)", choices=MASK_REGIONS)


@dataclass
class FacesetInfoConfig:
    """`deepfake faceset info`."""

    sheet_faces: int = option(64, "faces on the contact sheet", lo=1, hi=4096)


@dataclass
class CleanThresholds:
    """`deepfake faceset clean`: each threshold 'none' (null) turns it off."""

    min_blur: float | None = option(None, "absolute blur-score floor ('none' = off)")
    blur_fraction: float | None = option(0.4, "drop faces below this fraction of the median blur score ('none' = off)")
    max_yaw: float | None = option(60.0, "degrees, absolute value ('none' = off)")
    max_pitch: float | None = option(40.0, "degrees ('none' = off)")
    max_roll: float | None = option(45.0, "degrees ('none' = off)")
    max_identity: float | None = option(0.6, "embedding distance to the faceset's main identity, or the "
                                        "reference ('none' = off)")


