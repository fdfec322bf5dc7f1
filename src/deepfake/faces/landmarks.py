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


# Where dlib's HOG box sits relative to the face's similarity frame (canonical units, measured as the
# median over 242 frames of the sample clips): centred horizontally, 0.095 above the canonical
# centre, 1.07 face widths square.
_BOX_CENTER_Y = -0.0946
_BOX_SIDE = 1.069


def box_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """A detector-like box [x0, y0, x1, y1] for a face with these landmarks.

    On video the next frame's landmarks start from this box instead of a fresh detection: detector
    boxes wobble by ~5 % of the face from frame to frame, and the shape predictor passes that wobble
    on to the landmarks.
    """
    from deepfake.faces.align import CANONICAL_68, FIT_POINTS, umeyama

    to_canon = umeyama(np.asarray(landmarks, np.float64)[FIT_POINTS], CANONICAL_68[FIT_POINTS])
    back = np.linalg.inv(to_canon)  # canonical -> source
    s = float(np.sqrt(abs(np.linalg.det(back[:2, :2]))))
    cx, cy = back[:2, :2] @ np.array([0.0, _BOX_CENTER_Y]) + back[:2, 2]
    half = 0.5 * _BOX_SIDE * s
    return (float(cx - half), float(cy - half), float(cx + half), float(cy + half))
