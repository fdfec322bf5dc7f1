"""Blending a warped face into its frame region: feathered alpha, or Poisson (OpenCV seamlessClone).

Both work on a region of interest (ROI) of the frame: `background` uint8 (h, w, 3), `face` float32 RGB in
[0, 1] (h, w, 3) already warped back into frame geometry, `alpha` float32 (h, w) in [0, 1]. Pixels where
alpha is 0 come back bit-identical.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np


def feather(background: np.ndarray, face: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """out = face * alpha + background * (1 - alpha), rounded to uint8; untouched where alpha == 0."""
    a = alpha[..., None]  # (h, w, 1)
    out = face * 255.0 * a + background.astype(np.float32) * (1.0 - a)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.where(a > 0, out, background)


def poisson(background: np.ndarray, face: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Gradient-domain clone of the face into the background (lighting follows the target), then feathered.

    seamlessClone solves inside the binary mask with the background as the boundary condition, so the
    face takes the frame's low-frequency colour; feathering the result with `alpha` keeps a soft edge.
    """
    binary = (alpha > 0.5).astype(np.uint8) * 255
    # seamlessClone clears the ROI's outer 1-px ring of the mask and places the mask's bounding box centred
    # on `center`; mirror that here so the clone lands exactly where the face was warped.
    binary[[0, -1], :] = 0
    binary[:, [0, -1]] = 0
    if cv2.countNonZero(binary) < 16:
        return feather(background, face, alpha)
    x, y, w, h = cv2.boundingRect(binary)
    center = (x + w // 2, y + h // 2)
    face_u8 = np.clip(np.rint(face * 255.0), 0, 255).astype(np.uint8)
    cloned = cv2.seamlessClone(face_u8, background, binary, center, cv2.NORMAL_CLONE)
    return feather(background, cloned.astype(np.float32) / 255.0, alpha)


BLEND_MODES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "feather": feather,
    "poisson": poisson,
}
