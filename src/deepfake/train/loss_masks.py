"""Which masks training's losses use: each faceset's hulls (extract's, or redrawn at the model's region),
or the segmenter's masks `deepfake mask apply` wrote (data.mask=segmenter). The model records the hull
region (TrainConfig.mask_region), which swap takes as its default --mask-region.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from deepfake.config import TrainConfig
from deepfake.errors import DeepfakeError
from deepfake.faces.hull import MASK_REGIONS
from deepfake.faceset import Faceset
from deepfake.faceset.mask_files import HULL, MASK_KINDS, MaskSource, faceset_region, mask_source

log = logging.getLogger(__name__)


def check_mask_config(cfg: TrainConfig) -> None:
    """One-line DeepfakeError for a data.mask or mask_region training cannot use."""
    if cfg.data.mask not in MASK_KINDS:
        raise DeepfakeError(f"data.mask '{cfg.data.mask}': choose from {', '.join(MASK_KINDS)}")
    if cfg.mask_region and cfg.mask_region not in MASK_REGIONS:
        raise DeepfakeError(f"mask_region '{cfg.mask_region}': choose from {', '.join(MASK_REGIONS)} "
                            "(or leave it empty: faceset A's)")


def training_masks(cfg: TrainConfig, fs_a: Faceset, fs_b: Faceset) -> tuple[TrainConfig, MaskSource, MaskSource]:
    """The config with mask_region filled in, and each side's masks. Logs, in one line each, a hull that
    is redrawn and why; DeepfakeError (one line) when a faceset lacks the masks asked for."""
    check_mask_config(cfg)
    regions = {"A": faceset_region(fs_a), "B": faceset_region(fs_b)}
    region = cfg.mask_region or regions["A"]
    why = "mask_region is set" if cfg.mask_region else "the facesets disagree; A's region is the model's"
    if cfg.data.mask == HULL:
        # One region for both decoders and for swap's hull: a hull of another region is redrawn.
        for side, fs in (("A", fs_a), ("B", fs_b)):
            if regions[side] != region:
                log.warning("%s: faceset %s's hulls are '%s'; training redraws them as '%s' from the landmarks (%s)",
                            fs.root, side, regions[side], region, why)
        sources = (mask_source(fs_a, HULL, region), mask_source(fs_b, HULL, region))
    else:
        # Segmenter masks are what they are; the region only sets swap's default hull.
        sources = (mask_source(fs_a, cfg.data.mask), mask_source(fs_b, cfg.data.mask))
        if cfg.mask_region or regions["A"] != regions["B"]:
            log.info("data.mask=%s trains on the applied masks as written; mask_region '%s' is recorded as swap's "
                     "default --mask-region", cfg.data.mask, region)
    return replace(cfg, mask_region=region), *sources
