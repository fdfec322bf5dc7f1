"""The blend mask of a swapped face, in aligned-face space: learned, hull or both, then erode and blur.

Masks are float32 (S, S) in [0, 1]. Erode and blur are in aligned-face pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

MASK_MODES = ("learned", "hull", "learned*hull")


def auto_blur(size: int) -> int:
    """Default feather width: about 5 % of the aligned face size (DFL's default blur is of this order)."""
    return max(1, round(0.05 * size))


def erode_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """Shrink the mask by `px` pixels (grow it when negative)."""
    if px == 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(px) + 1, 2 * abs(px) + 1))
    return cv2.erode(mask, k) if px > 0 else cv2.dilate(mask, k)


def blur_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """Feather the mask edge over about `px` pixels."""
    if px <= 0:
        return mask
    k = 2 * px + 1
    return cv2.GaussianBlur(mask, (k, k), sigmaX=px / 2.0)


def build_mask(
    mode: str,
    learned: np.ndarray | None,
    hull: np.ndarray | None,
    erode: int = 0,
    blur: int = 0,
) -> np.ndarray:
    """Combine the learned mask and the landmark hull as `mode` asks, then erode and blur.

    `learned` is the model's mask channel in [0, 1]; `hull` a uint8 (0/255) or float mask of the landmark
    hull; both (S, S). `blur=0` picks a feather width from the face size; pass a negative value for none.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask mode '{mode}' (choose from {', '.join(MASK_MODES)})")
    hull_f = None if hull is None else _as_unit(hull)
    if mode == "hull" or learned is None:
        if hull_f is None:
            raise ValueError("a hull mask is needed")
        mask = hull_f
    elif mode == "learned":
        mask = learned.astype(np.float32)
    else:
        mask = learned.astype(np.float32) * (hull_f if hull_f is not None else 1.0)
    mask = np.clip(mask, 0.0, 1.0).astype(np.float32)
    mask = erode_mask(mask, erode)
    size = mask.shape[0]
    px = auto_blur(size) if blur == 0 else blur
    # A hull that runs off the aligned crop (a high forehead) would end in a hard line at the crop edge;
    # clear a margin as wide as the feather first, so the blurred mask fades to 0 inside the crop.
    margin = max(1, px)
    mask[:margin, :] = 0.0
    mask[-margin:, :] = 0.0
    mask[:, :margin] = 0.0
    mask[:, -margin:] = 0.0
    mask = blur_mask(mask, px)
    mask[[0, -1], :] = 0.0
    mask[:, [0, -1]] = 0.0
    return np.clip(mask, 0.0, 1.0)


def _as_unit(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)
    return m / 255.0 if mask.dtype == np.uint8 else m
