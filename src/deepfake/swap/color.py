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


def _pixels(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(N, 3) pixels the statistics are taken from: inside the mask, or all when the mask is (nearly) empty."""
    flat = image.reshape(-1, 3)
    if mask is None:
        return flat
    inside = mask.reshape(-1) > 0.5
    if inside.sum() < 16:  # too few pixels for a covariance; use the whole crop
        return flat
    return flat[inside]


def rct(source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Reinhard et al. 2001: match per-channel mean and std in Lab, where channels are nearly decorrelated."""
    src_lab = cv2.cvtColor(source.astype(np.float32), cv2.COLOR_RGB2Lab)  # L in [0,100], a/b about [-127,127]
    tgt_lab = cv2.cvtColor(target.astype(np.float32), cv2.COLOR_RGB2Lab)
    s, t = _pixels(src_lab, mask), _pixels(tgt_lab, mask)
    s_mean, s_std = s.mean(0), s.std(0)
    t_mean, t_std = t.mean(0), t.std(0)
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
    mapped = np.quantile(reference, s_cdf)
    return grid, mapped


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
    flat = source.reshape(-1, 3).astype(np.float64)
    inside = None if mask is None else mask.reshape(-1) > 0.5
    if inside is not None and inside.sum() < 16:
        inside = None
    t = _pixels(target, mask).astype(np.float64)
    for rot in _rotations(iterations, seed):
        s_rot = flat @ rot  # (N, 3)
        t_rot = t @ rot
        sample = s_rot if inside is None else s_rot[inside]
        for c in range(3):
            # Build the mapping from the masked pixels, then apply it to every pixel of the crop.
            grid, mapped = _quantile_map(sample[:, c], t_rot[:, c])
            s_rot[:, c] = np.interp(s_rot[:, c], grid, mapped)
        flat = s_rot @ rot.T
    return np.clip(flat.reshape(source.shape), 0.0, 1.0).astype(np.float32)


def hist(source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-channel histogram matching in RGB."""
    s, t = _pixels(source, mask), _pixels(target, mask)
    out = np.empty_like(source, dtype=np.float32)
    for c in range(3):
        grid, mapped = _quantile_map(s[:, c], t[:, c])
        out[..., c] = np.interp(source[..., c], grid, mapped)
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
