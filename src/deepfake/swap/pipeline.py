"""The swap pipeline: frame -> detect/align -> model (batched) -> mask -> colour -> blend -> paste back.

Faces are found and aligned by the same FaceAnalyzer as `extract`, at the face size and coverage the model
was trained with (read from its config.json), with the same temporal landmark smoothing on video.

On video four stages overlap, connected by bounded queues (so memory stays flat on long videos):

    decode (thread) -> detect + align (thread) -> model, batched across frames + paste (caller) -> encode (thread)

Decoding, libx264 and the model's torch ops release the GIL, so on two cores they run beside detection.
The model sees up to `SwapConfig.batch` frames' faces at once. Frames come out in order.

The model adapter is model.py, one face composited into its frame compose.py, the threads io/stages.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from deepfake.config import ExtractConfig, SwapConfig
from deepfake.io.stages import Stages
from deepfake.swap.blend_mask import mask_parts
from deepfake.swap.compose import compose_face
from deepfake.swap.model import FaceModel

# ----------------------------------------------------------------------------------------------------
# Choosing faces.


def select_faces(faces: list, identity: np.ndarray | None, cfg: SwapConfig) -> list:
    """The faces to swap: all with `all_faces` (or when the model recorded no identity), else those whose
    embedding (dlib's, Euclidean, as extract's) is within `identity_threshold` of the identity the model
    replaces. The analyzer embeds all of a frame's faces in one batch on swap's device."""
    if cfg.all_faces or identity is None:
        return list(faces)
    keep = []
    for f in faces:
        emb = getattr(f, "embedding", None)
        if emb is None:
            continue
        if float(np.linalg.norm(np.asarray(emb, np.float32) - identity)) <= cfg.identity_threshold:
            keep.append(f)
    return keep


# ----------------------------------------------------------------------------------------------------
# Frames.


@dataclass
class FrameResult:
    index: int
    time: float
    frame: np.ndarray  # uint8 (H, W, 3), the swapped frame (the input itself when nothing was swapped)
    found: int  # faces detected
    swapped: int  # faces replaced
    original: np.ndarray | None = None  # the untouched input, kept only when asked (previews)


@dataclass
class _Work:
    index: int
    time: float
    frame: np.ndarray
    found: int
    faces: list = field(default_factory=list)


class Swapper:
    """Swaps faces in frames with one model. One object per input (it holds the landmark smoother).

    Args:
        model: the FaceModel (AutoencoderModel for a trained model dir).
        analyzer: a faces.analyzer.FaceAnalyzer built with the model's face size and coverage.
        cfg: the SwapConfig.
        identity: mean embedding of the person in the input that the model replaces (None = any face).
        smoother: a faces.smooth.LandmarkSmoother for video, None for unrelated images.
        mark: the invisible mark's payload (provenance/watermark.py) to embed in every swapped face, or None.
        segmenter: for the segmenter mask modes, a mask.apply.MaskPredictor: it sees the same batch of
            aligned input faces as the model.
    """

    def __init__(self, model: FaceModel, analyzer: Any, cfg: SwapConfig, identity: np.ndarray | None = None,
                 smoother: Any = None, segmenter: Any = None, mark: int | None = None):
        self.model = model
        self.analyzer = analyzer
        self.cfg = cfg
        self.identity = None if identity is None else np.asarray(identity, np.float32)
        self.smoother = smoother
        uses_segmenter = "segmenter" in mask_parts(cfg.mask)
        if uses_segmenter and segmenter is None:
            raise ValueError(f"mask mode '{cfg.mask}' needs a segmenter")
        self.segmenter = segmenter if uses_segmenter else None  # not run when the mode leaves it out
        self.mark = mark
        self._mark_smoother = None  # video: the landmarks the mark is placed by, smoothed as a reader's

    # -- stages ----------------------------------------------------------------------------------------

    def detect(self, index: int, time: float, frame: np.ndarray) -> _Work:
        faces = self.analyzer.analyze(frame, smoother=self.smoother, time=time)
        return _Work(index, time, frame, len(faces), select_faces(faces, self.identity, self.cfg))

    def render(self, batch: list[_Work], keep_original: bool = False) -> list[FrameResult]:
        """Run the model once on every face of `batch`, then paste each back into its frame."""
        faces = [f for w in batch for f in w.faces]
        rgb, learned, segmented = None, None, None
        if faces:
            aligned = np.stack([f.aligned for f in faces])  # (N, S, S, 3) uint8
            rgb, learned = self.model(aligned)
            if self.segmenter is not None:
                segmented = self.segmenter.predict_array(aligned)  # (N, S, S)
        out, k = [], 0
        for w in batch:
            copy = w.faces and (keep_original or not w.frame.flags.writeable)
            frame = w.frame.copy() if copy else w.frame
            for f in w.faces:
                m = None if learned is None else learned[k]
                seg = None if segmented is None else segmented[k]
                compose_face(frame, f.aligned, f.mask, f.matrix, rgb[k], m, self.cfg, seg)
                k += 1
            if self.mark is not None and w.faces:
                self._embed_mark(frame, w.faces, w.time)
            out.append(FrameResult(w.index, w.time, frame, w.found, len(w.faces), w.frame if keep_original else None))
        return out

    def _embed_mark(self, frame: np.ndarray, faces: list, time: float) -> None:
        from deepfake.provenance import watermark

        if self.smoother is not None:
            # Video: where a reader will put the face: the landmarks of the swapped face (not the original
            # one), fitted from the box of the tracked landmarks the swap used and smoothed over the frames
            # by a smoother of their own, as a reader's tracker does.
            from deepfake.faces.landmarks import box_from_landmarks

            found = [watermark.refit(self.analyzer, frame, watermark.refit(self.analyzer, frame, f.landmarks))
                     for f in faces]
            boxes = [box_from_landmarks(lm) for lm in found]
            if self._mark_smoother is None:
                self._mark_smoother = self.analyzer.new_smoother()
            watermark.embed(frame, self._mark_smoother(found, time, boxes), self.mark)
        else:  # a still: from the landmarks a reader finds on the swapped picture, on the swapped faces only
            watermark.embed_still(frame, self.analyzer, self.mark, only=[f.landmarks for f in faces])

    # -- drivers ---------------------------------------------------------------------------------------

    def swap_image(self, frame: np.ndarray, keep_original: bool = False) -> FrameResult:
        return self.render([self.detect(0, 0.0, frame)], keep_original)[0]

    def swap_frames_serial(self, frames: Iterable[tuple[int, float, np.ndarray]]) -> Iterator[FrameResult]:
        """The naive loop, one frame at a time, nothing overlapped (the benchmark's baseline)."""
        for index, time, frame in frames:
            yield self.render([self.detect(index, time, frame)])[0]

    def swap_frames(
        self, frames: Iterable[tuple[int, float, np.ndarray]], keep_original: Callable[[int], bool] | None = None
    ) -> Iterator[FrameResult]:
        """Swap a stream of (index, time_s, rgb) frames with decode and detection on threads; in order."""
        batch_size = max(1, self.cfg.batch)
        # Bounded queues keep memory flat: at most ~3 batches of frames are in flight (4K frames are 25 MB).
        with Stages() as stages:
            decoded = stages.source(iter(frames), 4, "swap-decode")
            detected = stages.map(lambda item: self.detect(*item), decoded, batch_size, "swap-detect")
            while True:
                batch = detected.take(batch_size)
                if not batch:
                    break
                keep = keep_original is not None and any(keep_original(w.index) for w in batch)
                yield from self.render(batch, keep)


def analyzer_config(face_size: int, coverage: float, base: ExtractConfig | None = None,
                    device: str | None = None, mask_region: str | None = None) -> ExtractConfig:
    """Extract settings for swap: extract's own defaults (or the given ones) at the model's size/coverage;
    `device` (swap's own) runs the identity embeddings that pick the faces to swap; `mask_region` is the
    hull's (default: the base's)."""
    import dataclasses

    base = base or ExtractConfig()
    device = base.device if device is None else device
    region = base.mask_region if mask_region is None else mask_region
    return dataclasses.replace(base, size=face_size, coverage=coverage, max_faces=0, reference=[], device=device,
                               mask_region=region)
