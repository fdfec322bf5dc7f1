"""Where the pretrained dlib models live: the `face_recognition_models` wheel, found by path.

The package is never imported (it imports pkg_resources and has import-time side effects); we only
need its data folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from deepfake.errors import DeepfakeError

SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD = "mmod_human_face_detector.dat"


def dlib_model_path(name: str) -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise DeepfakeError("the face_recognition_models package is not installed (pip install face-recognition-models)")
    path = Path(os.path.dirname(spec.origin)) / "models" / name
    if not path.is_file():
        raise DeepfakeError(f"{path}: dlib model file missing; reinstall face-recognition-models")
    return path
