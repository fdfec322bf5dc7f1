"""One swapped face into its frame: the blend mask, colour matching, sharpening and pasting back."""

from __future__ import annotations

import cv2
import numpy as np

from deepfake.config import SwapConfig
from deepfake.swap.blend_mask import build_mask
from deepfake.swap.color import match_color
from deepfake.swap.paste import paste_back


def sharpen(face: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask on a float RGB face: face + amount * (face - blur(face))."""
    if amount <= 0:
        return face
    sigma = max(1.0, face.shape[0] / 128.0)
    blurred = cv2.GaussianBlur(face, (0, 0), sigma)
    return np.clip(face + amount * (face - blurred), 0.0, 1.0)


def compose_face(
    frame: np.ndarray,
    aligned: np.ndarray,
    hull: np.ndarray | None,
    matrix: np.ndarray,
    rgb: np.ndarray,
    learned: np.ndarray | None,
    cfg: SwapConfig,
    segmented: np.ndarray | None = None,
) -> np.ndarray:
    """Mask, colour-match, sharpen and paste one swapped face into `frame` (in place; returned).

    aligned: the original aligned face, uint8 (S, S, 3); hull: its landmark hull mask (S, S);
    matrix: frame -> aligned 2x3; rgb: the model's face, float32 (S, S, 3); learned: its mask (S, S);
    segmented: the segmenter's mask of `aligned` (S, S), for the segmenter mask modes.
    """
    mask = build_mask(cfg.mask, learned, hull, erode=cfg.erode, blur=cfg.blur, segmenter=segmented)
    target = aligned.astype(np.float32) / 255.0
    face = match_color(cfg.color, rgb, target, mask)
    if cfg.color_strength != 1.0:  # 0: the model's own colours, 1: the full match (as it is)
        face = rgb + cfg.color_strength * (face - rgb)
    face = sharpen(face, cfg.sharpen)
    return paste_back(frame, face, mask, matrix, cfg.blend)
