"""Polygon labels: which part of an aligned face is visible face, drawn by the user.

FACESET/labels.json, beside the manifest:

    {"schema": "deepfake.mask_labels", "version": 1,
     "faces": {"faces/000012.png": {"include": [[[x, y], ...], ...], "exclude": [[[x, y], ...]]}}}

Faces are named by their `file` in the manifest; points are aligned-face pixels, like the manifest's
`aligned_landmarks` (0..size on both axes). A face's target is the union of its include polygons minus
the union of its exclude polygons; a face with exclude polygons only takes its hull as the include
(label just the hand over the mouth). Written atomically, validated on every read: a bad file is one
line naming the file, the face and the problem.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.errors import DeepfakeError
from deepfake.faceset import Faceset
from deepfake.io.atomic import atomic_write_json

LABELS = "labels.json"
SCHEMA = "deepfake.mask_labels"
VERSION = 1
KINDS = ("include", "exclude")
SUBPIXEL_BITS = 4  # cv2.fillPoly's fixed-point shift: polygons keep 1/16 px precision when scaled


@dataclass
class FaceLabel:
    include: list[np.ndarray] = field(default_factory=list)  # polygons, each (K, 2) float64 aligned px
    exclude: list[np.ndarray] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)


def labels_path(faceset: Faceset | str | Path) -> Path:
    root = faceset.root if isinstance(faceset, Faceset) else Path(faceset)
    return root / LABELS


# ----------------------------------------------------------------------------------------------------
# Reading and writing.


def read_labels(faceset: Faceset) -> dict[str, FaceLabel]:
    """The faceset's labels by face file ({} when it has no labels.json). DeepfakeError on a bad file."""
    path = labels_path(faceset)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DeepfakeError(f"{path}: not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise DeepfakeError(f"{path}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})") from None
    except OSError as e:
        raise DeepfakeError(f"{path}: unreadable ({e.strerror or e})") from None
    return parse_labels(data, faceset, str(path))


def write_labels(faceset: Faceset, labels: dict[str, FaceLabel]) -> Path:
    """Validate and write labels.json atomically; faces with no polygons are left out."""
    path = labels_path(faceset)
    data = {"schema": SCHEMA, "version": VERSION, "faces": {
        key: {kind: [np.asarray(p, dtype=np.float64).round(3).tolist() for p in getattr(lab, kind)] for kind in KINDS}
        for key, lab in sorted(labels.items()) if lab}}
    parse_labels(data, faceset, str(path))  # never write what could not be read back
    atomic_write_json(path, data)
    return path


def parse_labels(data: Any, faceset: Faceset, where: str) -> dict[str, FaceLabel]:
    """Labels from a decoded labels.json object, every polygon checked against its face."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise DeepfakeError(f"{where}: not a deepfake mask labels file (expected \"schema\": \"{SCHEMA}\")")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise DeepfakeError(f"{where}: labels version {data.get('version')!r} is not one this tool reads (<= {VERSION})")
    faces = data.get("faces")
    if not isinstance(faces, dict):
        raise DeepfakeError(f"{where}: \"faces\" must be an object of face file -> polygons")
    sizes = {r.file: r.size or faceset.size for r in faceset.records}
    out: dict[str, FaceLabel] = {}
    for key, entry in faces.items():
        if key not in sizes:
            raise DeepfakeError(f"{where}: face {key}: not in the faceset's manifest")
        if not isinstance(entry, dict) or set(entry) - set(KINDS):
            raise DeepfakeError(f"{where}: face {key}: expected an object with \"include\" and/or \"exclude\" lists")
        out[key] = FaceLabel(**{kind: _polygons(entry.get(kind, []), sizes[key], f"{where}: face {key}: {kind}")
                                for kind in KINDS})
    return out


def _polygons(value: Any, size: int, where: str) -> list[np.ndarray]:
    if not isinstance(value, list):
        raise DeepfakeError(f"{where}: expected a list of polygons")
    return [check_polygon(p, size, f"{where} polygon {i + 1}") for i, p in enumerate(value)]


def check_polygon(points: Any, size: int, where: str) -> np.ndarray:
    """A polygon as (K, 2) float64, or a one-line DeepfakeError: too few points, not numbers, a point
    outside the size x size face, or no area."""
    if not isinstance(points, (list, tuple, np.ndarray)) or len(points) < 3:
        raise DeepfakeError(f"{where}: needs at least 3 points [x, y]")
    pts = []
    for p in points:
        if (not isinstance(p, (list, tuple, np.ndarray)) or len(p) != 2
                or not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in p)):
            raise DeepfakeError(f"{where}: point {_short(p)} is not [x, y] numbers")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DeepfakeError(f"{where}: point {_short(p)} is not finite")
        if not (0.0 <= x <= size and 0.0 <= y <= size):
            raise DeepfakeError(f"{where}: point ({x:g}, {y:g}) is outside the {size} px face")
        pts.append((x, y))
    arr = np.asarray(pts, dtype=np.float64)
    if abs(_area(arr)) < 1e-6:
        raise DeepfakeError(f"{where}: has no area (its points are on one line)")
    return arr


def _area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, np.ndarray) else str(value.tolist())
    return text if len(text) <= 40 else text[:37] + "..."


# ----------------------------------------------------------------------------------------------------
# Rasterising.


def rasterise(label: FaceLabel, size: int, resolution: int, hull: np.ndarray | None = None) -> np.ndarray:
    """The label as a uint8 (resolution, resolution) target, 255 = visible face.

    size: the face's aligned size (the polygons' coordinate range); hull: the uint8 hull at
    `resolution`, the include of a face labelled with exclude polygons only.
    """
    scale = resolution / float(size)
    if label.include:
        target = _fill(label.include, scale, resolution)
    elif hull is not None:
        target = (np.asarray(hull) > 127).astype(np.uint8) * 255
    else:
        raise ValueError("a face with only exclude polygons needs its hull")
    if label.exclude:
        target[_fill(label.exclude, scale, resolution) > 0] = 0
    return target


def _fill(polygons: list[np.ndarray], scale: float, resolution: int) -> np.ndarray:
    out = np.zeros((resolution, resolution), dtype=np.uint8)
    fixed = [np.round(p * scale * (1 << SUBPIXEL_BITS)).astype(np.int32) for p in polygons]
    cv2.fillPoly(out, fixed, 255, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    return out
