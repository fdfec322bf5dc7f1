"""One face followed from frame to frame: landmarks from the previous frame's landmarks, the detector only
when that fails or every `detect_every` frames.

dlib's shape predictor started from the box of the last landmarks (faces/landmarks.py's
box_from_landmarks, the box the HOG detector would give) costs about a millisecond; the detector costs
tens. Tracking is lost when the new landmarks' box no longer overlaps the old one well or changes size
sharply (the predictor always returns 68 points, face or not); the periodic detection catches a face that
left the frame while the predictor kept drawing one on the wall.
"""

from __future__ import annotations

import numpy as np

from deepfake.faces.detect import iou
from deepfake.faces.landmarks import box_from_landmarks

MIN_OVERLAP = 0.5  # IoU of consecutive landmark boxes below which tracking counts as lost
MAX_SCALE_CHANGE = 1.4  # the box's side may grow or shrink by this factor between frames


class FaceTracker:
    """Args:
        detector: a faces.detect.FaceDetector; predictor: a faces.landmarks.LandmarkPredictor.
        detect_every: frames between detections while tracking holds (1 = detect every frame).
        min_face: smallest face box side, px.
    """

    def __init__(self, detector, predictor, detect_every: int = 10, min_face: int = 40):
        self.detector, self.predictor = detector, predictor
        self.detect_every = max(1, int(detect_every))
        self.min_face = min_face
        self.landmarks: np.ndarray | None = None
        self.since_detect = 0
        self.detections = 0

    def __call__(self, rgb: np.ndarray, stages) -> np.ndarray | None:
        """The face's (68, 2) landmarks in `rgb`, or None when there is no face. `stages` is a StageTimes."""
        if self.landmarks is not None and self.since_detect < self.detect_every:
            with stages.stage("track"):
                box = box_from_landmarks(self.landmarks)
                lm = self.predictor(rgb, box)
            if _holds(box, box_from_landmarks(lm), rgb.shape):
                self.landmarks, self.since_detect = lm, self.since_detect + 1
                return lm
        with stages.stage("detect"):
            dets = [d for d in self.detector.detect(rgb, small_faces=False) if d.size >= self.min_face]
        self.detections += 1
        self.since_detect = 0
        if not dets:
            self.landmarks = None
            return None
        if self.landmarks is not None:  # keep following the same person when several are in the shot
            prev = box_from_landmarks(self.landmarks)
            best = max(dets, key=lambda d: (iou(d.bbox, prev), d.area))
        else:
            best = max(dets, key=lambda d: d.area)
        with stages.stage("track"):
            self.landmarks = self.predictor(rgb, best.bbox)
        return self.landmarks


def _holds(old, new, shape) -> bool:
    side_old, side_new = old[2] - old[0], new[2] - new[0]
    if side_old <= 0 or side_new <= 0 or not 1 / MAX_SCALE_CHANGE <= side_new / side_old <= MAX_SCALE_CHANGE:
        return False
    h, w = shape[:2]
    cx, cy = (new[0] + new[2]) / 2, (new[1] + new[3]) / 2
    return 0 <= cx < w and 0 <= cy < h and iou(old, new) >= MIN_OVERLAP
