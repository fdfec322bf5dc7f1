"""Paste-back geometry and masks as pure functions: ROI warps equal full-frame warps, untouched pixels stay
bit-identical, masks erode/grow/feather as asked. (The real-face round trip is in test_swap.py.)"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepfake.faces.align import align_matrix, canonical_points, warp_face
from deepfake.swap.blend import feather, poisson
from deepfake.swap.blend_mask import build_mask
from deepfake.swap.paste import face_roi, paste_back, warp_to_frame

SIZE = 128


@pytest.fixture
def scene():
    """A textured 300x400 frame and a similarity (rotated, scaled, shifted) face placement in it."""
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (5, 5), 1.5)
    angle, scale = np.deg2rad(12.0), 1.6
    canon = canonical_points(SIZE, 0.75)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (canon - SIZE / 2) @ rot.T * scale + np.array([210.0, 150.0])  # where the "face" is in the frame
    matrix = align_matrix(landmarks, SIZE, 0.75)
    return frame, matrix


def test_roi_warp_equals_full_frame_warp(scene):
    frame, matrix = scene
    rng = np.random.default_rng(1)
    face = rng.random((SIZE, SIZE, 3), dtype=np.float32)
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[20:100, 30:90] = 1.0
    roi = face_roi(matrix, mask, frame.shape)
    x0, y0, x1, y1 = roi
    full = cv2.warpAffine(face, matrix, (400, 300), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    part = warp_to_frame(face, matrix, roi)
    # Equal up to OpenCV's 1/32-px fixed-point sampling grid, which a shifted origin rounds differently.
    diff = np.abs(part - full[y0:y1, x0:x1])
    assert diff.max() < 0.05 and diff.mean() < 0.005
    # The ROI covers every frame pixel the mask reaches.
    full_mask = cv2.warpAffine(mask, matrix, (400, 300), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    ys, xs = np.nonzero(full_mask > 0)
    assert ys.min() >= y0 and ys.max() < y1 and xs.min() >= x0 and xs.max() < x1


@pytest.mark.parametrize("blend", ["feather", "poisson"])
def test_paste_of_the_aligned_crop_round_trips(scene, blend):
    frame, matrix = scene
    aligned = warp_face(frame, matrix, SIZE).astype(np.float32) / 255.0
    mask = build_mask("hull", None, _ellipse())
    out = paste_back(frame.copy(), aligned, mask, matrix, blend)
    changed = np.any(out != frame, axis=2)
    touched = warp_to_frame(mask, matrix, (0, 0, 400, 300)) > 0
    assert not np.any(changed & ~touched)  # nothing outside the mask moved
    err = np.abs(out.astype(int) - frame)[touched].mean()
    assert err < 6.0, err  # only resampling error (the frame is upscaled 1.6x into the crop and back)


def _ellipse() -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(m, (64, 70), (40, 50), 0, 0, 360, 255, -1)
    return m


def test_feather_keeps_pixels_where_alpha_is_zero():
    bg = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    face = np.ones((5, 6, 3), np.float32)
    alpha = np.zeros((5, 6), np.float32)
    alpha[2, 3] = 1.0
    alpha[1, 1] = 0.5
    out = feather(bg, face, alpha)
    assert out[2, 3].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(out[1, 1], np.rint(bg[1, 1] * 0.5 + 127.5).astype(np.uint8))
    keep = alpha == 0
    np.testing.assert_array_equal(out[keep], bg[keep])


def test_poisson_takes_the_background_lighting():
    bg = np.full((80, 80, 3), 40, np.uint8)
    face = np.full((80, 80, 3), 0.9, np.float32)  # far brighter than the frame
    face[30:50, 30:50] = 0.5  # with a darker detail inside
    alpha = np.zeros((80, 80), np.float32)
    alpha[15:65, 15:65] = 1.0
    out = poisson(bg, face, alpha)
    inside = out[20:60, 20:60].astype(int)
    # Seamless cloning keeps the detail (gradients) but pulls the level towards the surroundings.
    assert inside.mean() < 0.9 * 255 * 0.8
    assert out[40, 40].mean() < out[22, 22].mean()


def test_masks_erode_dilate_and_feather():
    hull = _ellipse()
    learned = np.zeros((SIZE, SIZE), np.float32)
    learned[:, :64] = 1.0  # left half
    hard = build_mask("hull", None, hull, blur=-1)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    area = hard.sum()
    assert build_mask("hull", None, hull, erode=5, blur=-1).sum() < area < build_mask("hull", None, hull, erode=-5, blur=-1).sum()
    both = build_mask("learned*hull", learned, hull, blur=-1)
    assert both[:, 64:].max() == 0 and both.sum() < area
    soft = build_mask("hull", None, hull, blur=6)
    assert 0.0 < soft[70, 64 - 40] < 1.0  # the edge is feathered
    assert soft[70, 64] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown mask mode"):
        build_mask("everything", learned, hull)


def test_mask_fades_out_inside_the_crop_when_the_hull_runs_off_it():
    hull = np.zeros((SIZE, SIZE), np.uint8)
    hull[0:90, 20:108] = 255  # a forehead that leaves the crop at the top
    m = build_mask("hull", None, hull)
    assert m[0].max() == 0.0 and m[1].max() < 0.1  # no hard line at the crop edge
    assert m[40, 64] == pytest.approx(1.0)
