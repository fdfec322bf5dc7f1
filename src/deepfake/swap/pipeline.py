"""The swap pipeline: frame -> detect/align -> model (batched) -> mask -> colour -> blend -> paste back.

Faces are found and aligned by the same FaceAnalyzer as `extract`, at the face size and coverage the model
was trained with (read from its config.json), with the same temporal landmark smoothing on video.

On video four stages overlap, connected by bounded queues (so memory stays flat on long videos):

    decode (thread) -> detect + align (thread) -> model, batched across frames + paste (caller) -> encode (thread)

Decoding, libx264 and the model's torch ops release the GIL, so on two cores they run beside detection.
The model sees up to `SwapConfig.batch` frames' faces at once. Frames come out in order.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

import cv2
import numpy as np

from deepfake.config import ExtractConfig, SwapConfig
from deepfake.swap.color import match_color
from deepfake.swap.masks import build_mask, mask_parts
from deepfake.swap.paste import paste_back

DIRECTIONS = {"a2b": ("b", "a"), "b2a": ("a", "b")}  # direction -> (identity in the input, decoder used)


class FaceModel(Protocol):
    """What the pipeline needs from a model: aligned faces in, swapped faces (and maybe a mask) out."""

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """faces: uint8 (N, S, S, 3) -> rgb float32 (N, S, S, 3) in [0, 1], mask float32 (N, S, S) or None."""
        ...


class AutoencoderModel:
    """A trained autoencoder as a FaceModel: resize to the model's resolution, swap, resize back.

    amp: "auto" runs the model in bf16 on a CUDA device that supports it (fp32 elsewhere); "bf16" forces
    bf16 autocast (also on CPUs with bf16 instructions); "off" keeps fp32. Outputs are fp32 either way.
    """

    def __init__(self, autoencoder: Any, resolution: int, to_side: str, device: str = "cpu", amp: str = "auto"):
        import torch

        self.device = torch.device(device)
        self.autoencoder = autoencoder.to(self.device).eval()
        self.resolution = resolution
        self.to_side = to_side
        if amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp '{amp}': choose auto, bf16 or off")
        cuda = self.device.type == "cuda"
        self.bf16 = amp == "bf16" or (amp == "auto" and cuda and torch.cuda.is_bf16_supported())
        if cuda:
            self.autoencoder.to(memory_format=torch.channels_last)

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch
        import torch.nn.functional as F

        n, s = faces.shape[0], faces.shape[1]
        if n == 0:
            return np.zeros((0, s, s, 3), np.float32), np.zeros((0, s, s), np.float32)
        r = self.resolution
        with torch.inference_mode():
            x = torch.from_numpy(faces).to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S)
            if s != r:
                x = F.interpolate(x, size=(r, r), mode="bilinear", antialias=s > r, align_corners=False)  # (N, 3, R, R)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                rgb, mask = self.autoencoder.swap(x, self.to_side)  # (N, 3, R, R), (N, 1, R, R)
            rgb, mask = rgb.float(), mask.float()
            if s != r:
                rgb = F.interpolate(rgb, size=(s, s), mode="bicubic", align_corners=False)  # (N, 3, S, S)
                mask = F.interpolate(mask, size=(s, s), mode="bilinear", align_corners=False)  # (N, 1, S, S)
            rgb = rgb.clamp(0, 1).permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (N, S, S, 3)
            mask = mask.clamp(0, 1)[:, 0].contiguous().cpu().numpy()  # (N, S, S)
        return rgb, mask


# ----------------------------------------------------------------------------------------------------
# Per face.


def sharpen(face: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask on a float RGB face: face + amount * (face - blur(face))."""
    if amount <= 0:
        return face
    sigma = max(1.0, face.shape[0] / 128.0)
    blurred = cv2.GaussianBlur(face, (0, 0), sigma)
    return np.clip(face + amount * (face - blurred), 0.0, 1.0)


