"""The discriminator as a fake detector: score faces in images and video frames as real or synthesized.

Each face is found and aligned exactly as the model's training faces were (same size and coverage),
resized to the model's resolution, and scored by the discriminator: P(real) = sigmoid(mean patch
logit). A file's summary is the mean over its faces. Independently, every file's provenance is read:
the metadata tag `deepfake swap` writes into everything it makes, its C2PA Content Credentials (valid,
or tampered) and the invisible mark in its faces. A file whose pixels do not decode still has its tag
and credentials reported: a changed byte must read as tampering, not as a file that was skipped.

A discriminator learns the artefacts of the generator it was trained against; on faces from other
models it can be close to chance. The marks are the reliable label for our own outputs: the tag and the
credentials while the file is untouched, the invisible mark after re-encoding, scaling and cropping. So
a file that any of them labels is called synthetic whatever the discriminator says (`overall`); the
discriminator's own verdict stays in `verdict`.
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
LABELS = ("content credentials", "provenance tag", "invisible mark")
# IPTC digital source types that say the content was made by a generative model.
SYNTHETIC_SOURCES = {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
                     "compositeSynthetic"}


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
    verdict: str = "no face"  # the discriminator's: real | synthetic | no face | not scored (none given, or no pixels)
    error: str | None = None  # nothing of the file could be read (skipped): the reason
    credentials: dict[str, Any] | None = None  # its C2PA manifest (credentials.CredentialReport)
    mark: dict[str, Any] | None = None  # the invisible mark (watermark.Reading)
    decode_error: str | None = None  # the pixels do not decode (the tag and credentials are still read): why
    labelled_by: list[str] = field(default_factory=list)  # what labels it synthetic: LABELS, strongest first
    overall: str = "unlabelled"  # synthetic when labelled_by is not empty, else the verdict if faces were scored

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

    def _frames(self, path: Path, report: "FileReport") -> Iterator[tuple[int | None, float | None, np.ndarray]]:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            from deepfake.io.video import VideoReader

            with VideoReader(path, every=max(1, self.cfg.every)) as reader:
                for n, (index, t, rgb) in enumerate(reader):
                    if self.cfg.max_frames and n >= self.cfg.max_frames:
                        return
                    yield index, t, rgb
            if reader.error:
                report.decode_error = f"truncated or corrupt video ({reader.error})"
            return
        from deepfake.io.images import read_image

        yield None, None, read_image(path)

    def score_into(self, report: "FileReport", path: Path) -> None:
        """Score every face of one image or video into `report`. Pixels that do not decode are said in
        report.decode_error; the frames of a video that did decode are still scored."""
        crops, where = [], []
        try:
            for index, t, rgb in self._frames(path, report):
                faces = self.analyzer().analyze(rgb)
                report.frames_scored += 1
                if not faces:
                    report.frames_without_face += 1
                for k, face in enumerate(faces):
                    crops.append(face.aligned)
                    where.append((index, t, k, [float(v) for v in face.bbox]))
        except BadInputError as e:
            report.decode_error = e.reason
        report.verdict = "not scored" if report.decode_error and not report.frames_scored else "no face"
        if crops:
            p = self.score_aligned(np.stack(crops))
            for (index, t, k, bbox), pr in zip(where, p):
                label = "real" if pr >= self.cfg.threshold else "synthetic"
                report.faces.append(FaceScore(index, t, k, bbox, float(pr), label))
            report.mean_p_real = float(np.mean(p))
            report.verdict = "real" if report.mean_p_real >= self.cfg.threshold else "synthetic"


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


def inspect_file(path: str | Path, detector: Detector | None, analyzer: Any, max_frames: int,
                 trust_anchors: str | Path | None = None) -> FileReport:
    """Everything detect says about one file: its tag, its Content Credentials, its invisible mark and,
    with a detector, its faces' scores. Pixels that do not decode are the mark's (and the score's) result;
    BadInputError only when the file is missing or nothing of it can be read."""
    from deepfake.provenance.credentials import read_credentials
    from deepfake.provenance.label import read_provenance
    from deepfake.provenance.reading import read_mark_file
    from deepfake.provenance.watermark import Reading

    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found")
    kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
    try:
        tag = read_provenance(path)
    except BadInputError:
        tag = None  # neither an image nor a container av opens: the pixels say why below
    report = FileReport(str(path), kind, tag, verdict="not scored")
    report.credentials = asdict(read_credentials(path, trust_anchors))
    if detector is not None:
        detector.score_into(report, path)
    try:
        reading = read_mark_file(path, analyzer, max_frames=max_frames)
        report.mark = asdict(reading) | {"note": reading.note}
    except BadInputError as e:
        report.decode_error = report.decode_error or e.reason
        report.mark = asdict(Reading()) | {"note": f"not read: the pixels do not decode ({e.reason})",
                                           "error": e.reason}
    c = report.credentials
    manifest = c.get("present") and not c.get("error")  # a "corrupt manifest" is also what c2pa says of non-media
    if report.decode_error and tag is None and not manifest:
        raise BadInputError(path, report.decode_error)  # nothing to report but that the pixels do not decode
    report.labelled_by = labelled_by(report)
    if report.labelled_by:
        report.overall = "synthetic"
    elif report.verdict in ("real", "synthetic"):
        report.overall = report.verdict
    return report


def labelled_by(r: FileReport) -> list[str]:
    """What labels the file synthetic: a valid credential naming a generative source, our tag, a found mark."""
    c = r.credentials or {}
    source = (c.get("digital_source_type") or "").rsplit("/", 1)[-1]
    said = {"content credentials": bool(c.get("valid")) and not c.get("tampered") and source in SYNTHETIC_SOURCES,
            "provenance tag": r.provenance is not None,
            "invisible mark": bool((r.mark or {}).get("found"))}
    return [k for k in LABELS if said[k]]


def detect_files(paths: Iterable[str | Path], detector: Detector | None, progress: bool = True,
                 cfg: DetectConfig | None = None) -> list[FileReport]:
    """Inspect every file (folders are expanded); one that cannot be read at all is reported with its reason
    (one line, by the caller) and the rest go on.

    Every file's provenance is read: its tag, its Content Credentials and its invisible mark (over about
    `cfg.max_frames` frames spread over a video). With no detector, nothing is scored."""
    from tqdm import tqdm

    from deepfake.provenance.reading import mark_analyzer

    cfg = cfg or (detector.cfg if detector is not None else DetectConfig())
    anchors = Path(cfg.trust_anchors) if cfg.trust_anchors else None
    if anchors is not None and not anchors.is_file():  # once, not as every file's reason
        raise BadInputError(anchors, "trust anchors not found (a PEM file of root certificates)")
    analyzer = mark_analyzer(cfg.detector)
    paths = expand_inputs(paths)
    reports = []
    for path in tqdm(paths, desc="detect", unit="file", disable=not progress or len(paths) < 2):
        try:
            reports.append(inspect_file(path, detector, analyzer, cfg.max_frames, anchors))
        except DeepfakeError as e:
            reports.append(FileReport(str(path), "unknown", None, verdict="not scored", error=str(e)))
    return reports


def format_reports(reports: list[FileReport], threshold: float) -> str:
    """A human-readable summary: one block per file, headed by what it is, then what its tag, credentials,
    mark and (when scored) the discriminator say, one line per face (up to 10 per file)."""
    lines = []
    for r in reports:
        if r.error:
            lines.append(f"{r.path}: skipped ({r.error.removeprefix(r.path + ': ')})")
            continue
        lines.append(f"{r.path}: {headline(r)}")
        if r.provenance:
            p = r.provenance
            lines.append(f"  provenance tag: yes ({p.get('tool', 'deepfake')} {p.get('version', '')}, "
                         f"model {p.get('model')})")
        else:
            lines.append("  provenance tag: none")
        lines += marks_lines(r)
        if r.verdict == "not scored" and r.decode_error and not r.faces:
            lines.append(f"  discriminator: not scored: the pixels do not decode ({r.decode_error})")
        elif r.verdict != "not scored":
            score = "n/a" if r.mean_p_real is None else f"{r.mean_p_real:.3f}"
            cut = f"; {r.decode_error}" if r.decode_error else ""
            lines.append(
                f"  discriminator: {r.verdict} (mean P(real) {score} over {len(r.faces)} face(s) in {r.frames_scored} "
                f"{'frame' if r.kind == 'video' else 'image'}(s); threshold {threshold}{cut})"
            )
            for f in r.faces[:10]:
                at = "" if f.frame is None else f"frame {f.frame} ({f.time:.2f} s) "
                lines.append(f"    {at}face {f.face_index}: P(real) {f.p_real:.3f} -> {f.label}")
            if len(r.faces) > 10:
                lines.append(f"    ... {len(r.faces) - 10} more faces")
    return "\n".join(lines)


def headline(r: FileReport) -> str:
    """What the file is: synthetic when a mark labels it, else what the discriminator said, if it scored."""
    if r.labelled_by:
        names = list(r.labelled_by)
        said = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"synthetic (labelled by its {said})"
    if r.overall in ("real", "synthetic"):
        return f"{r.overall} (by the discriminator; no synthetic label found)"
    return "no synthetic label found"


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
            trust = c.get("trust") or ("trusted signer" if c.get("trusted") else "trust not checked")
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
