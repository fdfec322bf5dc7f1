"""Colour matching: move the swapped face's colours towards the face it replaces.

Every function takes `source` (the swapped face, recoloured) and `target` (the original face), both float32
RGB (H, W, 3) in [0, 1], plus an optional `mask` (H, W) in [0, 1] that says which pixels the statistics
come from (the face, not the background the aligned crop also holds). They return float32 RGB in [0, 1].
Pure numpy/cv2: no state, no model.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

_EPS = 1e-6
_SAMPLES = 8192  # pixels used to estimate a distribution (idt)


def _pixels(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(N, 3) pixels the statistics are taken from: inside the mask, or all when the mask is (nearly) empty."""
    flat = image.reshape(-1, 3)
    if mask is None:
        return flat
    inside = mask.reshape(-1) > 0.5
    if inside.sum() < 16:  # too few pixels for a covariance; use the whole crop
        return flat
    return flat[inside]


def _mean_std(image: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std inside the mask (cv2.meanStdDev: one C pass, no copies)."""
    m = None
    if mask is not None:
        m = (mask > 0.5).astype(np.uint8)
        if cv2.countNonZero(m) < 16:
            m = None
    mean, std = cv2.meanStdDev(image, mask=m)
    return mean.reshape(3).astype(np.float32), std.reshape(3).astype(np.float32)


def rct(source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Reinhard et al. 2001: match per-channel mean and std in Lab, where channels are nearly decorrelated."""
    src_lab = cv2.cvtColor(source.astype(np.float32), cv2.COLOR_RGB2Lab)  # L in [0,100], a/b about [-127,127]
    tgt_lab = cv2.cvtColor(target.astype(np.float32), cv2.COLOR_RGB2Lab)
    s_mean, s_std = _mean_std(src_lab, mask)
    t_mean, t_std = _mean_std(tgt_lab, mask)
    out = (src_lab - s_mean) * (t_std / np.maximum(s_std, _EPS)) + t_mean
    out[..., 0] = np.clip(out[..., 0], 0.0, 100.0)
    out[..., 1:] = np.clip(out[..., 1:], -127.0, 127.0)
    return np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


def _sqrtm_psd(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Square root and inverse square root of a symmetric positive semi-definite 3x3 matrix."""
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, _EPS)
    return (v * np.sqrt(w)) @ v.T, (v / np.sqrt(w)) @ v.T


def lct(source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Linear colour transfer: an affine map that gives the source the target's mean and RGB covariance."""
    s, t = _pixels(source, mask).astype(np.float64), _pixels(target, mask).astype(np.float64)
    s_mean, t_mean = s.mean(0), t.mean(0)
    cs = np.cov(s, rowvar=False) + _EPS * np.eye(3)
    ct = np.cov(t, rowvar=False) + _EPS * np.eye(3)
    _, cs_inv_sqrt = _sqrtm_psd(cs)
    ct_sqrt, _ = _sqrtm_psd(ct)
    # Whiten with the source covariance, colour with the target's (PCA-style, as in DFL's "lct").
    transform = cs_inv_sqrt @ ct_sqrt  # (3, 3), applied to row vectors
    out = (source.reshape(-1, 3) - s_mean) @ transform + t_mean
    return np.clip(out.reshape(source.shape), 0.0, 1.0).astype(np.float32)


def _quantile_map(sample: np.ndarray, reference: np.ndarray, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A monotone 1-D map, as (grid, mapped) for np.interp, that gives `sample` the distribution of `reference`."""
    lo, hi = float(sample.min()), float(sample.max())
    grid = np.linspace(lo, hi, bins + 1)
    if hi - lo < _EPS:
        return grid, np.full_like(grid, float(np.median(reference)))
    s_hist, _ = np.histogram(sample, grid)
    s_cdf = np.concatenate([[0.0], np.cumsum(s_hist, dtype=np.float64)])
    s_cdf /= s_cdf[-1]
    # value -> its quantile in the sample -> the reference value at that quantile
    ref = np.sort(reference)
    mapped = np.interp(s_cdf, np.linspace(0.0, 1.0, len(ref)), ref)
    return grid, mapped


def _apply_uniform_map(x: np.ndarray, grid: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """np.interp(x, grid, mapped) for a uniform grid: direct indexing instead of a binary search per value."""
    bins = len(grid) - 1
    step = (grid[-1] - grid[0]) / bins
    if step <= 0:
        return np.full_like(x, mapped[0])
    pos = np.clip((x - grid[0]) / step, 0.0, bins)
    i = np.minimum(pos.astype(np.int32), bins - 1)
    frac = (pos - i).astype(x.dtype)
    m = mapped.astype(x.dtype)
    return m[i] + frac * (m[i + 1] - m[i])


def _subsample(pixels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """At most n rows, drawn with a fixed seed: distributions need a few thousand samples, not every pixel."""
    if len(pixels) <= n:
        return pixels
    return pixels[np.random.default_rng(seed).choice(len(pixels), n, replace=False)]


def _rotations(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [np.eye(3)]
    for _ in range(n - 1):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        out.append(q * np.sign(np.diag(r)))
    return out


def idt(
    source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None, iterations: int = 10, seed: int = 0
) -> np.ndarray:
    """Iterative distribution transfer (Pitié et al. 2005): match 1-D marginals along rotating axes.

    Each iteration rotates colour space, matches the three projected histograms, and rotates back; after a
    few rotations the full 3-D distribution approaches the target's. Rotations are seeded so a video gets
    the same mapping family on every frame.
    """
    pixels = np.ascontiguousarray(source.reshape(-1, 3).T, dtype=np.float32)  # (3, N): rows stay contiguous
    inside = np.arange(pixels.shape[1]) if mask is None else np.flatnonzero(mask.reshape(-1) > 0.5)
    if len(inside) < 16:
        inside = np.arange(pixels.shape[1])
    # The maps are estimated from a few thousand face pixels, then applied to every pixel of the crop.
    sample_idx = _subsample(inside, _SAMPLES, seed)
    t = _subsample(_pixels(target, mask), _SAMPLES, seed).T.astype(np.float32)  # (3, M)
    for rot in _rotations(iterations, seed):
        r = rot.T.astype(np.float32)
        rotated = r @ pixels  # (3, N)
        t_rot = r @ t  # (3, M)
        for c in range(3):
            grid, mapped = _quantile_map(rotated[c, sample_idx], t_rot[c])
            rotated[c] = _apply_uniform_map(rotated[c], grid, mapped)
        pixels = r.T @ rotated  # (3, N)
    return np.clip(pixels.T.reshape(source.shape), 0.0, 1.0).astype(np.float32)


def hist(source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-channel histogram matching in RGB."""
    s, t = _pixels(source, mask), _pixels(target, mask)
    out = np.empty_like(source, dtype=np.float32)
    for c in range(3):
        grid, mapped = _quantile_map(s[:, c], t[:, c])
        out[..., c] = _apply_uniform_map(np.ascontiguousarray(source[..., c], dtype=np.float32), grid, mapped)
    return np.clip(out, 0.0, 1.0)


def none(source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    return source.astype(np.float32, copy=False)


COLOR_MODES: dict[str, Callable[..., np.ndarray]] = {"rct": rct, "lct": lct, "idt": idt, "hist": hist, "none": none}


def match_color(mode: str, source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    try:
        fn = COLOR_MODES[mode]
    except KeyError:
        raise ValueError(f"unknown colour mode '{mode}' (choose from {', '.join(COLOR_MODES)})") from None
    return fn(source, target, mask)
