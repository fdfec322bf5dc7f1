"""Quality metrics: pure functions of arrays. Every definition here is the one `report.md` states.

Conventions: images are RGB, either uint8 in [0, 255] or float in [0, 1], shape (H, W, 3); masks are
(H, W), uint8 or float, where > 0 weights a pixel (a float mask is a soft weight). Landmarks are the
68-point iBUG layout, (68, 2) in pixels. Nothing here loads a model or touches a file.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

SSIM_WINDOW = 11  # Gaussian window side (Wang et al. 2004)
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PSNR_CAP_DB = 100.0  # identical images have infinite PSNR; JSON has no infinity, so we cap it
VERIFY_THRESHOLD = 0.6  # dlib's documented same-person threshold for its ResNet embeddings
OUTER_EYE_CORNERS = (36, 45)  # iBUG 68: right eye outer corner, left eye outer corner
LAPLACIAN_3X3 = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32)  # the sharpness measure's kernel
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as cv2's RGB2GRAY


# ----------------------------------------------------------------------------------------------------
# Reconstruction quality.


def _as_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32)


def _as_weight(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=np.float32)
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    w = mask.astype(np.float32) / 255.0 if mask.dtype == np.uint8 else mask.astype(np.float32)
    if w.shape != shape:
        raise ValueError(f"mask shape {w.shape} does not match image shape {shape}")
    if w.sum() <= 0:
        raise ValueError("mask is empty: no pixel to measure")
    return w


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM, averaged over the colour channels: (H, W) float32.

    Gaussian-weighted local statistics (11x11, sigma 1.5), dynamic range 1, K1 = 0.01, K2 = 0.03.
    """
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = SSIM_K1**2, SSIM_K2**2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    maps = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        num = (2 * mx * my + c1) * (2 * cxy + c2)
        den = (mx * mx + my * my + c1) * (vx + vy + c2)
        maps.append(num / den)
    return np.mean(maps, axis=0).astype(np.float32)


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM inside the mask (mask-weighted mean of the SSIM map). 1 = identical."""
    m = ssim_map(a, b)
    w = _as_weight(mask, m.shape)
    return float((m * w).sum() / w.sum())


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of the mask-weighted mean squared error over pixels and channels, range [0, 1].

    Capped at PSNR_CAP_DB for identical images.
    """
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    w = _as_weight(mask, a.shape[:2])
    sq = (a - b) ** 2
    if sq.ndim == 3:
        sq = sq.mean(axis=2)
    mse = float((sq * w).sum() / w.sum())
    if mse <= 10 ** (-PSNR_CAP_DB / 10):
        return PSNR_CAP_DB
    return float(-10.0 * math.log10(mse))


