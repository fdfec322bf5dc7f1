"""Per-face image quality measures."""

from __future__ import annotations

import cv2
import numpy as np


def blur_score(aligned_rgb: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the Laplacian inside the face (higher = sharper).

    Measured on the aligned face resized to 128 px, so the score does not depend on the crop size and
    facesets extracted at different sizes can share a threshold.
    """
    gray = cv2.cvtColor(aligned_rgb, cv2.COLOR_RGB2GRAY)
    if gray.shape[0] != 128:
        interp = cv2.INTER_AREA if gray.shape[0] > 128 else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (128, 128), interpolation=interp)
        if mask is not None:
            mask = cv2.resize(mask, (128, 128), interpolation=cv2.INTER_NEAREST)
    lap = cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F, ksize=3)
    if mask is not None:
        # Erode so the mask edge against the background does not count as detail.
        inside = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
        if inside.sum() > 16:
            return float(lap[inside].var())
    return float(lap.var())
