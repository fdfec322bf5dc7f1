"""The masks training uses, on real faces: `extract --mask-region` recorded and honoured (by extract and
by training, which redraws hulls of another region), `data.mask=segmenter` training on what `mask apply`
wrote (and a one-line error without it), and a face cache whose key follows the masks it holds."""

from __future__ import annotations

import dataclasses
import logging
import shutil

import cv2
import numpy as np
import pytest

from conftest import media_path
from deepfake.cli import main
from deepfake.config import DataConfig, TrainConfig
from deepfake.errors import DeepfakeError
from deepfake.faces.hull import hull_mask
from deepfake.faceset import read_faceset, write_manifest
from deepfake.faceset.cache import FaceCache
from deepfake.faceset.mask_files import MaskSource, faceset_region, mask_file, mask_source
from deepfake.model_dir import read_config
from deepfake.train.loss_masks import training_masks

pytestmark = pytest.mark.media


def _copy(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".cache"))
    return dst


@pytest.fixture(scope="module")
def d9_facesets(tmp_path_factory):
    """d9.jpg extracted twice through the CLI, with the full and the whole region."""
    root = tmp_path_factory.mktemp("d9")
    for region in ("full", "whole"):
        assert main(["extract", str(media_path("d9.jpg")), "-o", str(root / region), "--size", "128",
                     "--workers", "1", "--device", "cpu", "--no-progress", "--mask-region", region]) == 0
    return {r: root / r for r in ("full", "whole")}


