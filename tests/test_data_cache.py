"""The face cache: decoded once, exact round trip, memory-mapped, rebuilt when the faceset changes.

The facesets here are built from real frames of d6.mp4 (a centre crop around the face, written as PNG
with a manifest). Their landmarks are a fixed placeholder layout: the cache only scales them, so the
test needs known numbers, not a detector. `build_faceset` is shared with the other speed tests.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import media_path
from deepfake.faceset import cache as data
from deepfake.faceset.cache import FaceCache, Sampler
from deepfake.faceset import FaceRecord, new_header, read_faceset, write_manifest


def placeholder_landmarks(size: int) -> np.ndarray:
    """68 points on an ellipse inside the face crop (aligned px): known values for the scaling check."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([size * (0.5 + 0.3 * np.cos(t)), size * (0.55 + 0.35 * np.sin(t))], axis=1).astype(np.float32)


def build_faceset(root: Path, clip: str = "d6.mp4", count: int = 12, size: int = 96, every: int = 5) -> list[np.ndarray]:
    """A small faceset of real frames: centre crops of `clip` at `size` px. Returns the RGB arrays written."""
    cap = cv2.VideoCapture(str(media_path(clip)))
    (root / "faces").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    faces, records, frame = [], [], 0
    while len(faces) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frame += 1
        if (frame - 1) % every:
            continue
        h, w = bgr.shape[:2]
        side = int(min(h, w) * 0.6)
        y0, x0 = (h - side) // 2 - side // 8, (w - side) // 2
        crop = cv2.resize(bgr[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        mask = np.zeros((size, size), np.uint8)
        cv2.ellipse(mask, (size // 2, size * 11 // 20), (size * 3 // 10, size * 7 // 20), 0, 0, 360, 255, -1)
        i = len(faces)
        cv2.imwrite(str(root / "faces" / f"{i:06d}.png"), crop)
        cv2.imwrite(str(root / "masks" / f"{i:06d}.png"), mask)
        lm = placeholder_landmarks(size) + i  # distinct per face, so row order is checked too
        records.append(
            FaceRecord(
                file=f"faces/{i:06d}.png", mask=f"masks/{i:06d}.png", source=clip, source_id=clip, frame=frame - 1,
                time=(frame - 1) / 30.0, face_index=0, bbox=[x0, y0, x0 + side, y0 + side],
                landmarks=lm.tolist(), aligned_landmarks=lm.tolist(), matrix=[[1, 0, 0], [0, 1, 0]], size=size,
                score=1.0, blur=100.0, pose={"yaw": 0.0, "pitch": 0.0, "roll": 0.0}, embedding=[0.0] * 128,
            )
        )
        faces.append(rgb)
    cap.release()
    write_manifest(root, new_header({"size": size, "coverage": 0.75}), records)
    return faces


@pytest.fixture(scope="module")
def faceset(tmp_path_factory):
    root = tmp_path_factory.mktemp("faceset_d6")
    faces = build_faceset(root)
    return root, faces


def test_cache_round_trips_images_exactly(faceset, tmp_path):
    root, faces = faceset
    cache = FaceCache.from_faceset(root, resolution=96, cache_dir=tmp_path, progress=False)
    assert cache.images.dtype == torch.uint8 and cache.images.shape == (len(faces), 3, 96, 96)
    assert cache.masks.shape == (len(faces), 1, 96, 96) and cache.landmarks.dtype == torch.float32
    written = torch.from_numpy(np.stack(faces).transpose(0, 3, 1, 2))  # (N, 3, 96, 96)
    assert torch.equal(cache.images, written)  # PNG is lossless: bit for bit the pixels extract wrote
    masks = torch.from_numpy(np.stack([cv2.imread(str(root / r.mask), cv2.IMREAD_GRAYSCALE) for r in cache.records]))
    assert torch.equal(cache.masks[:, 0], masks)
    assert set(cache.masks.unique().tolist()) == {0, 255}
    expected = np.stack([np.asarray(r.aligned_landmarks, np.float32) for r in cache.records])
    assert np.array_equal(cache.landmarks.numpy(), expected)


def test_cache_at_training_resolution_matches_a_fresh_decode(faceset, tmp_path):
    root, faces = faceset
    cache = FaceCache.from_faceset(root, resolution=64, cache_dir=tmp_path, progress=False)
    for i, rgb in enumerate(faces):
        fresh = cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)  # (3, 64, 64)
        assert np.array_equal(cache.images[i].numpy(), fresh), f"face {i} differs from a fresh decode"
    # Landmarks follow the image: aligned px * 64/96.
    lm0 = placeholder_landmarks(96) * (64 / 96)
    np.testing.assert_allclose(cache.landmarks[0].numpy(), lm0, rtol=1e-6)
    np.testing.assert_allclose(cache.landmarks[5].numpy(), lm0 + 5 * 64 / 96, rtol=1e-6)


def test_second_load_maps_the_cache_without_decoding(faceset, tmp_path, monkeypatch):
    root, _ = faceset
    first = FaceCache.from_faceset(root, resolution=64, cache_dir=tmp_path, progress=False)

    def no_decode(*args, **kwargs):
        raise AssertionError("the cache should have been reused, not rebuilt")

    monkeypatch.setattr(data, "decode_face", no_decode)
    second = FaceCache.from_faceset(root, resolution=64, cache_dir=tmp_path, progress=False)
    assert second.cache_path == first.cache_path
    assert torch.equal(first.images, second.images) and torch.equal(first.landmarks, second.landmarks)
    # The tensors point into a memory map of the .npy file (see /proc/self/maps), not into a copy in RAM.
    for name, tensor in (("images.npy", second.images), ("masks.npy", second.masks), ("landmarks.npy", second.landmarks)):
        assert mapped_file_at(tensor.data_ptr()) == str(second.cache_path / name)


def mapped_file_at(address: int) -> str | None:
    """The file mapped at `address` in this process, from /proc/self/maps (Linux)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux) to see memory maps")
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if lo <= address < hi:
            return fields[5].strip() if len(fields) == 6 else None
    return None


def test_default_cache_lives_in_the_faceset_and_changed_manifest_rebuilds(tmp_path):
    root = tmp_path / "fs"
    build_faceset(root, count=6, every=7)
    cache = FaceCache.from_faceset(root, resolution=32, progress=False)
    assert cache.cache_path.parent == root / ".cache" and (cache.cache_path / "meta.json").is_file()
    # Drop two faces and flip the order: the manifest hash changes, so the cache is rebuilt to match.
    fs = read_faceset(root)
    kept = list(reversed(fs.records[2:]))
    write_manifest(root, fs.header, kept)
    rebuilt = FaceCache.from_faceset(root, resolution=32, progress=False)
    assert rebuilt.cache_path != cache.cache_path
    assert [r.file for r in rebuilt.records] == [r.file for r in kept]
    assert torch.equal(rebuilt.images[-1], cache.images[2])
    assert torch.equal(rebuilt.images[0], cache.images[5])


def test_unreadable_face_is_skipped_and_reported(tmp_path, caplog):
    root = tmp_path / "fs"
    faces = build_faceset(root, count=5, every=9)
    (root / "faces" / "000002.png").write_bytes(b"not a png")
    fs = read_faceset(root)
    write_manifest(root, fs.header, fs.records)  # same records: only the pixels broke
    cache = FaceCache.from_faceset(root, resolution=96, cache_dir=tmp_path / "c", progress=False)
    assert len(cache) == 4 and [r.file for r in cache.records] == [f"faces/{i:06d}.png" for i in (0, 1, 3, 4)]
    assert torch.equal(cache.images[2], torch.from_numpy(faces[3].transpose(2, 0, 1)))
    assert np.load(cache.cache_path / "images.npy", allow_pickle=False).shape[0] == 4
    assert "000002.png" in caplog.text


def test_sampler_covers_every_face_once_per_epoch():
    g = torch.Generator().manual_seed(3)
    it = iter(Sampler(torch.arange(10, 20), batch=4, generator=g))
    drawn = torch.cat([next(it) for _ in range(5)])  # 20 rows = two epochs of 10
    assert sorted(drawn[:10].tolist()) == list(range(10, 20))
    assert sorted(drawn[10:].tolist()) == list(range(10, 20))


def test_sharded_batches_equal_the_single_process_global_batch(faceset, tmp_path):
    root, _ = faceset
    cache = FaceCache.from_faceset(root, resolution=32, cache_dir=tmp_path, progress=False)
    single = cache.batches(None, 6, torch.Generator().manual_seed(7))
    ranks = [cache.batches(None, 3, torch.Generator().manual_seed(7), rank=r, world_size=2) for r in range(2)]
    for _ in range(4):
        whole = next(single)
        parts = [next(it) for it in ranks]
        assert torch.equal(whole.indices, torch.cat([p.indices for p in parts]))
        assert torch.equal(whole.images, torch.cat([p.images for p in parts]))
        assert torch.equal(whole.images, cache.images[whole.indices])
        assert torch.equal(whole.landmarks, cache.landmarks[whole.indices])


def test_pin_and_to_are_safe_without_cuda(faceset, tmp_path):
    root, _ = faceset
    cache = FaceCache.from_faceset(root, resolution=32, cache_dir=tmp_path, progress=False)
    moved = cache.pin().to("cpu")
    assert moved.device.type == "cpu" and torch.equal(moved.images, cache.images)
    sub = cache.subset([4, 1])
    assert len(sub) == 2 and torch.equal(sub.images[0], cache.images[4]) and sub.records[1] is cache.records[1]


def test_extracted_faceset_caches_at_training_resolution(faceset_a, tmp_path):
    """The real contract: a faceset `deepfake extract` wrote (aligned 128 px faces of d6.mp4), cached at 64."""
    fs = read_faceset(faceset_a)
    cache = FaceCache.from_faceset(fs, resolution=64, cache_dir=tmp_path, progress=False)
    assert len(cache) == len(fs) > 0
    for i in (0, len(cache) - 1):
        rec = cache.records[i]
        bgr = cv2.imread(str(fs.root / rec.file), cv2.IMREAD_COLOR)
        fresh = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (64, 64), interpolation=cv2.INTER_AREA)
        assert np.array_equal(cache.images[i].numpy(), fresh.transpose(2, 0, 1))
        expected = np.asarray(rec.aligned_landmarks, np.float32) * (64 / rec.size)  # (68, 2) in 64-px units
        np.testing.assert_allclose(cache.landmarks[i].numpy(), expected, rtol=1e-6)
    # The scaled landmarks still sit on the face: the hull mask (drawn from them) covers the nose and eyes.
    lm = cache.landmarks.round().long().clamp(0, 63)  # (N, 68, 2)
    inner = torch.cat([lm[:, 27:36], lm[:, 36:48]], dim=1)  # nose and eyes, (N, 21, 2)
    n = torch.arange(len(cache)).view(-1, 1)
    on_face = cache.masks[n, 0, inner[..., 1], inner[..., 0]]  # (N, 21) mask value at each point
    assert (on_face == 255).float().mean() > 0.95
