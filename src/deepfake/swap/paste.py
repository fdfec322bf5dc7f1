"""Paste a swapped face back into its frame with the inverse of the alignment affine, at full resolution.

`matrix` is the 2x3 affine that took frame pixels to aligned-face pixels (as `faces.align.align_matrix`
returns it). Only the frame region the face covers is warped and blended, so the cost does not grow with
the frame size, and everything outside that region is left bit-identical.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake.swap.blend import BLEND_MODES


def face_roi(matrix: np.ndarray, mask: np.ndarray, frame_shape: tuple[int, ...], pad: int = 4) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the frame region covered by the non-zero part of the aligned `mask`, or None."""
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        return None
    corners = np.array(
        [[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.min(), ys.max() + 1], [xs.max() + 1, ys.max() + 1]],
        dtype=np.float64,
    )  # (4, 2) aligned px
    inv = cv2.invertAffineTransform(matrix.astype(np.float64))
    pts = corners @ inv[:, :2].T + inv[:, 2]  # (4, 2) frame px
    h, w = frame_shape[:2]
    x0 = max(int(np.floor(pts[:, 0].min())) - pad, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - pad, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + pad, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + pad, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def warp_to_frame(
    image: np.ndarray, matrix: np.ndarray, roi: tuple[int, int, int, int], border: int = cv2.BORDER_CONSTANT
) -> np.ndarray:
    """Warp an aligned-space image into the frame ROI (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = roi
    m = matrix.astype(np.float64).copy()
    # Frame point p = q + (x0, y0) for ROI point q, so shift the translation: A (q + o) + t = A q + (A o + t).
    m[:, 2] = m[:, :2] @ np.array([x0, y0], dtype=np.float64) + m[:, 2]
    return cv2.warpAffine(
        image, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border
    )


def paste_back(
    frame: np.ndarray, face: np.ndarray, mask: np.ndarray, matrix: np.ndarray, blend: str = "feather"
) -> np.ndarray:
    """Blend `face` (float32 RGB (S, S, 3) in [0, 1]) into `frame` (uint8 (H, W, 3)) under `mask` (S, S).

    Writes into `frame` in place and returns it.
    """
    if blend not in BLEND_MODES:
        raise ValueError(f"unknown blend mode '{blend}' (choose from {', '.join(BLEND_MODES)})")
    roi = face_roi(matrix, mask, frame.shape)
    if roi is None:
        return frame
    x0, y0, x1, y1 = roi
    # Replicate the face's edge outward so bilinear sampling at the mask boundary never pulls in black.
    face_roi_img = warp_to_frame(face.astype(np.float32), matrix, roi, border=cv2.BORDER_REPLICATE)  # (h, w, 3)
    alpha = warp_to_frame(mask.astype(np.float32), matrix, roi)  # (h, w)
    region = frame[y0:y1, x0:x1]
    frame[y0:y1, x0:x1] = BLEND_MODES[blend](region, face_roi_img, np.clip(alpha, 0.0, 1.0))
    return frame
