"""DeepFaceLab's whole-face crop and the fixed similarity between it and our aligned crop.

DFL-contract peers cut faces with five points (eye centres, nose tip, mouth corners) onto FaceFusion's
`dfl_whole_face` template, given as fractions of the crop side. Our crop places the 68-point canonical
face (faces/align.py) at `coverage` of the side. Both are similarity frames of the same face, so one
similarity maps DFL-crop fractions to ours: the least-squares fit of the template's five points onto the
five points of our canonical face. An export bakes it into the graph; the runtime applies it on the host
to feed a DFL-crop file from our aligner. All matrices are 2x3, pixel centres on integers (OpenCV's
convention), source -> destination.
"""

from __future__ import annotations

import numpy as np

from deepfake.faces.align import CANONICAL_68, CENTER_OFFSET, umeyama

# FaceFusion's `dfl_whole_face` template (fractions of the side): eyes, nose tip, mouth corners.
DFL_WHOLE_FACE = np.array(
    [
        [0.35342266, 0.39285716],
        [0.62797622, 0.39285716],
        [0.48660713, 0.54017860],
        [0.38839287, 0.68750011],
        [0.59821427, 0.68750011],
    ],
    dtype=np.float64,
)  # (5, 2)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """The five points DFL-contract peers cut by, from 68 landmarks: the mean of 36-41, the mean of 42-47,
    point 30, point 48, point 54. (5, 2)"""
    lm = np.asarray(landmarks68, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def our_five_fractions(coverage: float) -> np.ndarray:
    """Where our canonical face's five points sit in our crop, as fractions of its side. (5, 2)"""
    return five_points(0.5 + coverage * (CANONICAL_68 + CENTER_OFFSET))


def dfl_to_ours_fractions(coverage: float) -> np.ndarray:
    """3x3 similarity: a DFL whole-face crop fraction -> the same face point as a fraction of our crop."""
    return umeyama(DFL_WHOLE_FACE, our_five_fractions(coverage))


def dfl_to_ours(dfl_size: int, our_size: int, coverage: float) -> np.ndarray:
    """2x3, DFL-crop pixels (dfl_size px) -> our-crop pixels (our_size px)."""
    scale_in = np.diag([1.0 / dfl_size, 1.0 / dfl_size, 1.0])
    scale_out = np.diag([float(our_size), float(our_size), 1.0])
    return (scale_out @ dfl_to_ours_fractions(coverage) @ scale_in)[:2]


def ours_to_dfl(our_size: int, dfl_size: int, coverage: float) -> np.ndarray:
    """2x3, our-crop pixels -> DFL-crop pixels: the inverse of `dfl_to_ours`."""
    m = np.vstack([dfl_to_ours(dfl_size, our_size, coverage), [0.0, 0.0, 1.0]])
    return np.linalg.inv(m)[:2]


def sampling_grid(dst_to_src: np.ndarray, dst_size: int, src_size: int) -> np.ndarray:
    """grid_sample's grid (align_corners=False) that fills a dst_size crop from a src_size one, given
    the 2x3 map from destination pixels to source pixels. (1, dst_size, dst_size, 2) float32 in -1..1."""
    ys, xs = np.mgrid[0:dst_size, 0:dst_size].astype(np.float64)
    src = np.stack([xs, ys], -1) @ np.asarray(dst_to_src)[:, :2].T + np.asarray(dst_to_src)[:, 2]  # (D, D, 2) px
    return ((2.0 * src + 1.0) / src_size - 1.0)[None].astype(np.float32)
