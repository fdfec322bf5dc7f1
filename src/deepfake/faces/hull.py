"""Face-hull mask from landmarks. The 68 points stop at the eyebrows; the `whole` region (the default)
lifts the brows along the face's vertical axis to approximate the hairline, the `full` region stops at
the brows (DeepFaceLab's "full face"), which keeps fringes and hats out of the blend."""

from __future__ import annotations

import cv2
import numpy as np

from deepfake.config.choices import MASK_REGIONS

FOREHEAD = 0.55  # how far above the brows the hull reaches, in units of the brow-to-nose-tip length


def forehead_points(landmarks: np.ndarray, amount: float = FOREHEAD) -> np.ndarray:
    """Brow points (17..26) lifted towards the hairline, higher in the middle than at the temples. (10, 2)"""
    lm = np.asarray(landmarks, dtype=np.float64)
    brows = lm[17:27]
    brow_mid = brows.mean(axis=0)
    up = brow_mid - lm[30]  # nose tip -> brows: the face's "up", whatever the roll
    # Arch: full lift at the centre of the brows, about half at the outer ends.
    across = np.linspace(-1.0, 1.0, len(brows))
    lift = amount * (1.0 - 0.5 * across**2)
    return brows + lift[:, None] * up[None, :]


def hull_mask(aligned_landmarks: np.ndarray, size: int, region: str = "whole") -> np.ndarray:
    """uint8 (size, size) mask, 255 inside the face hull, 0 outside: jaw, brows and forehead for
    region `whole`, jaw and brows for `full`."""
    if region not in MASK_REGIONS:
        raise ValueError(f"unknown mask region '{region}' (choose from {', '.join(MASK_REGIONS)})")
    lm = np.asarray(aligned_landmarks, dtype=np.float64)
    pts = np.concatenate([lm, forehead_points(lm)]) if region == "whole" else lm
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_8)
    return mask
