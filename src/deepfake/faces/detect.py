"""Face detection: dlib HOG (default) or the CNN (MMOD) detector, run on a downscaled copy.

Detection is the slowest step, so it runs on a copy whose long side is at most `max_side`, and the
boxes are mapped back to source pixels. Faces too small for that scale (a 60 px face in a 720p wide
shot is 30 px at 640) are found by a second pass over upsampled tiles, only when the coarse pass
found nothing. On video, `detect_near` looks only around the previous frame's boxes, scaled so the
face is a comfortable size for HOG: much cheaper than a full-frame pass and robust to small faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import dlib
import numpy as np

from deepfake.errors import DeepfakeError
from deepfake.faces.dlib_models import MMOD, dlib_model_path

DETECTORS = ("hog", "cnn")
HOG_MIN_FACE = 80  # px: dlib's HOG window; faces smaller than this at the detection scale are missed
ROI_FACE = 110  # px: the face size we rescale a tracking window to


@dataclass
class Detection:
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 in source pixels
    score: float

    @property
    def size(self) -> float:
        x0, y0, x1, y1 = self.bbox
        return float(min(x1 - x0, y1 - y0))

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.bbox
        return float(max(0.0, x1 - x0) * max(0.0, y1 - y0))


def resize_long_side(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy with the long side at most `max_side`, and the scale factor (copy px / source px)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return rgb, 1.0
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale


def iou(a, b) -> float:
    ix0, iy0 = max(a[0], b[0]), max(a[1], b[1])
    ix1, iy1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix1 - ix0) * max(0.0, iy1 - iy0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def non_max_suppression(dets: list[Detection], threshold: float = 0.3) -> list[Detection]:
    keep: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(iou(d.bbox, k.bbox) < threshold for k in keep):
            keep.append(d)
    return keep


class FaceDetector:
    """`detect(rgb)` -> detections in source pixels, largest first. Models load per object."""

    def __init__(self, kind: str = "hog", max_side: int = 640, upsample_when_empty: bool = True, threshold: float = 0.0):
        if kind not in DETECTORS:
            raise DeepfakeError(f"unknown detector '{kind}' (choose from {', '.join(DETECTORS)})")
        self.kind = kind
        self.max_side = max_side
        self.upsample_when_empty = upsample_when_empty
        self.threshold = threshold
        if kind == "hog":
            self._hog = dlib.get_frontal_face_detector()
        else:
            self._cnn = dlib.cnn_face_detection_model_v1(str(dlib_model_path(MMOD)))

    # Raw detector on an image that is already at detection scale.
    def _run(self, rgb: np.ndarray, upsample: int) -> list[Detection]:
        rgb = np.ascontiguousarray(rgb)
        if self.kind == "hog":
            rects, scores, _ = self._hog.run(rgb, upsample, self.threshold)
            pairs = zip(rects, scores)
        else:
            pairs = ((d.rect, d.confidence) for d in self._cnn(rgb, upsample))
        return [Detection((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s)) for r, s in pairs]

    def detect(self, rgb: np.ndarray, small_faces: bool = True) -> list[Detection]:
        """small_faces=False skips the (slow) second pass even when the coarse pass finds nothing."""
        small, scale = resize_long_side(rgb, self.max_side)
        dets = [_scaled(d, 1.0 / scale) for d in self._run(small, 0)]
        if not dets and self.upsample_when_empty and small_faces:
            dets = self._detect_small(rgb, scale)
        return sorted(dets, key=lambda d: -d.area)

    def _detect_small(self, rgb: np.ndarray, coarse_scale: float) -> list[Detection]:
        """Second pass for small faces: the downscaled copy upsampled once, then full-resolution tiles.

        Tiles bound the memory and time of one pass on very large frames (a 2x-upsampled 12000 px image
        would need gigabytes); they overlap by more than the largest face this pass is meant for.
        """
        if coarse_scale < 1.0:
            small, _ = resize_long_side(rgb, self.max_side)
            dets = [_scaled(d, 1.0 / coarse_scale) for d in self._run(small, 1)]
            if dets or coarse_scale < 0.25:
                return dets
        tile, overlap = 512, 128
        h, w = rgb.shape[:2]
        found: list[Detection] = []
        for y in range(0, max(1, h - overlap), tile - overlap):
            for x in range(0, max(1, w - overlap), tile - overlap):
                crop = rgb[y : y + tile, x : x + tile]
                found += [_shifted(d, x, y) for d in self._run(crop, 1)]
        return non_max_suppression(found)

    def detect_near(self, rgb: np.ndarray, bbox, margin: float = 0.6) -> list[Detection]:
        """Detect only in a window around `bbox` (a box from the previous frame), rescaled so the face
        is about ROI_FACE px. Returns [] when nothing is there; the caller then runs `detect`."""
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = bbox
        side = max(x1 - x0, y1 - y0)
        pad = side * margin
        rx0, ry0 = int(max(0, x0 - pad)), int(max(0, y0 - pad))
        rx1, ry1 = int(min(w, x1 + pad)), int(min(h, y1 + pad))
        if rx1 - rx0 < 8 or ry1 - ry0 < 8:
            return []
        crop = rgb[ry0:ry1, rx0:rx1]
        scale = ROI_FACE / max(side, 1.0)
        if self.kind == "hog":
            # HOG finds faces from 80 px up; scale so the face sits there, never below.
            scale = max(scale, HOG_MIN_FACE * 1.15 / max(side, 1.0))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        ch, cw = crop.shape[:2]
        crop = cv2.resize(crop, (max(1, round(cw * scale)), max(1, round(ch * scale))), interpolation=interp)
        dets = [_shifted(_scaled(d, 1.0 / scale), rx0, ry0) for d in self._run(crop, 0)]
        return sorted(dets, key=lambda d: -d.area)


def _scaled(d: Detection, k: float) -> Detection:
    return Detection(tuple(v * k for v in d.bbox), d.score)


def _shifted(d: Detection, dx: float, dy: float) -> Detection:
    x0, y0, x1, y1 = d.bbox
    return Detection((x0 + dx, y0 + dy, x1 + dx, y1 + dy), d.score)
