"""The blend mask of a swapped face, in aligned-face space: the model's learned mask, the landmark hull,
a trained segmenter's mask (`deepfake mask train`), or the intersection of some of them (`segmenter*hull`:
the pixelwise minimum, FaceFusion's rule), then erode and blur.

Masks are float32 (S, S) in [0, 1]. Erode and blur are in aligned-face pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake.config.choices import MASK_MODES

# The segmenter's probabilities are never exactly 0 or 1: a hand at p = 0.03 would still let 3 % of the
# swapped face through. Below the ramp counts as occluded, above it as face; the feather does the edge.
SEGMENTER_RAMP = (0.25, 0.75)


def mask_parts(mode: str) -> tuple[str, ...]:
    """The masks a mode intersects, e.g. ("segmenter", "hull"); ValueError for an unknown mode."""
    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask mode '{mode}' (choose from {', '.join(MASK_MODES)})")
    return tuple(mode.split("*"))


def segmenter_alpha(prob: np.ndarray) -> np.ndarray:
    """The segmenter's probabilities (S, S) as blend alpha: 0 below the ramp, 1 above, linear between."""
    lo, hi = SEGMENTER_RAMP
    return np.clip((prob.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


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
    segmenter: np.ndarray | None = None,
) -> np.ndarray:
    """Intersect the masks `mode` names, then erode and blur.

    `learned` is the model's mask channel in [0, 1] (None: a model without one, the hull stands in);
    `hull` a uint8 (0/255) or float mask of the landmark hull; `segmenter` the segmenter's probabilities;
    all (S, S). `blur=0` picks a feather width from the face size; pass a negative value for none.
    """
    parts = mask_parts(mode)
    masks = []
    if "learned" in parts and learned is not None:
        masks.append(learned.astype(np.float32))
    if "segmenter" in parts:
        if segmenter is None:
            raise ValueError(f"mask mode '{mode}' needs the segmenter's mask")
        masks.append(segmenter_alpha(segmenter))
    if "hull" in parts or not masks:
        if hull is None:
            raise ValueError("a hull mask is needed")
        masks.append(_as_unit(hull))
    mask = np.clip(np.minimum.reduce(masks), 0.0, 1.0).astype(np.float32)
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
