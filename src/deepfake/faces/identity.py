"""Identity embeddings: dlib's ResNet face-recognition model (128-D, ~0.6 separates people)."""

from __future__ import annotations

import dlib
import numpy as np

from deepfake.faces.dlib_models import RESNET, dlib_model_path
from deepfake.faces.landmarks import to_dlib_rect

SAME_PERSON = 0.6  # dlib's recommended distance threshold


class FaceEmbedder:
    """Loads the ResNet once per object (never at import)."""

    def __init__(self):
        self._model = dlib.face_recognition_model_v1(str(dlib_model_path(RESNET)))

    def embed(self, image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        """128-D float32 embedding of the face with these 68 landmarks (source pixels of `image`)."""
        lm = np.asarray(landmarks68, dtype=np.float64)
        x0, y0 = lm.min(axis=0)
        x1, y1 = lm.max(axis=0)
        points = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in lm])
        shape = dlib.full_object_detection(to_dlib_rect((x0, y0, x1, y1)), points)
        image = np.ascontiguousarray(image[..., :3])
        return np.asarray(self._model.compute_face_descriptor(image, shape), dtype=np.float32)  # (128,)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings (dlib's metric)."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)))
