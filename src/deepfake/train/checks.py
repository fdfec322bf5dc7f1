"""Where a training run enters (train(), for the command and for library callers such as sweep and the
demo): the config checked, one line naming the option that cannot train, and its facesets read once to
fill in what they decide (face size, coverage, the hull region, a pool's folders). The loop receives the
finished config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from deepfake.config import TrainConfig
from deepfake.config.options import declared
from deepfake.errors import DeepfakeError
from deepfake.faceset import Faceset, read_faceset
from deepfake.faceset.mask_files import MaskSource
from deepfake.models.autoencoder import validate as validate_model
from deepfake.train.build import OPTIMIZERS
from deepfake.train.loss_masks import check_mask_config, training_masks

log = logging.getLogger(__name__)


def validate(cfg: TrainConfig) -> None:
    check_declared(cfg)
    validate_model(cfg.model)
    check_mask_config(cfg)
    if cfg.optimizer not in OPTIMIZERS:
        raise DeepfakeError(f"optimizer '{cfg.optimizer}': choose {' or '.join(OPTIMIZERS)}")


def check_declared(cfg) -> None:
    """Every declared option of `cfg` (a config dataclass) within its choices and range: a value from
    --set, --config or a library caller passes the checks the command line's own flags pass. (A pattern
    is the dashboard's guard on free text; the device it guards is checked where it is resolved.)"""
    for d in declared(type(cfg)):
        value = cfg
        for part in d.path.split("."):
            value = getattr(value, part)
        if value is None:
            continue
        if d.opt.choices and value not in d.opt.choices:
            *rest, last = map(str, d.opt.choices)
            raise DeepfakeError(f"{d.path} '{value}': choose {', '.join(rest)} or {last}" if rest else
                                f"{d.path} '{value}': must be {last}")
        if d.check_range(value):
            raise DeepfakeError(f"{d.path} {value:g}: must be {d.range_text()}")


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
        if sets[0].size != sets[1].size:
            log.warning("facesets were extracted at different sizes (%d vs %d px); both are resized to the model's "
                        "%d px and swap aligns at A's", sets[0].size, sets[1].size, cfg.model.resolution)
        if sets[0].root.resolve() == sets[1].root.resolve():
            log.warning("%s is both A and B: the model learns to reconstruct one person, and a swap changes no one",
                        sets[0].root)
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
