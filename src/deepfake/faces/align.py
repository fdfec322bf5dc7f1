"""Alignment geometry: pure functions, invertible, tested as a round trip.

A face is aligned by the similarity transform (rotation, uniform scale, translation) that best maps its
68 landmarks onto a canonical mean face (Umeyama's least-squares fit). The crop is then `size` px with
the canonical face spanning `coverage` of its width. Everything is expressed as 2x3 affine matrices,
source -> aligned; `transform_points(..., invert=True)` maps aligned points back to the source.
"""

from __future__ import annotations

import cv2
import numpy as np

# The canonical 68-point face (iBUG-300W order). Generalised Procrustes mean of dlib's landmarks over
# 303 frames of the sample clips and stills, averaged with its mirror image so it is exactly
# symmetric, then normalised: eyes level, centred on the symmetry axis, the 68 points' box 1 unit wide
# and centred vertically.
CANONICAL_68 = np.array(
    [
        # jaw, 0-16, from the image's left
        [-0.5000, -0.2991], [-0.4922, -0.1616], [-0.4693, -0.0265], [-0.4399, 0.1049], [-0.3944, 0.2280], [-0.3224, 0.3372],
        [-0.2296, 0.4278], [-0.1210, 0.4948], [0.0000, 0.5172], [0.1210, 0.4948], [0.2296, 0.4278],
        [0.3224, 0.3372], [0.3944, 0.2280], [0.4399, 0.1049], [0.4693, -0.0265], [0.4922, -0.1616], [0.5000, -0.2991],
        # brows, 17-21 and 22-26
        [-0.4244, -0.4367], [-0.3614, -0.4987], [-0.2696, -0.5172], [-0.1761, -0.5024], [-0.0894, -0.4632],
        [0.0894, -0.4632], [0.1761, -0.5024], [0.2696, -0.5172], [0.3614, -0.4987], [0.4244, -0.4367],
        # nose: bridge 27-30, base 31-35
        [0.0000, -0.3357], [0.0000, -0.2436], [0.0000, -0.1531], [0.0000, -0.0615],
        [-0.0892, 0.0146], [-0.0462, 0.0305], [0.0000, 0.0428], [0.0462, 0.0305], [0.0892, 0.0146],
        # eyes, 36-41 and 42-47
        [-0.3251, -0.3146], [-0.2673, -0.3513], [-0.1959, -0.3491], [-0.1345, -0.2988], [-0.2004, -0.2857], [-0.2727, -0.2869],
        [0.1345, -0.2988], [0.1959, -0.3491], [0.2673, -0.3513], [0.3251, -0.3146], [0.2727, -0.2869], [0.2004, -0.2857],
        # mouth: outer lip 48-59, inner lip 60-67
        [-0.1752, 0.2132], [-0.1121, 0.1641], [-0.0462, 0.1386], [0.0000, 0.1515], [0.0462, 0.1386], [0.1121, 0.1641],
        [0.1752, 0.2132], [0.1148, 0.2821], [0.0511, 0.3099], [0.0000, 0.3144], [-0.0511, 0.3099], [-0.1148, 0.2821],
        [-0.1453, 0.2130], [-0.0470, 0.1915], [0.0000, 0.1948], [0.0470, 0.1915],
        [0.1453, 0.2130], [0.0479, 0.2351], [0.0000, 0.2404], [-0.0479, 0.2351],
    ],
    dtype=np.float64,
)  # (68, 2)

# The jaw line moves with pose and the detector is least sure of it; fit the similarity on the inner
# points (brows, nose, eyes, mouth) only, as the incumbents do.
FIT_POINTS = np.arange(17, 68)

# The canonical face sits a little below the crop centre so the forehead fits above the brows.
CENTER_OFFSET = np.array([0.0, 0.10])


def canonical_points(size: int, coverage: float) -> np.ndarray:
    """The canonical face in aligned pixels for a crop of `size` px and the given coverage. (68, 2)"""
    return (0.5 + coverage * (CANONICAL_68 + CENTER_OFFSET)) * size


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity transform mapping src onto dst (Umeyama 1991). Returns a 3x3 matrix.

    src, dst: (N, 2). Reflections are excluded, so a mirrored point set gets the best proper rotation.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n  # (2, 2)
    d = np.ones(dim)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    t = np.eye(dim + 1)
    if rank == 0:
        t[:dim, dim] = dst_mean - src_mean
        return t
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(vt) <= 0:
        d[-1] = -1 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1
    r = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(axis=0).sum() if estimate_scale else 1.0
    t[:dim, :dim] = scale * r
    t[:dim, dim] = dst_mean - t[:dim, :dim] @ src_mean
    return t


def align_matrix(landmarks68: np.ndarray, size: int, coverage: float) -> np.ndarray:
    """2x3 affine, source pixels -> aligned pixels, for a face with these 68 source landmarks."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {lm.shape}")
    return umeyama(lm[FIT_POINTS], canonical_points(size, coverage)[FIT_POINTS])[:2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix, as 2x3."""
    m = np.vstack([np.asarray(matrix, dtype=np.float64)[:2], [0.0, 0.0, 1.0]])
    return np.linalg.inv(m)[:2]


def transform_points(points: np.ndarray, matrix: np.ndarray, invert: bool = False) -> np.ndarray:
    """Apply a 2x3 affine to (N, 2) points (or its inverse with invert=True)."""
    m = invert_affine(matrix) if invert else np.asarray(matrix, dtype=np.float64)[:2]
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def matrix_scale(matrix: np.ndarray) -> float:
    """The uniform scale of a similarity matrix (aligned px per source px)."""
    m = np.asarray(matrix, dtype=np.float64)
    return float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Cut the aligned face out of `image`. Edges are replicated so crops near the frame border have
    no black wedges for the model to learn."""
    # Shrinking a big face with bilinear sampling aliases; area-average first when the scale is small.
    scale = matrix_scale(matrix)
    m = np.asarray(matrix, dtype=np.float64)[:2].copy()
    if scale < 0.5:
        factor = min(int(1.0 / scale), 8)
        h, w = image.shape[:2]
        image = cv2.resize(image, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
        # A pixel of the small image covers sx x sy source pixels: p_source = s * p_small + (s - 1) / 2.
        sx, sy = w / image.shape[1], h / image.shape[0]
        m[:, 2] += m[:, :2] @ np.array([(sx - 1) / 2, (sy - 1) / 2])
        m[:, 0] *= sx
        m[:, 1] *= sy
    interp = cv2.INTER_CUBIC if scale > 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, m, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


def unwarp_face(aligned: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Put an aligned image back into source geometry of `shape` (h, w). Pixels outside the crop are 0."""
    h, w = shape[:2]
    return cv2.warpAffine(aligned, invert_affine(matrix), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
