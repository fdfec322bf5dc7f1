"""The faceset manifest, faces.jsonl: its header and records, reading, writing, and file fingerprints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np

from deepfake.errors import DeepfakeError
from deepfake.io.atomic import atomic_write_text

SCHEMA = "deepfake.faceset"
SCHEMA_VERSION = 1
MANIFEST = "faces.jsonl"


@dataclass
class FaceRecord:
    file: str  # aligned face image, relative to the faceset root
    mask: str  # mask image, relative to the faceset root
    source: str  # the source image or video path, as given
    source_id: str  # content fingerprint of the source file (dedup key across appends)
    frame: int | None  # frame index in the video, None for stills
    time: float | None  # seconds into the video, None for stills
    face_index: int  # index of the face in its frame (largest first)
    bbox: list[float]  # [x0, y0, x1, y1] in source pixels
    landmarks: list[list[float]]  # 68 x 2, source pixels (smoothed on video)
    aligned_landmarks: list[list[float]]  # 68 x 2, aligned pixels
    matrix: list[list[float]]  # 2 x 3 affine, source -> aligned
    size: int  # aligned size in px
    score: float  # detector confidence
    blur: float  # variance of the Laplacian inside the face (higher = sharper)
    pose: dict[str, float]  # yaw, pitch, roll in degrees
    embedding: list[float]  # 128-D dlib ResNet identity embedding
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int | None, int]:
        return (self.source_id, self.frame, self.face_index)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FaceRecord":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Faceset:
    root: Path
    header: dict[str, Any]
    records: list[FaceRecord]

    @property
    def settings(self) -> dict[str, Any]:
        return self.header.get("settings", {})

    @property
    def size(self) -> int:
        return int(self.settings.get("size", self.records[0].size if self.records else 0))

    @property
    def coverage(self) -> float:
        return float(self.settings.get("coverage", 0.0))

    def __len__(self) -> int:
        return len(self.records)

    def embeddings(self) -> np.ndarray:
        return np.asarray([r.embedding for r in self.records], dtype=np.float32).reshape(-1, 128)

    def mean_embedding(self) -> np.ndarray:
        return self.embeddings().mean(axis=0)


def new_header(settings: dict[str, Any]) -> dict[str, Any]:
    from deepfake import __version__

    return {"schema": SCHEMA, "version": SCHEMA_VERSION, "tool": f"deepfake {__version__}", "settings": settings}


def read_faceset(root: str | Path) -> Faceset:
    """Read and validate a faceset folder. Raises DeepfakeError with a one-line reason."""
    root = Path(root)
    manifest = root / MANIFEST
    if not root.is_dir():
        raise DeepfakeError(f"{root}: not a faceset folder (does not exist or is not a folder)")
    if not manifest.is_file():
        raise DeepfakeError(f"{root}: not a faceset ({MANIFEST} missing; run `deepfake extract` first)")
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DeepfakeError(f"{manifest}: unreadable ({e})") from None
    if not lines:
        raise DeepfakeError(f"{manifest}: empty manifest")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError as e:
        raise DeepfakeError(f"{manifest}: bad header line ({e})") from None
    if header.get("schema") != SCHEMA:
        raise DeepfakeError(f"{manifest}: not a deepfake faceset manifest (schema={header.get('schema')!r})")
    if int(header.get("version", 0)) > SCHEMA_VERSION:
        raise DeepfakeError(f"{manifest}: schema version {header.get('version')} is newer than this tool's {SCHEMA_VERSION}")
    records = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            record = FaceRecord.from_dict(json.loads(line))
        except (json.JSONDecodeError, TypeError) as e:
            raise DeepfakeError(f"{manifest}:{n}: bad face record ({e})") from None
        for rel in (record.file, record.mask):
            if not _inside_faceset(rel):  # tools move and delete these files: never one outside the faceset
                raise DeepfakeError(f"{manifest}:{n}: face file {rel!r} is not a path inside the faceset")
        records.append(record)
    return Faceset(root=root, header=header, records=records)


def _inside_faceset(rel: Any) -> bool:
    """Whether a record's file names a file under the faceset root: relative, no '..', no backslash."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        return False
    pure = PurePosixPath(rel)
    return not pure.is_absolute() and ".." not in pure.parts and pure.parts not in ((), (".",))


def write_manifest(root: str | Path, header: dict[str, Any], records: Iterable[FaceRecord]) -> None:
    """Write the whole manifest atomically (temp file + rename)."""
    root = Path(root)
    text = json.dumps(header, separators=(",", ":")) + "\n" + "".join(r.to_json() + "\n" for r in records)
    atomic_write_text(root / MANIFEST, text)


def file_fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    """A content fingerprint: size + SHA-1 of the first and last MiB. Stable across renames and copies."""
    path = Path(path)
    h = hashlib.sha1()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(chunk))
        if size > 2 * chunk:
            f.seek(size - chunk)
            h.update(f.read(chunk))
    return h.hexdigest()[:16]