def test_extract_records_and_honours_the_mask_region(d9_facesets, capsys):
    full, whole = read_faceset(d9_facesets["full"]), read_faceset(d9_facesets["whole"])
    assert full.settings["mask_region"] == faceset_region(full) == "full" and faceset_region(whole) == "whole"
    rec = full.records[0]
    lm = np.asarray(rec.aligned_landmarks)
    m_full = cv2.imread(str(full.root / rec.mask), cv2.IMREAD_GRAYSCALE)
    m_whole = cv2.imread(str(whole.root / whole.records[0].mask), cv2.IMREAD_GRAYSCALE)
    # The record's landmarks are rounded to 0.01 px: a redrawn hull may differ by a pixel at its edge.
    assert (m_full != hull_mask(lm, 128, "full")).mean() < 0.002
    assert not m_full[: int(lm[17:27, 1].min()) - 1].any()  # nothing above the brows
    assert (m_full <= m_whole).all() and m_full.sum() < 0.85 * m_whole.sum()  # the forehead is left out
    assert full.records[0].blur == pytest.approx(whole.records[0].blur)  # measured on the whole hull either way

    # Appending with another region would mix two kinds of hull: refused in one line.
    assert main(["extract", str(media_path("d9.jpg")), "-o", str(full.root), "--size", "128", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "mask_region=full, not whole" in err and "--mask-region full" in err


def test_training_redraws_hulls_of_another_region(d9_facesets, caplog):
    full, whole = read_faceset(d9_facesets["full"]), read_faceset(d9_facesets["whole"])
    with caplog.at_level(logging.WARNING):
        cfg, src_a, src_b = training_masks(TrainConfig(), full, whole)
    assert cfg.mask_region == "full" and src_a == MaskSource() and src_b == MaskSource("hull", "full")
    [line] = [r.getMessage() for r in caplog.records]
    assert str(whole.root) in line and "redraws them as 'full'" in line and "disagree" in line
    # Redrawn from the landmarks, B's hulls are the ones extract drew with --mask-region full.
    drawn = FaceCache.from_faceset(whole, 64, masks=src_b, progress=False)
    extracted = FaceCache.from_faceset(full, 64, progress=False)
    assert drawn.cache_path != FaceCache.from_faceset(whole, 64, progress=False).cache_path
    assert (drawn.masks.int() - extracted.masks.int()).abs().float().mean() < 0.5  # of 255: edge pixels only

    cfg, src_a, src_b = training_masks(TrainConfig(mask_region="whole"), full, whole)
    assert cfg.mask_region == "whole" and src_a == MaskSource("hull", "whole") and src_b == MaskSource()
    with pytest.raises(DeepfakeError, match="data.mask 'xseg'"):
        training_masks(TrainConfig(data=DataConfig(mask="xseg")), full, whole)


# ----------------------------------------------------------------------------------------------------
# Segmenter masks.


@pytest.fixture(scope="module")
def mask_model(faceset_a, tmp_path_factory, one_torch_thread):
    """A tiny segmenter, one step trained: these tests need its masks to exist, not to be good."""
    from deepfake.config import MaskTrainConfig, SegmenterConfig
    from deepfake.segment.train import train_segmenter

    out = tmp_path_factory.mktemp("tiny_mask") / "m"
    cfg = MaskTrainConfig(model=SegmenterConfig(resolution=32, base_channels=2, max_channels=4, depth=2), steps=1,
                          batch=2, log_every=1, val_faces=2, preview_every=0)
    train_segmenter(cfg, [faceset_a], out, progress=False)
    return out


def _apply(faceset, mask_model):
    from deepfake.segment.apply import apply_to_faceset
    from deepfake.segment.checkpoint import load_mask_model

    apply_to_faceset(faceset, load_mask_model(mask_model), progress=False)


@pytest.mark.slow
def test_train_on_segmenter_masks(faceset_a, faceset_b, mask_model, tmp_path, capsys, one_torch_thread):
    def train(a, b, out):
        return main(["train", "--a", str(a), "--b", str(b), "-o", str(out), "--preset", "tiny", "--steps", "2",
                     "--batch", "2", "--device", "cpu", "--no-progress", "--set", "data.mask=segmenter",
                     "--set", "val_every=0", "--set", "preview_every=0", "--set", "tensorboard=false"])

    assert train(faceset_a, faceset_b, tmp_path / "m0") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{faceset_a}: no segmenter masks" in err and "deepfake mask apply" in err

    a, b = _copy(faceset_a, tmp_path / "a"), _copy(faceset_b, tmp_path / "b")
    _apply(a, mask_model)
    _apply(b, mask_model)
    assert train(a, b, tmp_path / "m") == 0
    cfg = read_config(tmp_path / "m")
    assert cfg.data.mask == "segmenter" and cfg.mask_region == "whole"
    # The losses' masks were the segmenter's files (the cache training built is found again, not rebuilt).
    fs = read_faceset(a)
    cache = FaceCache.from_faceset(fs, 64, masks=mask_source(fs, "segmenter"), progress=False)
    for i in (0, 7):
        png = cv2.imread(str(a / mask_file(cache.records[i], "segmenter")), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(cache.masks[i, 0].numpy(), cv2.resize(png, (64, 64), interpolation=cv2.INTER_AREA))
    assert not np.array_equal(cache.masks.numpy(), FaceCache.from_faceset(fs, 64, progress=False).masks.numpy())

    assert main(["train", "--a", str(a), "--b", str(b), "-o", str(tmp_path / "x"), "--preset", "tiny",
                 "--set", "data.mask=xseg", "--dry-run"]) == 2
    assert "data.mask 'xseg': choose from hull, segmenter" in capsys.readouterr().err


def test_cache_key_follows_the_masks(faceset_a, mask_model, tmp_path):
    root = _copy(faceset_a, tmp_path / "fs")
    fs = read_faceset(root)
    hull_path = FaceCache.from_faceset(fs, 32, progress=False).cache_path
    with pytest.raises(DeepfakeError, match="no segmenter masks"):
        mask_source(fs, "segmenter")

    _apply(root, mask_model)
    fs = read_faceset(root)
    assert FaceCache.from_faceset(fs, 32, progress=False).cache_path == hull_path  # no hull changed: kept
    first = FaceCache.from_faceset(fs, 32, masks=mask_source(fs, "segmenter"), progress=False)
    assert first.cache_path != hull_path

    # A rewritten mask (another `mask apply`, or a hand edit) is a new cache.
    path = root / mask_file(fs.records[3], "segmenter")
    cv2.imwrite(str(path), 255 - cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    again = FaceCache.from_faceset(fs, 32, masks=mask_source(fs, "segmenter"), progress=False)
    assert again.cache_path != first.cache_path
    assert (again.masks[3].int() + first.masks[3].int() - 255).abs().max() <= 1  # inverted

    # A face added since `mask apply` has no segmenter mask: one line, not a face trained on nothing.
    extra = dataclasses.replace(fs.records[0], file="faces/999999.png", mask="masks/999999.png", frame=999)
    shutil.copy(root / fs.records[0].file, root / extra.file)
    shutil.copy(root / fs.records[0].mask, root / extra.mask)
    write_manifest(root, fs.header, [*fs.records, extra])
    fs = read_faceset(root)
    with pytest.raises(DeepfakeError, match=r"1 face\(s\) have no segmenter mask \(first: masks_segmenter/999999.png\)"):
        FaceCache.from_faceset(fs, 32, masks=mask_source(fs, "segmenter"), progress=False)
