"""Before/after sheets: the original and the swapped frame side by side, labelled, stacked in rows."""

from __future__ import annotations

import cv2
import numpy as np


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    h = out.shape[0]
    scale = max(0.35, h / 700.0)
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, round(5 * scale))
    out[: th + base + 2 * pad, : tw + 2 * pad] //= 3  # darken behind the text so it reads anywhere
    cv2.putText(out, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def side_by_side(before: np.ndarray, after: np.ndarray, labels: tuple[str, str] = ("original", "swapped (synthetic)")) -> np.ndarray:
    """One row: before | after, both uint8 RGB of the same shape, with a 4 px gap."""
    gap = np.full((before.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([_label(before, labels[0]), gap, _label(after, labels[1])], axis=1)


def sheet(pairs: list[tuple[np.ndarray, np.ndarray]], max_width: int = 1600) -> np.ndarray:
    """Rows of before|after pairs, scaled so the sheet is at most `max_width` px wide."""
    if not pairs:
        raise ValueError("no frames for a before/after sheet")
    rows = [side_by_side(b, a) for b, a in pairs]
    width = min(max_width, max(r.shape[1] for r in rows))
    scaled = []
    for r in rows:
        h = round(r.shape[0] * width / r.shape[1])
        interp = cv2.INTER_AREA if r.shape[1] > width else cv2.INTER_LINEAR
        scaled.append(cv2.resize(r, (width, h), interpolation=interp))
        scaled.append(np.full((4, width, 3), 255, np.uint8))
    return np.concatenate(scaled[:-1], axis=0)
