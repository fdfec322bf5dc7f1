"""A training run's boundary (train/checks.finish): the config checked once and finished from its
facesets, so the loop and the saved config.json see what the facesets decided."""

from __future__ import annotations

import pytest

from deepfake.config import TrainConfig
from deepfake.errors import DeepfakeError
from deepfake.faceset import read_faceset
from deepfake.faceset.mask_files import faceset_region
from deepfake.train.checks import finish


def test_a_pair_is_finished_from_its_facesets(faceset_a, faceset_b):
    cfg = TrainConfig()
    assert cfg.mask_region == ""  # left to the facesets
    inputs = finish(cfg, faceset_a, faceset_b)
    fs_a = read_faceset(faceset_a)
    assert inputs.cfg.face_size == fs_a.size == 128
    assert inputs.cfg.coverage == pytest.approx(fs_a.coverage)
    assert inputs.cfg.mask_region == faceset_region(fs_a)
    assert [fs.root for fs in inputs.facesets] == [read_faceset(faceset_a).root, read_faceset(faceset_b).root]
    assert len(inputs.masks) == 2 and not inputs.pooled
    assert inputs.cfg.data.pool == []


def test_a_pool_records_its_folders_and_the_first_decides(pool_facesets):
    inputs = finish(TrainConfig(mask_region="full"), None, None, pool=[str(p) for p in pool_facesets])
    assert inputs.pooled and len(inputs.facesets) == len(inputs.masks) == 3
    assert inputs.cfg.mask_region == "full"  # asked for: every pool hull is drawn at it
    assert inputs.cfg.data.pool == [str(p.resolve()) for p in pool_facesets]
    assert inputs.cfg.face_size == read_faceset(pool_facesets[0]).size


def test_a_bad_config_is_refused_before_any_faceset_is_read(tmp_path):
    with pytest.raises(DeepfakeError, match="^optimizer 'sgd'"):
        finish(TrainConfig(optimizer="sgd"), tmp_path / "missing_a", tmp_path / "missing_b")
    with pytest.raises(DeepfakeError, match="missing_a"):
        finish(TrainConfig(), tmp_path / "missing_a", tmp_path / "missing_b")
    with pytest.raises(DeepfakeError, match="at least one faceset"):
        finish(TrainConfig(), None, None, pool=[])