def compose_face(
    frame: np.ndarray,
    aligned: np.ndarray,
    hull: np.ndarray | None,
    matrix: np.ndarray,
    rgb: np.ndarray,
    learned: np.ndarray | None,
    cfg: SwapConfig,
    segmented: np.ndarray | None = None,
) -> np.ndarray:
    """Mask, colour-match, sharpen and paste one swapped face into `frame` (in place; returned).

    aligned: the original aligned face, uint8 (S, S, 3); hull: its landmark hull mask (S, S);
    matrix: frame -> aligned 2x3; rgb: the model's face, float32 (S, S, 3); learned: its mask (S, S);
    segmented: the segmenter's mask of `aligned` (S, S), for the segmenter mask modes.
    """
    mask = build_mask(cfg.mask, learned, hull, erode=cfg.erode, blur=cfg.blur, segmenter=segmented)
    target = aligned.astype(np.float32) / 255.0
    face = match_color(cfg.color, rgb, target, mask)
    face = sharpen(face, cfg.sharpen)
    return paste_back(frame, face, mask, matrix, cfg.blend)


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
        segmenter: for the segmenter mask modes, a mask.apply.MaskPredictor: it sees the same batch of
            aligned input faces as the model.
    """

    def __init__(self, model: FaceModel, analyzer: Any, cfg: SwapConfig, identity: np.ndarray | None = None,
                 smoother: Any = None, segmenter: Any = None):
        self.model = model
        self.analyzer = analyzer
        self.cfg = cfg
        self.identity = None if identity is None else np.asarray(identity, np.float32)
        self.smoother = smoother
        uses_segmenter = "segmenter" in mask_parts(cfg.mask)
        if uses_segmenter and segmenter is None:
            raise ValueError(f"mask mode '{cfg.mask}' needs a segmenter")
        self.segmenter = segmenter if uses_segmenter else None  # not run when the mode leaves it out

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
            out.append(FrameResult(w.index, w.time, frame, w.found, len(w.faces), w.frame if keep_original else None))
        return out

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
        with _Stages() as stages:
            decoded = stages.source(iter(frames), 4)
            detected = stages.map(lambda item: self.detect(*item), decoded, batch_size)
            while True:
                batch = detected.take(batch_size)
                if not batch:
                    break
                keep = keep_original is not None and any(keep_original(w.index) for w in batch)
                yield from self.render(batch, keep)


# ----------------------------------------------------------------------------------------------------
# Threads and bounded queues.

_END = object()


class _Stream:
    """The output side of a stage: a bounded queue that re-raises the stage's error in the consumer."""

    def __init__(self, stages: "_Stages", depth: int):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stages = stages
        self.done = False

    def get(self):
        while True:
            try:
                item = self.q.get(timeout=0.1)
            except queue.Empty:
                self.stages.check()
                continue
            if item is _END:
                self.done = True
                self.stages.check()
            return item

    def take(self, n: int) -> list:
        """The next n items (fewer only at the end of the stream), waiting for them to arrive."""
        out = []
        while len(out) < n and not self.done:
            item = self.get()
            if item is _END:
                break
            out.append(item)
        return out

    def __iter__(self):
        while not self.done:
            item = self.get()
            if item is _END:
                return
            yield item


class _Stages:
    """Runs producer threads; the first error stops all of them and is raised in the consumer."""

    def __init__(self):
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> "_Stages":
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _put(self, out: _Stream, item) -> bool:
        while not self.stop.is_set():
            try:
                out.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _start(self, body: Callable[[], None], name: str) -> None:
        def run():
            try:
                body()
            except BaseException as e:  # handed to the consumer, which raises it
                self.error = e
                self.stop.set()

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def source(self, items: Iterator, depth: int) -> _Stream:
        out = _Stream(self, depth)

        def body():
            for item in items:
                if not self._put(out, item):
                    return
            self._put(out, _END)

        self._start(body, "swap-decode")
        return out

    def map(self, fn: Callable, inp: _Stream, depth: int) -> _Stream:
        out = _Stream(self, depth)

        def body():
            for item in inp:
                if not self._put(out, fn(item)):
                    return
            self._put(out, _END)

        self._start(body, "swap-detect")
        return out


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
