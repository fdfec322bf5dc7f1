"""A training run's boundary (train/checks.finish): the config checked once and finished from its
facesets, so the loop and the saved config.json see what the facesets decided."""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import replace

import pytest

from deepfake.cli import main as cli_main
from deepfake.config import TrainConfig
from deepfake.errors import DeepfakeError
from deepfake.faceset import read_faceset, write_manifest
from deepfake.faceset.mask_files import faceset_region
from deepfake.models import preset_config
from deepfake.train.checks import finish, validate


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


def test_every_declared_range_and_choice_is_checked_whatever_set_the_value(tmp_path, capsys):
    """--set, --config and library callers bypass the command line's own flag checks: the same declared
    ranges are checked where a run enters, in one line naming the field, before anything is written."""
    cfg = preset_config("tiny")
    for change, message in [({"save_every": 0}, "save_every 0: must be >= 1"), ({"log_every": 0}, "log_every 0"),
                            ({"lr": -1.0}, "lr -1: must be > 0"), ({"batch": 0}, "batch 0: must be 1..4096"),
                            ({"steps": -5}, "steps -5: must be >= 0"), ({"val_fraction": 1.0}, "val_fraction 1: must be 0..0.9"),
                            ({"val_split": "middle"}, "val_split 'middle': choose random or tail")]:
        with pytest.raises(DeepfakeError, match=re.escape(message)):
            validate(replace(cfg, **change))
    for item in ("save_every=0", "log_every=0", "lr=-1", "batch=0", "val_fraction=1.0"):
        out = tmp_path / item.partition("=")[0]
        assert cli_main(["train", "--a", "A", "--b", "B", "-o", str(out), "--set", item, "--dry-run"]) == 2
        assert capsys.readouterr().err.startswith(f"error: {item.partition('=')[0]} ")
        assert not out.exists()


def test_the_same_faceset_twice_or_two_face_sizes_are_warned_about(faceset_a, faceset_b, tmp_path, caplog):
    small = shutil.copytree(faceset_b, tmp_path / "small", ignore=shutil.ignore_patterns(".cache"))
    fs = read_faceset(small)
    write_manifest(small, {**fs.header, "settings": {**fs.settings, "size": 64}}, fs.records)
    with caplog.at_level(logging.WARNING, logger="deepfake.train"):
        finish(TrainConfig(), faceset_a, faceset_a)
        finish(TrainConfig(), faceset_a, faceset_b)
        finish(TrainConfig(), faceset_a, small)
    warnings = [r.message for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "is both A and B" in warnings[0] and str(read_faceset(faceset_a).root) in warnings[0]
    assert "different sizes (128 vs 64 px)" in warnings[1]
