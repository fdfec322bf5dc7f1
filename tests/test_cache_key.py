"""The face cache follows the faces: a faceset copied together with its cache, then one face painted over
in the copy, and `mask apply`, training's batches and evaluate all read the painted pixels (real faces of
d6.mp4). The copy keeps the files' modification times (shutil.copytree, as `cp -a`), the case where the
manifest and every other file are byte for byte the original's."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deepfake.faceset import read_faceset, side_split
from deepfake.faceset.cache import FaceCache
from deepfake.faceset.cache_key import cache_key
from deepfake.faceset.mask_files import MaskSource

pytestmark = pytest.mark.media

MAGENTA = (255, 0, 255)  # RGB, and the same in BGR


def paint(path: Path) -> None:
    """A magenta square over the middle half of a face image, written in place."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    s = img.shape[0]
    img[s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = MAGENTA
    assert cv2.imwrite(str(path), img)


def is_painted(rgb: np.ndarray) -> bool:
    """(R, R, 3) uint8 RGB: the middle of the face is the paint, exactly."""
    r = rgb.shape[0]
    centre = rgb[3 * r // 8 : 5 * r // 8, 3 * r // 8 : 5 * r // 8].reshape(-1, 3)
    return bool((centre == np.array(MAGENTA, np.uint8)).all())


@pytest.fixture(scope="module")
def tiny_config():
    from deepfake.models.presets import preset_config

    return replace(preset_config("tiny"), device="cpu")


@pytest.fixture(scope="module")
def original(faceset_a, tmp_path_factory, tiny_config):
    """faceset_a's faces, cached at the training resolution before the copy is made."""
    root = tmp_path_factory.mktemp("cache_key") / "clean"
    shutil.copytree(faceset_a, root, ignore=shutil.ignore_patterns(".cache"))
    FaceCache.from_faceset(root, tiny_config.model.resolution, progress=False)
    return root


def painted_copy(original: Path, dest: Path, cfg) -> tuple[Path, str]:
    """A copy of `original`, its .cache included, with one held-out face of side A painted over."""
    shutil.copytree(original, dest)
    fs = read_faceset(dest)
    _, val_idx = side_split(len(fs), cfg.val_fraction, cfg.seed, "a", cfg.val_split)
    face = fs.records[int(val_idx[0])].file
    paint(dest / face)
    return dest, face


def test_the_key_covers_every_face_file(original, tmp_path, tiny_config):
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    key = cache_key(read_faceset(copy), MaskSource())
    assert key.digest == cache_key(read_faceset(original), MaskSource()).digest  # same files, same times
    fs = read_faceset(copy)
    paint(copy / fs.records[7].file)
    changed = cache_key(read_faceset(copy), MaskSource())
    assert changed.digest != key.digest and changed.manifest == key.manifest
    assert [f for f in key.files if key.files[f] != changed.files[f]] == [fs.records[7].file]


def test_training_batches_read_the_painted_face(original, tmp_path, tiny_config, caplog):
    from deepfake.train.batches import load_side

    copy, face = painted_copy(original, tmp_path / "copy", tiny_config)
    res = tiny_config.model.resolution
    stale = sorted((copy / ".cache").glob(f"r{res}-*"))  # the clean faces' cache, copied along
    with caplog.at_level(logging.INFO, logger="deepfake.faceset.cache"):
        _, side = load_side(copy, tiny_config, torch.device("cpu"), "a", torch.Generator().manual_seed(0), False)
    rebuilt = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert rebuilt == [f"{copy}: rebuilding the {res} px face cache: 1 image file(s) changed size or modification "
                       f"time since it was built (first: {face})"]
    assert not any(p.exists() for p in stale)  # the superseded cache is gone
    row = next(i for i, r in enumerate(side.cache.records) if r.file == face)
    batch = side.cache.gather(torch.tensor([row]))
    assert is_painted(batch.images[0].permute(1, 2, 0).numpy())
    assert side.val is not None and is_painted((side.val.inputs[0] * 255).round().byte().permute(1, 2, 0).numpy())
    # The clean original still reads its own pixels from its own cache.
    clean = FaceCache.from_faceset(original, res, progress=False)
    assert not is_painted(clean.images[row].permute(1, 2, 0).numpy())


def test_evaluate_reads_the_painted_face(original, tmp_path, tiny_config):
    from deepfake.evaluate.runner import held_out_faces

    copy, face = painted_copy(original, tmp_path / "copy", tiny_config)
    cfg = tiny_config
    held = held_out_faces(read_faceset(copy), cfg.model.resolution, cfg.val_fraction, cfg.seed, "a", how=cfg.val_split)
    assert read_faceset(copy).records[int(held.indices[0])].file == face
    assert is_painted(held.images[0]) and not any(is_painted(im) for im in held.images[1:])


@pytest.mark.slow
def test_mask_apply_reads_the_painted_face(original, tmp_path, tiny_config, one_torch_thread, caplog, monkeypatch):
    from deepfake.cli import main
    from deepfake.faceset import cache as cache_module
    from deepfake.segment.apply import MaskPredictor, segmenter_mask_file
    from deepfake.segment.checkpoint import load_mask_model

    model = tmp_path / "segmenter"
    tiny = ["--resolution", "32", "--set", "model.base_channels=2", "--set", "model.max_channels=4",
            "--set", "model.depth=2", "--batch", "2", "--set", "val_faces=2"]
    assert main(["mask", "train", str(original), "-o", str(model), "--steps", "2", "--no-progress", *tiny]) == 0
    copy, face = painted_copy(original, tmp_path / "copy", tiny_config)  # carries the 32 px cache of the clean faces
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deepfake.faceset.cache"):
        assert main(["mask", "apply", str(copy), "-m", str(model), "--device", "cpu", "--no-progress"]) == 0
    assert f"rebuilding the 32 px face cache: 1 image file(s) changed size or modification time since it was built " \
           f"(first: {face})" in caplog.text

    # The faces mask apply predicted from: the cache it left, mapped again without decoding anything.
    def no_decode(*args, **kwargs):
        raise AssertionError("mask apply should have left a cache of the painted faces")

    monkeypatch.setattr(cache_module, "decode_face", no_decode)
    used = FaceCache.from_faceset(copy, 32, progress=False)
    row = next(i for i, r in enumerate(used.records) if r.file == face)
    assert is_painted(used.images[row].permute(1, 2, 0).numpy())
    assert not any(is_painted(used.images[i].permute(1, 2, 0).numpy()) for i in range(len(used)) if i != row)
    # And the mask it wrote for that face is the model's prediction on those pixels.
    predictor = MaskPredictor(load_mask_model(model), "cpu", 4)
    size = used.records[row].size
    m = predictor(used.images[row : row + 1])[0, 0].numpy()
    expected = (cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) * 255 + 0.5).astype(np.uint8).astype(int)
    written = cv2.imread(str(copy / segmenter_mask_file(used.records[row])), cv2.IMREAD_GRAYSCALE).astype(int)
    assert np.abs(written - expected).max() <= 1
