"""The discriminator as a fake detector: score faces in images and video frames as real or synthesized.

Each face is found and aligned exactly as the model's training faces were (same size and coverage),
resized to the model's resolution, and scored by the discriminator: P(real) = sigmoid(mean patch
logit). A file's summary is the mean over its faces. Independently, every file's provenance is read:
the metadata tag `deepfake swap` writes into everything it makes, its C2PA Content Credentials (valid,
or tampered) and the invisible mark in its faces.

A discriminator learns the artefacts of the generator it was trained against; on faces from other
models it can be close to chance. The marks are the reliable label for our own outputs: the tag and the
credentials while the file is untouched, the invisible mark after re-encoding, scaling and cropping.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
import torch

from deepfake.config import DetectConfig, ExtractConfig
from deepfake.devices import resolve_device
from deepfake.errors import BadInputError, DeepfakeError, ModelDirError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


@dataclass
class FaceScore:
    frame: int | None  # video frame index, None for a still
    time: float | None  # seconds into the video
    face_index: int  # within the frame, largest first
    bbox: list[float]  # x0, y0, x1, y1 in source pixels
    p_real: float  # sigmoid of the mean patch logit
    label: str  # "real" | "synthetic" (p_real below the threshold)


@dataclass
class FileReport:
    path: str
    kind: str  # image | video
    provenance: dict[str, Any] | None  # our synthetic-media tag, when the file carries one
    faces: list[FaceScore] = field(default_factory=list)
    frames_scored: int = 0
    frames_without_face: int = 0
    mean_p_real: float | None = None
    verdict: str = "no face"  # real | synthetic | no face | not scored (no discriminator given)
    error: str | None = None  # the file could not be read: the reason
    credentials: dict[str, Any] | None = None  # its C2PA manifest (credentials.CredentialReport)
    mark: dict[str, Any] | None = None  # the invisible mark (watermark.Reading)

    @property
    def tagged(self) -> bool:
        return self.provenance is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["provenance_tag"] = self.tagged
        return d


class Detector:
    """A discriminator plus the face geometry it was trained on. Models load once per object."""

    def __init__(self, discriminator: torch.nn.Module, resolution: int, face_size: int, coverage: float,
                 cfg: DetectConfig | None = None, device: str | torch.device = "cpu"):
        self.cfg = cfg or DetectConfig()
        self.device = torch.device(device)
        self.discriminator = discriminator.to(self.device).eval()
        self.resolution = resolution
        self.face_size = face_size or resolution
        self.coverage = coverage or ExtractConfig().coverage
        self._analyzer = None

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, cfg: DetectConfig | None = None) -> "Detector":
        from deepfake.model_dir import load_model_dir

        cfg = cfg or DetectConfig()
        device = resolve_device(cfg.device)
        loaded = load_model_dir(model_dir, device=str(device), checkpoint=cfg.checkpoint)
        if loaded.discriminator is None:
            raise ModelDirError(
                f"{model_dir}: has no discriminator (train with --gan-weight > 0, or run `deepfake discriminator`)"
            )
        t = loaded.config
        return cls(loaded.discriminator, t.model.resolution, t.face_size, t.coverage, cfg, device)

    # ------------------------------------------------------------------------------------------------
    # Scoring.

    def score_aligned(self, faces: np.ndarray) -> np.ndarray:
        """P(real) for aligned uint8 RGB faces (N, S, S, 3) of any size S (resized to the model's)."""
        from deepfake.evaluate.runner import discriminator_scores

        if len(faces) == 0:
            return np.zeros(0, np.float32)
        r = self.resolution
        if faces.shape[1] != r:
            faces = np.stack([cv2.resize(f, (r, r), interpolation=cv2.INTER_AREA) for f in faces])
        return discriminator_scores(self.discriminator, faces, self.cfg.batch, self.device)

    def analyzer(self):
        if self._analyzer is None:
            from deepfake.faces.analyzer import FaceAnalyzer

            ecfg = ExtractConfig(size=self.face_size, coverage=self.coverage, detector=self.cfg.detector,
                                 smooth=False, workers=1)
            self._analyzer = FaceAnalyzer(ecfg, with_embedding=False)
        return self._analyzer

    def _frames(self, path: Path) -> tuple[str, Iterator[tuple[int | None, float | None, np.ndarray]]]:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return "video", self._video_frames(path)
        from deepfake.io.images import read_image

        return "image", iter([(None, None, read_image(path))])

    def _video_frames(self, path: Path) -> Iterator[tuple[int | None, float | None, np.ndarray]]:
        from deepfake.io.video import VideoReader

        with VideoReader(path, every=max(1, self.cfg.every)) as reader:
            for n, (index, t, rgb) in enumerate(reader):
                if self.cfg.max_frames and n >= self.cfg.max_frames:
                    break
                yield index, t, rgb

    def detect_file(self, path: str | Path) -> FileReport:
        """Score every face of one image or video. Raises BadInputError when the file is unusable."""
        from deepfake.provenance.label import read_provenance

        path = Path(path)
        if not path.is_file():
            raise BadInputError(path, "file not found")
        provenance = read_provenance(path)
        kind, frames = self._frames(path)
        report = FileReport(str(path), kind, provenance)
        crops, where = [], []
        for index, t, rgb in frames:
            faces = self.analyzer().analyze(rgb)
            report.frames_scored += 1
            if not faces:
                report.frames_without_face += 1
            for k, face in enumerate(faces):
                crops.append(face.aligned)
                where.append((index, t, k, [float(v) for v in face.bbox]))
        if crops:
            p = self.score_aligned(np.stack(crops))
            for (index, t, k, bbox), pr in zip(where, p):
                label = "real" if pr >= self.cfg.threshold else "synthetic"
                report.faces.append(FaceScore(index, t, k, bbox, float(pr), label))
            report.mean_p_real = float(np.mean(p))
            report.verdict = "real" if report.mean_p_real >= self.cfg.threshold else "synthetic"
        return report


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a folder stands for the images and videos directly inside it, sorted."""
    from deepfake.io.images import IMAGE_EXTENSIONS

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_SUFFIXES)
        else:
            out.append(p)
    return out


def tag_file(path: str | Path) -> FileReport:
    """Only the provenance tag of one file (no discriminator needed). BadInputError when it is missing."""
    from deepfake.provenance.label import read_provenance

    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found")
    kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
    return FileReport(str(path), kind, read_provenance(path), verdict="not scored")


def add_marks(report: FileReport, path: Path, analyzer: Any, max_frames: int) -> FileReport:
    """Read the file's Content Credentials and its invisible mark into `report`. BadInputError for a
    truncated or undecodable file."""
    from deepfake.provenance.credentials import read_credentials
    from deepfake.provenance.reading import read_mark_file

    report.credentials = asdict(read_credentials(path))
    reading = read_mark_file(path, analyzer, max_frames=max_frames)
    report.mark = asdict(reading) | {"note": reading.note}
    return report


def detect_files(paths: Iterable[str | Path], detector: Detector | None, progress: bool = True,
                 cfg: DetectConfig | None = None) -> list[FileReport]:
    """Score every file (folders are expanded); an unreadable one is reported with its reason and the rest go on.

    Every file's provenance is read: its tag, its Content Credentials and its invisible mark (over its
    first `cfg.max_frames` frames). With no detector, nothing is scored."""
    from tqdm import tqdm

    from deepfake.provenance.reading import mark_analyzer

    cfg = cfg or (detector.cfg if detector is not None else DetectConfig())
    analyzer = mark_analyzer(cfg.detector)
    paths = expand_inputs(paths)
    reports = []
    for path in tqdm(paths, desc="detect", unit="file", disable=not progress or len(paths) < 2):
        try:
            report = detector.detect_file(path) if detector is not None else tag_file(path)
            reports.append(add_marks(report, Path(path), analyzer, cfg.max_frames))
        except DeepfakeError as e:
            log.warning("%s", e)
            reports.append(FileReport(str(path), "unknown", None, error=str(e)))
    return reports


def format_reports(reports: list[FileReport], threshold: float) -> str:
    """A human-readable summary: one block per file, one line per face (up to 10 per file)."""
    lines = []
    for r in reports:
        if r.error:
            lines.append(f"{r.path}: skipped ({r.error})")
            continue
        tag = f"yes ({r.provenance.get('tool', 'deepfake')})" if r.provenance else "no"
        if r.verdict == "not scored":
            lines.append(f"{r.path}: provenance tag: {tag}" + (" (labelled synthetic)" if r.provenance else ""))
            lines += marks_lines(r)
            continue
        score = "n/a" if r.mean_p_real is None else f"{r.mean_p_real:.3f}"
        lines.append(
            f"{r.path}: {r.verdict} (mean P(real) {score} over {len(r.faces)} face(s) in {r.frames_scored} "
            f"{'frame' if r.kind == 'video' else 'image'}(s); threshold {threshold}); provenance tag: {tag}"
        )
        for f in r.faces[:10]:
            at = "" if f.frame is None else f"frame {f.frame} ({f.time:.2f} s) "
            lines.append(f"  {at}face {f.face_index}: P(real) {f.p_real:.3f} -> {f.label}")
        if len(r.faces) > 10:
            lines.append(f"  ... {len(r.faces) - 10} more faces")
        lines += marks_lines(r)
    return "\n".join(lines)


def marks_lines(r: FileReport) -> list[str]:
    """Two lines: what the Content Credentials and the invisible mark say."""
    out = []
    c = r.credentials
    if c is not None:
        if c.get("error"):
            text = c["error"] + (" (reported as tampered)" if c.get("tampered") else "")
        elif not c.get("present"):
            text = "none"
        else:
            state = "TAMPERED (" + ", ".join(s for s in c["status"] if s != "signingCredential.untrusted") + ")" \
                if c["tampered"] else "signature valid"
            trust = "trusted signer" if c.get("trusted") else "signer not in any trust list"
            source = (c.get("digital_source_type") or "").rsplit("/", 1)[-1]
            text = (f"{state}; signed by {c.get('signer')} ({c.get('issuer')}, {trust}); actions "
                    f"{', '.join(c.get('actions') or [])}; digital source type {source}")
        out.append(f"  content credentials: {text}")
    m = r.mark
    if m is not None:
        if m.get("found"):
            text = (f"found, payload {m['payload']} (deepfake, model hash {m['model_hash']}), confidence "
                    f"{m['confidence']:.2f}, {m['faces_checked']} face(s) in {m['frames_checked']} frame(s)")
        elif m.get("note"):
            text = m["note"]
        else:
            text = (f"not found ({m['faces_checked']} face(s) in {m['frames_checked']} frame(s) checked; "
                    f"false-alarm rate {m['false_alarm']:.2%} per file)")
        out.append(f"  invisible mark: {text}")
    return out
