"""dlib measurements of aligned faces: landmarks, head pose and identity, for a swap against the face it
replaces. The real target, measured the same way, is the reference a swap is judged against."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from deepfake.evaluate import metrics as M

MEASURE_SIZE = 256  # faces are upscaled to this before dlib's landmark and identity models


class FaceMeasurer:
    """68 landmarks, head pose and identity embedding of an aligned face. Models load once per object.

    Faces are upscaled to MEASURE_SIZE first: dlib's models expect faces of ~150 px and more. The
    landmark predictor starts from the box of the target face's aligned landmarks, the same box for the
    real face and its swap, so a difference in landmarks comes from the pixels alone.
    """

    def __init__(self):
        from deepfake.faces.identity import FaceEmbedder
        from deepfake.faces.landmarks import LandmarkPredictor

        self.predictor = LandmarkPredictor()
        self.embedder = FaceEmbedder()

    def measure(self, image: np.ndarray, box_landmarks: np.ndarray, embed: bool = True) -> dict[str, Any]:
        from deepfake.faces.pose import estimate_pose

        k = MEASURE_SIZE / image.shape[0]
        big = cv2.resize(image, (MEASURE_SIZE, MEASURE_SIZE), interpolation=cv2.INTER_CUBIC)
        x0, y0 = box_landmarks.min(axis=0) * k
        x1, y1 = box_landmarks.max(axis=0) * k
        lm = self.predictor(big, (x0, y0, x1, y1))  # (68, 2) in MEASURE_SIZE px
        return {
            "landmarks": lm,
            "pose": estimate_pose(lm, big.shape),
            "embedding": self.embedder.embed(big, lm) if embed else None,
        }


def measure_swaps(measurer: FaceMeasurer, swaps: np.ndarray, targets: np.ndarray, target_landmarks: np.ndarray,
                  source_mean: np.ndarray, target_mean: np.ndarray, threshold: float) -> dict[str, Any]:
    """Identity, expression and pose of each swap against its target face; the unswapped targets,
    measured the same way, give the reference ("what a real face scores through this pipeline")."""
    from tqdm import tqdm

    rows = []
    pairs = zip(swaps, targets, target_landmarks)
    for swap, target, lm in tqdm(pairs, total=len(swaps), desc="measuring swaps", unit="face", leave=False):
        ms = measurer.measure(swap, lm)
        mt = measurer.measure(target, lm)
        pose = M.pose_error(mt["pose"], ms["pose"])
        rows.append({
            "swap_to_source": float(M.embedding_distances(ms["embedding"][None], source_mean)[0]),
            "swap_to_target": float(M.embedding_distances(ms["embedding"][None], target_mean)[0]),
            "real_to_source": float(M.embedding_distances(mt["embedding"][None], source_mean)[0]),
            "real_to_target": float(M.embedding_distances(mt["embedding"][None], target_mean)[0]),
            "landmark_error": M.landmark_error(mt["landmarks"], ms["landmarks"]),
            **{f"pose_{k}": v for k, v in pose.items()},
        })

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    d_src = np.array([r["swap_to_source"] for r in rows])
    d_tgt = np.array([r["swap_to_target"] for r in rows])
    return {
        "n": len(rows),
        "id_dist_source": mean("swap_to_source"),
        "id_dist_target": mean("swap_to_target"),
        "verification": M.verification_rate(d_src, threshold),
        "closer_to_source": float(np.mean(d_src < d_tgt)),
        "landmark_error": mean("landmark_error"),
        "pose_error": {k: mean(f"pose_{k}") for k in ("yaw", "pitch", "roll", "mean")},
        "reference": {
            "real_target_to_target": mean("real_to_target"),
            "real_target_to_source": mean("real_to_source"),
            "real_target_verified_as_target": M.verification_rate([r["real_to_target"] for r in rows], threshold),
        },
    }