def laplacian_variance(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Detail: the mask-weighted variance of the 3x3 Laplacian (LAPLACIAN_3X3, reflected border) of
    the grey image (BT.601 luma of RGB in [0, 1]). A blur lowers it; noise raises it."""
    image = _as_float(image)
    grey = image @ np.asarray(GREY_WEIGHTS, np.float32) if image.ndim == 3 else image  # (H, W)
    lap = cv2.filter2D(grey, cv2.CV_32F, LAPLACIAN_3X3, borderType=cv2.BORDER_REFLECT_101).astype(np.float64)
    w = _as_weight(mask, grey.shape).astype(np.float64)
    mean = (lap * w).sum() / w.sum()
    return float(((lap - mean) ** 2 * w).sum() / w.sum())


def sharpness_ratio(test: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """laplacian_variance(test) / laplacian_variance(reference), inside the same mask: 1 = as much
    detail as the reference, below 1 = blurrier. NaN when the reference has no detail at all."""
    ref = laplacian_variance(reference, mask)
    return laplacian_variance(test, mask) / ref if ref > 0 else float("nan")


def mean_sharpness_ratio(tests: Sequence[np.ndarray], references: Sequence[np.ndarray],
                         masks: Sequence[np.ndarray]) -> float:
    """The mean of the per-face sharpness ratios (faces whose reference has no detail left out)."""
    ratios = [sharpness_ratio(t, r, m) for t, r, m in zip(tests, references, masks)]
    ratios = [r for r in ratios if np.isfinite(r)]
    return float(np.mean(ratios)) if ratios else float("nan")


# ----------------------------------------------------------------------------------------------------
# Identity.


def embedding_distances(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance of each (N, 128) embedding to one (128,) reference (an identity's mean)."""
    embeddings = np.asarray(embeddings, dtype=np.float64).reshape(-1, np.shape(reference)[-1])
    return np.linalg.norm(embeddings - np.asarray(reference, dtype=np.float64)[None], axis=1)


def verification_rate(dist_to_source: np.ndarray, threshold: float = VERIFY_THRESHOLD) -> float:
    """Fraction of faces a threshold verifier accepts as the source identity: distance < threshold."""
    d = np.asarray(dist_to_source, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    return float(np.mean(d < threshold))


def nearest_identity(embeddings: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """For each (N, 128) embedding, the row of the (K, 128) gallery of identity means with the highest
    cosine similarity; -1 where two or more rows share the highest value (a tie names nobody)."""
    e = np.asarray(embeddings, dtype=np.float64).reshape(-1, np.shape(gallery)[-1])
    g = np.asarray(gallery, dtype=np.float64)
    # Products summed per pair, not a matrix product: BLAS may add a row up in another order than its
    # twin, and then two identical gallery rows would not tie exactly.
    dots = (e[:, None, :] * g[None, :, :]).sum(axis=2)  # (N, K)
    cos = dots / (np.linalg.norm(e, axis=1, keepdims=True) * np.linalg.norm(g, axis=1)[None])  # (N, K)
    best = cos.argmax(axis=1)
    ties = (cos == cos.max(axis=1, keepdims=True)).sum(axis=1) > 1
    return np.where(ties, -1, best)


def retrieval_rate(nearest: np.ndarray, source: int) -> float:
    """Top-1 identity retrieval: the fraction of faces whose nearest identity (`nearest_identity`) is
    the `source` row of the gallery. A tie counts as a miss."""
    nearest = np.asarray(nearest)
    return float(np.mean(nearest == source)) if nearest.size else float("nan")


# ----------------------------------------------------------------------------------------------------
# Expression and pose.


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance between the outer eye corners (points 36 and 45 of the 68-point layout)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return float(np.linalg.norm(lm[OUTER_EYE_CORNERS[0]] - lm[OUTER_EYE_CORNERS[1]]))


def landmark_error(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean point-to-point distance of 68 landmarks, divided by the reference's inter-ocular distance."""
    ref = np.asarray(reference, dtype=np.float64).reshape(68, 2)
    tst = np.asarray(test, dtype=np.float64).reshape(68, 2)
    iod = inter_ocular(ref)
    if iod <= 0:
        raise ValueError("reference landmarks have zero inter-ocular distance")
    return float(np.linalg.norm(ref - tst, axis=1).mean() / iod)


def angle_difference(a: float, b: float) -> float:
    """|a - b| in degrees, wrapped to [0, 180] (so 179 and -179 are 2 degrees apart)."""
    d = (float(a) - float(b) + 180.0) % 360.0 - 180.0
    return abs(d)


def pose_error(reference: dict[str, float], test: dict[str, float]) -> dict[str, float]:
    """Absolute yaw, pitch and roll differences in degrees, plus their mean."""
    out = {k: angle_difference(reference[k], test[k]) for k in ("yaw", "pitch", "roll")}
    out["mean"] = float(np.mean([out["yaw"], out["pitch"], out["roll"]]))
    return out


def landmark_pose_error(reference: np.ndarray, test: np.ndarray, image_shape: Sequence[int]) -> dict[str, float]:
    """Pose error between two faces given by their landmarks, both posed by the extract stage's solvePnP."""
    from deepfake.faces.pose import estimate_pose

    return pose_error(estimate_pose(np.asarray(reference), image_shape), estimate_pose(np.asarray(test), image_shape))


# ----------------------------------------------------------------------------------------------------
# Temporal flicker.


def mean_frame_change(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None) -> float:
    """Mean absolute change between consecutive frames (range [0, 1]), mask-weighted per pair.

    With masks, a pair is weighted by the product of its two masks, so only pixels inside the face in
    both frames count.
    """
    if len(frames) < 2:
        return float("nan")
    changes = []
    for t in range(1, len(frames)):
        prev, cur = _as_float(frames[t - 1]), _as_float(frames[t])
        diff = np.abs(cur - prev)
        if diff.ndim == 3:
            diff = diff.mean(axis=2)
        if masks is None:
            w = np.ones(diff.shape, dtype=np.float32)
        else:
            w = _as_weight(masks[t - 1], diff.shape) * _as_weight(masks[t], diff.shape)
        if w.sum() <= 0:
            continue
        changes.append(float((diff * w).sum() / w.sum()))
    return float(np.mean(changes)) if changes else float("nan")


def flicker_ratio(
    swapped: Sequence[np.ndarray], original: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None
) -> float:
    """Frame-to-frame change of the swapped face region relative to that of the original frames.

    1 = the swap changes exactly as much as the real video; > 1 = it flickers more than the source.
    """
    if len(swapped) != len(original):
        raise ValueError(f"frame counts differ: {len(swapped)} swapped vs {len(original)} original")
    orig = mean_frame_change(original, masks)
    swap = mean_frame_change(swapped, masks)
    if not orig > 0:
        return float("nan")
    return float(swap / orig)


# ----------------------------------------------------------------------------------------------------
# Real/fake classification.


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve, by the Mann-Whitney U statistic with tied scores counted as half.

    `labels`: 1 = positive (real), 0 = negative (fake); higher scores should mean more positive.
    The probability that a random positive outscores a random negative.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(x.size, dtype=np.float64)
    # Boundaries of runs of equal values in the sorted array.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction classified correctly when score >= threshold means positive (real)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.size == 0:
        return float("nan")
    return float(np.mean((s >= threshold) == y))
