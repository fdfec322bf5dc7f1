"""The segmenter trained on real faces (faceset_a: 60 frames of d6): it learns a planted occluder in a
short CPU run, resumes exactly, trains on labels after pretraining, and writes masks into a faceset."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepfake.faceset import read_faceset
from deepfake.faceset.cache import FaceCache
from deepfake.segment.apply import FOLDER, MaskPredictor, apply_to_faceset, segmenter_mask_file
from deepfake.segment.checkpoint import SEGMENTER, load_mask_model
from deepfake.config import MaskAugmentConfig, MaskTrainConfig, SegmenterConfig
from deepfake.segment.data import load_mask_data
from deepfake.segment.export import QUEUE, export_label_sheet
from deepfake.segment.labels import FaceLabel, write_labels
from deepfake.segment.train import read_metrics, train_segmenter

pytestmark = [pytest.mark.media, pytest.mark.slow]

TINY = SegmenterConfig(resolution=64, base_channels=4, max_channels=8, depth=3)


def _cfg(**kw) -> MaskTrainConfig:
    base = MaskTrainConfig(model=TINY, steps=4, batch=4, log_every=2, save_every=2, preview_every=2, val_faces=4)
    return replace(base, **kw)


@pytest.fixture
def faceset_copy(faceset_a, tmp_path):
    """A private copy of faceset_a (these tests write labels and masks into it)."""
    dst = tmp_path / "fs"
    shutil.copytree(faceset_a, dst, ignore=shutil.ignore_patterns(".cache"))
    return dst


def test_segmenter_learns_a_planted_occluder(faceset_a, tmp_path, one_torch_thread):
    """After 150 steps on 51 real faces, a red disc pasted over held-out faces' mouths is left out of
    the mask (the hull would keep all of it) while the rest of the face stays in."""
    cfg = MaskTrainConfig(model=SegmenterConfig(resolution=64, base_channels=8, max_channels=32, depth=3),
                          augment=MaskAugmentConfig(occluders=1.0, background=0.3, blur=0.1, jpeg=0.1),
                          steps=150, batch=8, lr=3e-3, val_fraction=0.15, log_every=50, save_every=10**6,
                          preview_every=0)
    train_segmenter(cfg, [faceset_a], tmp_path / "m", progress=False)
    data = load_mask_data([faceset_a], 128, "whole", 0.15, 32, 0, progress=False)
    faces = data.images[data.val_rows].permute(0, 2, 3, 1).numpy().copy()  # never trained on
    hulls = data.hulls[data.val_rows][:, 0].numpy() > 127
    disc = np.zeros((128, 128), np.uint8)
    cv2.circle(disc, (70, 85), 18, 255, -1)
    faces[:, disc > 0] = (200, 60, 40)
    pred = MaskPredictor(load_mask_model(tmp_path / "m"))(torch.from_numpy(faces).permute(0, 3, 1, 2))[:, 0].numpy()
    keep = pred >= 0.5
    occ, visible = hulls & (disc > 0), hulls & (disc == 0)
    assert len(faces) >= 5
    assert (~keep & occ).sum() / occ.sum() >= 0.4  # the hull excludes none of it
    assert (keep & visible).sum() / visible.sum() >= 0.9


def test_resume_is_exact_and_snapshots_rotate(faceset_a, tmp_path, one_torch_thread):
    once = train_segmenter(_cfg(steps=6), [faceset_a], tmp_path / "once", progress=False)
    train_segmenter(_cfg(steps=2), [faceset_a], tmp_path / "twice", progress=False)
    again = train_segmenter(_cfg(steps=6), [faceset_a], tmp_path / "twice", progress=False)
    assert once.step == again.step == 6 and again.stopped_by == "steps"
    a, b = load_file(str(tmp_path / "once" / SEGMENTER)), load_file(str(tmp_path / "twice" / SEGMENTER))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_metrics(tmp_path / "twice" / "metrics.csv")] == [2, 4, 6]
    assert sorted(p.name for p in (tmp_path / "twice" / "checkpoints").iterdir()) == ["step_000004", "step_000006"]
    assert (tmp_path / "twice" / "previews" / "step_000006.png").is_file()
    with pytest.raises(Exception, match="different model config"):
        train_segmenter(_cfg(steps=8, model=replace(TINY, base_channels=8)), [faceset_a], tmp_path / "twice", progress=False)


def test_label_phase_trains_on_labels(faceset_copy, tmp_path, one_torch_thread):
    fs = read_faceset(faceset_copy)
    s = fs.size
    box = np.array([[0.3, 0.3], [0.7, 0.3], [0.7, 0.8], [0.3, 0.8]]) * s
    write_labels(fs, {r.file: FaceLabel(include=[box]) for r in fs.records[:3]})
    data = load_mask_data([faceset_copy], 64, "full", 0.1, 8, 0, progress=False)
    assert data.label_rows.tolist() == [0, 1, 2] and not set(data.val_rows.tolist()) & {0, 1, 2}
    target = data.targets(torch.tensor([0, 5]))
    assert target[0, 0, 32, 32] == 255 and target[0, 0, 10, 32] == 0  # the label, not the hull
    torch.testing.assert_close(target[1], data.hulls[5])
    result = train_segmenter(_cfg(pretrain_steps=2, steps=4, region="full"), [faceset_copy], tmp_path / "m", progress=False)
    assert result.labelled == 3 and result.phase == "labels"
    assert [r["phase"] for r in result.rows] == ["pretrain", "labels"]


def test_apply_writes_a_mask_kind_and_export_picks_faces(faceset_copy, tmp_path, one_torch_thread):
    train_segmenter(_cfg(steps=2), [faceset_copy], tmp_path / "m", progress=False)
    loaded = load_mask_model(tmp_path / "m")
    result = apply_to_faceset(faceset_copy, loaded, progress=False)
    fs = read_faceset(faceset_copy)
    assert result.faces == len(fs) and (faceset_copy / FOLDER).is_dir()
    m = cv2.imread(str(faceset_copy / segmenter_mask_file(fs.records[0])), cv2.IMREAD_UNCHANGED)
    assert m.dtype == np.uint8 and m.shape == (fs.size, fs.size)
    note = fs.header["masks"]["segmenter"]
    assert note["folder"] == FOLDER and note["step"] == 2 and note["resolution"] == TINY.resolution
    assert fs.header["masks"]["hull"]["folder"] == "masks" and fs.header["settings"]["size"] == fs.size
    assert len(FaceCache.from_faceset(fs, 32, progress=False)) == len(fs)  # still a faceset train can read

    write_labels(fs, {fs.records[0].file: FaceLabel(exclude=[np.array([[10, 10], [40, 10], [25, 40]], float)])})
    sheet, picks = export_label_sheet(faceset_copy, 6, loaded, progress=False)
    assert sheet.is_file() and cv2.imread(str(sheet)) is not None
    assert len(picks) == 6 and {p.reason for p in picks} == {"pose", "unsure"}
    assert fs.records[0].file not in {p.file for p in picks} and len({p.file for p in picks}) == 6
    assert sorted(p.name for p in (faceset_copy / QUEUE).iterdir()) == sorted(p.file.split("/")[-1] for p in picks)
    json.loads((tmp_path / "m" / "config.json").read_text())  # the config travels with the model
