"""68-point landmarks (dlib's iBUG-300W shape predictor), always at the source resolution."""

from __future__ import annotations

import dlib
import numpy as np

from deepfake.faces.dlib_models import SHAPE_68, dlib_model_path

# iBUG 68-point index groups.
JAW = slice(0, 17)
RIGHT_BROW = slice(17, 22)  # the subject's right: image left on a frontal face
LEFT_BROW = slice(22, 27)
NOSE = slice(27, 36)
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)


def eye_centers(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the (subject's) right and left eye, (2,) each."""
    return landmarks[RIGHT_EYE].mean(axis=0), landmarks[LEFT_EYE].mean(axis=0)


def interocular(landmarks: np.ndarray) -> float:
    r, l = eye_centers(landmarks)
    return float(np.linalg.norm(l - r))


def to_dlib_rect(bbox) -> dlib.rectangle:
    x0, y0, x1, y1 = (int(round(v)) for v in bbox)
    return dlib.rectangle(x0, y0, x1, y1)


class LandmarkPredictor:
    """Loads the shape predictor once per object (never at import)."""

    def __init__(self):
        self._predictor = dlib.shape_predictor(str(dlib_model_path(SHAPE_68)))

    def __call__(self, rgb: np.ndarray, bbox) -> np.ndarray:
        """(68, 2) float32 landmarks in the pixels of `rgb` for the face box [x0, y0, x1, y1]."""
        shape = self._predictor(rgb, to_dlib_rect(bbox))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)  # (68, 2)
