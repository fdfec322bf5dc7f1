"""Where a training run enters (train(), for the command and for library callers such as sweep and the
demo): the config checked, one line naming the option that cannot train, and its facesets read once to
fill in what they decide (face size, coverage, the hull region, a pool's folders). The loop receives the
finished config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from deepfake.config import TrainConfig
from deepfake.config.choices import COMPILE_MODES, VAL_SPLITS
from deepfake.errors import DeepfakeError
from deepfake.faceset import Faceset, read_faceset
from deepfake.faceset.mask_files import MaskSource
from deepfake.models.autoencoder import validate as validate_model
from deepfake.train.build import OPTIMIZERS
from deepfake.train.loss_masks import check_mask_config, training_masks

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class RunInputs:
    """What a run trains on, read where it enters."""

    cfg: TrainConfig  # checked, with mask_region, face_size, coverage (and a pool's folders) filled in
    facesets: tuple[Faceset, ...]  # A and B, or the pool's
    masks: tuple[MaskSource, ...]  # each faceset's training masks, in the same order
    pooled: bool  # pretraining: both sides draw from every faceset


def finish(cfg: TrainConfig, faceset_a, faceset_b, pool: list[str] | None = None) -> RunInputs:
    """`cfg` checked and finished from its facesets: A and B, or (pretraining) the `pool`, whose first
    faceset decides the hull region, face size and coverage."""
    validate(cfg)
    if pool is None:
        sets = [read_faceset(faceset_a), read_faceset(faceset_b)]
        cfg = replace(cfg, data=replace(cfg.data, pool=[]))  # a pair draws from A and B, whatever a copied config said
        cfg, mask_a, mask_b = training_masks(cfg, *sets)
        masks = [mask_a, mask_b]
        if abs(sets[0].coverage - sets[1].coverage) > 1e-6:
            log.warning("facesets were extracted with different coverage (%.3f vs %.3f); swap uses A's",
                        sets[0].coverage, sets[1].coverage)
    else:
        if not pool:
            raise DeepfakeError("pretrain: give at least one faceset")
        sets = [read_faceset(p) for p in pool]
        masks = []
        for fs in sets:
            if len(fs) == 0:
                raise DeepfakeError(f"{fs.root}: faceset has no faces")
            cfg, _, mask = training_masks(cfg, sets[0], fs)  # one hull region for the whole pool: the first set's
            masks.append(mask)
        coverages = {round(fs.coverage, 6) for fs in sets}
        if len(coverages) > 1:
            log.warning("the pool's facesets were extracted with different coverage (%s); swap uses the first's",
                        ", ".join(f"{c:.3f}" for c in sorted(coverages)))
        cfg = replace(cfg, data=replace(cfg.data, pool=[str(Path(p).resolve()) for p in pool]))
    cfg = replace(cfg, face_size=sets[0].size, coverage=sets[0].coverage)
    return RunInputs(cfg, tuple(sets), tuple(masks), pool is not None)
