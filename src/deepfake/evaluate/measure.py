"""dlib measurements of aligned faces: landmarks, head pose and identity, for a swap against the face it
replaces. The real target, measured the same way, is the reference a swap is judged against."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from deepfake.evaluate import metrics as M

MEASURE_SIZE = 256  # faces are upscaled to this before dlib's landmark and identity models


class FaceMeasurer:
    """68 landmarks, head pose and identity embeddings of aligned faces. Models load once per object;
    the embeddings run on `device`, all faces of a call in batches.

    Faces are upscaled to MEASURE_SIZE first: dlib's models expect faces of ~150 px and more. The
    landmark predictor starts from the box of the target face's aligned landmarks, the same box for the
    real face and its swap, so a difference in landmarks comes from the pixels alone.
    """

    def __init__(self, device: Any = "auto"):
        from deepfake.faces.identity import FaceEmbedder
        from deepfake.faces.landmarks import LandmarkPredictor

        self.predictor = LandmarkPredictor()
        self.embedder = FaceEmbedder(device)

    def measure_many(self, images: np.ndarray, box_landmarks: np.ndarray, embed: bool = True) -> dict[str, Any]:
        """(N, R, R, 3) uint8 aligned faces and (N, 68, 2) landmarks giving each one's box ->
        "landmarks" (N, 68, 2) in MEASURE_SIZE px, "pose" (N dicts), "embedding" (N, 128) or None."""
        from deepfake.faces.pose import estimate_pose

        bigs, lms = [], []
        for image, box in zip(images, box_landmarks):
            k = MEASURE_SIZE / image.shape[0]
            big = cv2.resize(image, (MEASURE_SIZE, MEASURE_SIZE), interpolation=cv2.INTER_CUBIC)
            x0, y0 = np.asarray(box).min(axis=0) * k
            x1, y1 = np.asarray(box).max(axis=0) * k
            bigs.append(big)
            lms.append(self.predictor(big, (x0, y0, x1, y1)))  # (68, 2) in MEASURE_SIZE px
        shape = (MEASURE_SIZE, MEASURE_SIZE, 3)
        return {
            "landmarks": np.asarray(lms, dtype=np.float32).reshape(-1, 68, 2),
            "pose": [estimate_pose(lm, shape) for lm in lms],
            "embedding": self.embedder.embed_many(np.asarray(bigs).reshape(-1, *shape), lms) if embed else None,
        }


def measure_swaps(measurer: FaceMeasurer, swaps: np.ndarray, targets: np.ndarray, target_landmarks: np.ndarray,
                  target_masks: np.ndarray, source: str, target: str, identities: dict[str, np.ndarray],
                  threshold: float) -> dict[str, Any]:
    """Identity, sharpness, expression and pose of each swap against its target face; the unswapped
    targets, measured the same way, give the reference ("what a real face scores through this pipeline").

    `identities`: name -> mean embedding of every identity in the evaluation (`source` and `target`
    among them, plus any distractors), the gallery that retrieval searches."""
    ms = measurer.measure_many(swaps, target_landmarks)
    mt = measurer.measure_many(targets, target_landmarks)
    d_src = M.embedding_distances(ms["embedding"], identities[source])
    d_tgt = M.embedding_distances(ms["embedding"], identities[target])
    real_src = M.embedding_distances(mt["embedding"], identities[source])
    real_tgt = M.embedding_distances(mt["embedding"], identities[target])
    names = list(identities)
    gallery = np.stack([identities[n] for n in names])  # (K, 128)
    nearest = M.nearest_identity(ms["embedding"], gallery)  # (N,), -1 = a tie at the top
    nearest_real = M.nearest_identity(mt["embedding"], gallery)
    pose = [M.pose_error(p_t, p_s) for p_t, p_s in zip(mt["pose"], ms["pose"])]
    return {
        "n": len(swaps),
        "id_dist_source": float(d_src.mean()),
        "id_dist_target": float(d_tgt.mean()),
        "verification": M.verification_rate(d_src, threshold),
        "retrieval": M.retrieval_rate(nearest, names.index(source)),
        "retrieved_as": {n: int((nearest == i).sum()) for i, n in enumerate(names)} | {"(tie)": int((nearest < 0).sum())},
        "closer_to_source": float(np.mean(d_src < d_tgt)),
        "sharpness_ratio": M.mean_sharpness_ratio(swaps, targets, target_masks),
        "landmark_error": float(np.mean([M.landmark_error(a, b) for a, b in zip(mt["landmarks"], ms["landmarks"])])),
        "pose_error": {k: float(np.mean([p[k] for p in pose])) for k in ("yaw", "pitch", "roll", "mean")},
        "reference": {
            "real_target_to_target": float(real_tgt.mean()),
            "real_target_to_source": float(real_src.mean()),
            "real_target_verified_as_target": M.verification_rate(real_tgt, threshold),
            "real_target_retrieved_as_target": M.retrieval_rate(nearest_real, names.index(target)),
        },
    }
