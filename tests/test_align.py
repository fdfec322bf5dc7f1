"""Alignment geometry: Umeyama fit, round trips, coverage, warp consistency."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepfake.faces.align import (
    CANONICAL_68,
    align_matrix,
    canonical_points,
    invert_affine,
    transform_points,
    umeyama,
    warp_face,
)


def _similarity(scale, angle_deg, tx, ty):
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def _face_in_frame(seed=0):
    """A canonical face placed in a 640x480 frame with a random similarity, plus landmark noise."""
    rng = np.random.default_rng(seed)
    m = _similarity(rng.uniform(120, 260), rng.uniform(-30, 30), rng.uniform(200, 440), rng.uniform(150, 330))
    pts = transform_points(CANONICAL_68, m) + rng.normal(0, 1.0, (68, 2))
    return pts, m


def test_canonical_face_is_symmetric_and_normalised():
    assert CANONICAL_68.shape == (68, 2)
    assert CANONICAL_68[:, 0].max() - CANONICAL_68[:, 0].min() == pytest.approx(1.0, abs=1e-3)
    # The eyes are level and the nose bridge is on the symmetry axis.
    assert CANONICAL_68[36:42, 1].mean() == pytest.approx(CANONICAL_68[42:48, 1].mean(), abs=1e-3)
    assert np.allclose(CANONICAL_68[27:31, 0], 0.0, atol=1e-3)


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(30, 2))
    m = _similarity(1.7, 23.0, 5.0, -3.0)
    dst = transform_points(src, m)
    est = umeyama(src, dst)
    assert np.allclose(est[:2], m, atol=1e-9)
    assert np.allclose(est[2], [0, 0, 1])


@pytest.mark.parametrize("seed", range(5))
def test_align_then_invert_gives_back_the_points(seed):
    pts, _ = _face_in_frame(seed)
    matrix = align_matrix(pts, 256, 0.75)
    aligned = transform_points(pts, matrix)
    back = transform_points(aligned, matrix, invert=True)
    assert np.abs(back - pts).max() < 1e-9
    assert np.allclose(transform_points(aligned, invert_affine(matrix)), pts, atol=1e-9)


@pytest.mark.parametrize("coverage", [0.6, 0.75, 0.9])
def test_aligned_face_lands_on_the_canonical_face_at_the_requested_coverage(coverage):
    pts, _ = _face_in_frame(3)
    size = 128
    aligned = transform_points(pts, align_matrix(pts, size, coverage))
    target = canonical_points(size, coverage)
    # Within the landmark noise (1 px in a face ~200 px wide, so < 1 px at this size on average).
    assert np.abs(aligned[17:] - target[17:]).mean() < 1.0
    width = aligned[:, 0].max() - aligned[:, 0].min()
    assert width / size == pytest.approx(coverage, rel=0.05)
    assert aligned.min() > 0 and aligned[:, 0].max() < size  # the whole face is inside the crop


def test_warp_moves_pixels_where_the_matrix_moves_points():
    # A bright dot at a known source position must appear at its transformed position.
    img = np.zeros((480, 640, 3), dtype=np.uint8)
    pts, _ = _face_in_frame(4)
    matrix = align_matrix(pts, 256, 0.75)
    for p in pts[[30, 36, 45, 48, 54]]:
        img[:] = 0
        x, y = np.round(p).astype(int)
        img[y - 2 : y + 3, x - 2 : x + 3] = 255
        out = warp_face(img, matrix, 256)[..., 0].astype(float)
        ys, xs = np.nonzero(out > 64)
        centre = np.array([np.average(xs, weights=out[ys, xs]), np.average(ys, weights=out[ys, xs])])
        expected = transform_points(np.array([[x, y]], float), matrix)[0]
        assert np.linalg.norm(centre - expected) < 1.0


def test_warp_of_a_huge_source_matches_the_normal_one():
    # Big faces are area-reduced before warping; the crop must not shift.
    rng = np.random.default_rng(5)
    small = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    small = cv2.GaussianBlur(small, (0, 0), 3)
    big = cv2.resize(small, (160 * 8, 120 * 8), interpolation=cv2.INTER_CUBIC)
    pts, _ = _face_in_frame(5)
    pts = pts / 4.0  # a face inside the 160x120 image
    m_small = align_matrix(pts, 64, 0.75)
    m_big = align_matrix((pts + 0.5) * 8 - 0.5, 64, 0.75)
    a = warp_face(small, m_small, 64).astype(float)
    b = warp_face(big, m_big, 64).astype(float)
    assert np.abs(a - b).mean() < 6.0


def test_align_matrix_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        align_matrix(np.zeros((5, 2)), 128, 0.75)
