"""One frame through the live pipeline: track, align, model, compose (swap's code), the visible mark.

`analyze` (landmarks and the aligned face) and `render` (model, blend, paste, mark) are separate so the
CLI can run them on two threads; the UI's Live page calls `swap`, both in turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfake.faces.align import align_matrix, transform_points, warp_face
from deepfake.faces.hull import hull_mask
from deepfake.config import LiveConfig
from deepfake.live.stats import StageTimes
from deepfake.live.track import FaceTracker
from deepfake.provenance.label import add_watermark
from deepfake.swap.compose import compose_face
from deepfake.swap.model import SwapModel

MARK_TEXT = "SYNTHETIC"


@dataclass
class LiveFace:
    landmarks: np.ndarray  # (68, 2) frame px
    matrix: np.ndarray  # (2, 3) frame -> aligned
    aligned: np.ndarray  # (S, S, 3) uint8 RGB, the model's crop
    hull: np.ndarray  # (S, S) uint8, the landmark hull of the model's region


class LiveEngine:
    def __init__(self, model: SwapModel, cfg: LiveConfig, stages: StageTimes | None = None):
        from deepfake.faces.analyzer import FaceAnalyzer
        from deepfake.swap.pipeline import analyzer_config

        self.model, self.cfg = model, cfg
        self.swap_cfg = cfg.swap_config()
        self.stages = stages or StageTimes()
        ecfg = analyzer_config(model.face_size, model.coverage, device="cpu", mask_region=model.mask_region)
        analyzer = FaceAnalyzer(ecfg, with_embedding=False)  # its detector and landmark models, loaded once
        self.tracker = FaceTracker(analyzer.detector, analyzer.predictor, cfg.detect_every, ecfg.min_face)
        self.size, self.coverage, self.region = ecfg.size, ecfg.coverage, ecfg.mask_region
        self.payload = None
        if cfg.invisible_mark:
            from deepfake.provenance.watermark import payload_for

            self.payload = payload_for((model.fingerprint or {}).get("sha256"))

    def analyze(self, rgb: np.ndarray) -> LiveFace | None:
        landmarks = self.tracker(rgb, self.stages)
        if landmarks is None:
            return None
        with self.stages.stage("align"):
            matrix = align_matrix(landmarks, self.size, self.coverage)
            aligned = warp_face(rgb, matrix, self.size)
            hull = hull_mask(transform_points(landmarks, matrix).astype(np.float32), self.size, self.region)
        return LiveFace(landmarks, matrix, aligned, hull)

    def render(self, rgb: np.ndarray, face: LiveFace | None) -> np.ndarray:
        """The output frame (a new array): the swapped face pasted in, and the mark unless turned off."""
        out = rgb.copy()
        if face is not None:
            with self.stages.stage("model"):
                faces, learned = self.model.model(face.aligned[None])  # (1, S, S, 3), (1, S, S)
            with self.stages.stage("compose"):
                compose_face(out, face.aligned, face.hull, face.matrix, faces[0],
                             None if learned is None else learned[0], self.swap_cfg)
        if self.cfg.watermark:
            with self.stages.stage("mark"):
                out = add_watermark(out, MARK_TEXT)
        return out

    def mark_invisibly(self, out: np.ndarray, face: LiveFace | None) -> np.ndarray:
        """provenance/watermark.py's payload into the swapped face of an output frame (in place). It costs
        more than the model on a CPU, so the CLI runs it on the file's encoder thread, off the live path."""
        if self.payload is not None and face is not None:
            from deepfake.provenance import watermark

            with self.stages.stage("invisible_mark"):
                # The landmarks of the swapped face, which a reader sees (not the source face's), fitted from
                # the tracked face's box. dlib's shape predictor may be called from several threads at once.
                from deepfake.faces.landmarks import box_from_landmarks

                found = face.landmarks
                for _ in range(2):  # to the fit's fixed point, as provenance/watermark.py's refit and a reader
                    found = self.tracker.predictor(out, box_from_landmarks(found))
                watermark.embed(out, [found], self.payload)
        return out

    def swap(self, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        face = self.analyze(rgb)
        return self.render(rgb, face), face is not None
