"""FaceAnalyzer: one frame in, every face's geometry and measures out.

detect -> 68 landmarks (full resolution) -> optional temporal smoothing -> Umeyama alignment ->
aligned crop, hull mask, blur, pose, identity embedding. Used by extract, swap and evaluate alike, so
a face is aligned the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepfake.config import ExtractConfig
from deepfake.faces.align import align_matrix, transform_points, warp_face
from deepfake.faces.detect import Detection, FaceDetector, iou
from deepfake.faces.identity import FaceEmbedder
from deepfake.faces.landmarks import LandmarkPredictor, box_from_landmarks
from deepfake.faces.hull import hull_mask
from deepfake.faces.pose import estimate_pose
from deepfake.faces.quality import blur_score
from deepfake.faces.smooth import LandmarkSmoother

FULL_DETECT_EVERY = 15  # on video, look for new faces across the whole frame this often (frames)
SMALL_FACE_EVERY = 5  # on video with no face tracked, run the slow small-face pass this often (frames)
ASSUMED_FPS = 30.0  # when a caller smooths without giving frame times


@dataclass
class AlignedFace:
    bbox: tuple[float, float, float, float]  # detector box, source px
    score: float  # detector confidence
    landmarks: np.ndarray  # (68, 2) float32, source px (smoothed when a smoother was given)
    matrix: np.ndarray  # (2, 3) source -> aligned
    aligned: np.ndarray  # (size, size, 3) uint8 RGB
    aligned_landmarks: np.ndarray  # (68, 2) float32, aligned px
    mask: np.ndarray  # (size, size) uint8, 255 = face: the hull of cfg.mask_region
    blur: float
    pose: dict[str, float]  # yaw, pitch, roll in degrees
    embedding: np.ndarray | None  # (128,) float32, None when the analyzer was built without embeddings
    raw_landmarks: np.ndarray | None = None  # (68, 2) before smoothing

    @property
    def size(self) -> int:
        return int(self.aligned.shape[0])


class _Embedding:
    """One identity embedding, computed at once or at the analyzer's next flush, and the faces that
    wait for it (a tracked face shares one embedding over `embed_every` frames)."""

    def __init__(self):
        self.value: np.ndarray | None = None
        self.queued = False  # its chip waits in the analyzer's queue
        self.waiting: list[AlignedFace] = []

    def give_to(self, face: AlignedFace) -> None:
        if self.value is not None:
            face.embedding = self.value
        else:
            self.waiting.append(face)

    def set(self, value: np.ndarray) -> None:
        self.value, self.queued = value, False
        for face in self.waiting:
            face.embedding = value
        self.waiting = []


class FaceAnalyzer:
    """Holds the detector, landmark and identity models (loaded per object, not at import).

    Identity embeddings run batched on `cfg.device`: all new faces of a frame in one call, or, with
    `analyze(..., defer_embedding=True)`, the faces of many frames in one call at `flush_embeddings()`
    (the chips are cut at once, so no frame is kept). Until then a deferred face's `embedding` is None.
    """

    def __init__(self, cfg: ExtractConfig | None = None, with_embedding: bool = True):
        self.cfg = cfg or ExtractConfig()
        self.detector = FaceDetector(self.cfg.detector, self.cfg.detect_max_side, self.cfg.upsample_when_empty)
        self.predictor = LandmarkPredictor()
        self.embedder = FaceEmbedder(self.cfg.device) if with_embedding else None
        self._queue: list[tuple[torch.Tensor, list[_Embedding]]] = []  # (k, 3, 150, 150) uint8 chips, an entry each

    def new_smoother(self) -> LandmarkSmoother:
        """Per-video state: landmark smoothing (if cfg.smooth) and face tracking."""
        return LandmarkSmoother(self.cfg.smooth_min_cutoff, self.cfg.smooth_beta, enabled=self.cfg.smooth)

    def detect(self, rgb: np.ndarray, smoother: LandmarkSmoother | None = None, time: float = 0.0) -> list[Detection]:
        """Detections kept by the size and count limits, largest first."""
        hints = smoother.last_boxes(time) if smoother is not None else []
        dets: list[Detection] = []
        lost = not hints
        for hint in hints:
            near = self.detector.detect_near(rgb, hint)
            best = max(near, key=lambda d: iou(d.bbox, hint), default=None)
            if best is None or iou(best.bbox, hint) < 0.2:
                lost = True
                continue
            # The face is still there. Unless it moved fast, start its landmarks from the box of the
            # previous landmarks (stable) rather than the new detection (wobbly).
            side = hint[2] - hint[0]
            shift = np.hypot(*(np.add(best.bbox[:2], best.bbox[2:]) - np.add(hint[:2], hint[2:])) / 2)
            dets.append(Detection(tuple(hint), best.score) if shift < 0.15 * side else best)
        if lost or smoother is None or smoother.frames % FULL_DETECT_EVERY == 0:
            # A full pass finds faces that entered the shot; tracked faces keep their tracked boxes,
            # because box placement differs between scales and would show up as jitter. The slow
            # small-face pass runs on every still, but on video only every few frames while nothing is
            # tracked: a small face found once is then followed cheaply by the tracking window.
            small_faces = smoother is None or (not dets and smoother.frames % SMALL_FACE_EVERY == 0)
            for d in self.detector.detect(rgb, small_faces=small_faces):
                if all(iou(d.bbox, k.bbox) < 0.3 for k in dets):
                    dets.append(d)
        dets = [d for d in dets if d.size >= self.cfg.min_face]
        dets.sort(key=lambda d: -d.area)
        if self.cfg.max_faces > 0:
            dets = dets[: self.cfg.max_faces]
        return dets

    def analyze(self, rgb: np.ndarray, smoother: LandmarkSmoother | None = None, time: float | None = None,
                defer_embedding: bool = False) -> list[AlignedFace]:
        """All faces in an RGB uint8 frame, largest first. Pass one `smoother` per video (and the frame
        time in seconds) to smooth landmarks over frames and track faces between them."""
        if time is None:
            time = (smoother.frames / ASSUMED_FPS) if smoother is not None else 0.0
        dets = self.detect(rgb, smoother, time)
        raw = [self._landmarks(rgb, d.bbox) for d in dets]
        if smoother is None:
            landmarks, entries = raw, [_Embedding() for _ in raw]
        else:
            landmarks = smoother(raw, time, [box_from_landmarks(r) for r in raw])
            entries = []
            for track in smoother.last_tracks:
                # The ResNet embedding costs more than detection, landmarks and alignment together
                # (benchmarks/RESULTS.md, extraction). A tracked face keeps its identity, so refresh it
                # only every `embed_every` frames.
                cache = track.cache
                if "embedding" not in cache or time - cache["time"] >= self.cfg.embed_every / ASSUMED_FPS - 1e-6:
                    cache["embedding"], cache["time"] = _Embedding(), time
                entries.append(cache["embedding"])
        faces = [self._measure(rgb, d, lm, r) for d, lm, r in zip(dets, landmarks, raw)]
        if self.embedder is not None:
            new = [(r, e) for r, e in zip(raw, entries) if e.value is None and not e.queued]
            if new:  # from the raw landmarks, so a video frame's face embeds as the same frame as a still would
                chips = self.embedder.chips(rgb, [r for r, _ in new])  # (k, 3, 150, 150)
                self._queue.append((chips, [e for _, e in new]))
                for _, e in new:
                    e.queued = True
            for face, entry in zip(faces, entries):
                entry.give_to(face)
            if not defer_embedding:
                self.flush_embeddings()
        return faces

    def pending_embeddings(self) -> int:
        """Deferred faces whose chips wait for `flush_embeddings`."""
        return sum(len(entries) for _, entries in self._queue)

    def flush_embeddings(self) -> None:
        """Embed every queued chip in one batched call and hand the embeddings to their faces."""
        if not self._queue:
            return
        chips = torch.cat([c for c, _ in self._queue])  # (N, 3, 150, 150)
        entries = [e for _, es in self._queue for e in es]
        self._queue = []
        try:
            values = self.embedder.embed_chips(chips)  # (N, 128)
        except BaseException:
            for entry in entries:  # asked for again by the next frame that needs them
                entry.queued = False
            raise
        for entry, value in zip(entries, values):
            entry.set(value)

    def _landmarks(self, rgb: np.ndarray, bbox) -> np.ndarray:
        lm = self.predictor(rgb, bbox)
        if self.cfg.detector == "cnn":
            # The shape predictor was trained on HOG boxes; MMOD boxes sit tighter and higher, which
            # skews the landmarks. One more pass from the HOG-like box of the first result fixes that.
            lm = self.predictor(rgb, box_from_landmarks(lm))
        return lm

    def _measure(self, rgb, det: Detection, landmarks: np.ndarray, raw: np.ndarray) -> AlignedFace:
        size = self.cfg.size
        matrix = align_matrix(landmarks, size, self.cfg.coverage)
        aligned = warp_face(rgb, matrix, size)
        aligned_lm = transform_points(landmarks, matrix).astype(np.float32)
        mask = hull_mask(aligned_lm, size, self.cfg.mask_region)
        # Sharpness is measured inside the whole-face hull whatever the region, so it compares across facesets.
        whole = mask if self.cfg.mask_region == "whole" else hull_mask(aligned_lm, size)
        return AlignedFace(
            bbox=tuple(float(v) for v in det.bbox),
            score=float(det.score),
            landmarks=np.asarray(landmarks, dtype=np.float32),
            matrix=matrix.astype(np.float64),
            aligned=aligned,
            aligned_landmarks=aligned_lm,
            mask=mask,
            blur=blur_score(aligned, whole),
            pose=estimate_pose(landmarks, rgb.shape),
            embedding=None,
            raw_landmarks=np.asarray(raw, dtype=np.float32),
        )
