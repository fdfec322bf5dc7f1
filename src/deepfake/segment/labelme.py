"""Polygons drawn in LabelMe (https://github.com/wkentaro/labelme) into labels.json.

`mask label --export` copies the faces worth labelling to FACESET/label_queue/; open that folder in
LabelMe, draw polygons (or rectangles) named `include` or `exclude` on a face, and save: LabelMe writes
NAME.json beside NAME.png. `mask label FACESET --import FACESET/label_queue` then reads every such
JSON, matches it to the face with that file name, scales its points from the image LabelMe saw to the
face's size, and merges it into labels.json (a face imported again is replaced, other faces are kept).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.errors import DeepfakeError
from deepfake.faceset import Faceset
from deepfake.segment.labels import KINDS, FaceLabel, check_polygon, read_labels, write_labels


def read_labelme(path: Path, size: int) -> FaceLabel:
    """One LabelMe JSON as a FaceLabel in face pixels (the face is size x size). One-line errors."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DeepfakeError(f"{path}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DeepfakeError(f"{path}: unreadable ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DeepfakeError(f"{path}: not a LabelMe file (no \"shapes\" list)")
    width, height = data.get("imageWidth") or size, data.get("imageHeight") or size
    if not all(isinstance(v, (int, float)) and v > 0 for v in (width, height)):
        raise DeepfakeError(f"{path}: imageWidth/imageHeight must be positive numbers")
    scale = np.array([size / float(width), size / float(height)])
    label = FaceLabel()
    for n, shape in enumerate(data["shapes"], start=1):
        kind = str(shape.get("label", "")).strip().lower() if isinstance(shape, dict) else ""
        if kind not in KINDS:
            raise DeepfakeError(f"{path}: shape {n}: label {shape.get('label') if isinstance(shape, dict) else shape!r} "
                                "is neither include nor exclude")
        points = _points(shape, f"{path}: shape {n}")
        getattr(label, kind).append(check_polygon((points * scale).tolist(), size, f"{path}: shape {n} ({kind})"))
    return label


def _points(shape: dict[str, Any], where: str) -> np.ndarray:
    kind = shape.get("shape_type") or "polygon"
    try:
        pts = np.asarray(shape.get("points"), dtype=np.float64)
    except (TypeError, ValueError):
        raise DeepfakeError(f"{where}: points are not [x, y] numbers") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DeepfakeError(f"{where}: points are not a list of [x, y]")
    if kind == "rectangle" and len(pts) == 2:  # two opposite corners
        (x0, y0), (x1, y1) = pts
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    if kind != "polygon":
        raise DeepfakeError(f"{where}: shape_type {kind!r}: only polygons and rectangles make labels")
    return pts


def import_labelme(fs: Faceset, folder: str | Path) -> tuple[int, Path]:
    """Merge every LabelMe JSON in `folder` into the faceset's labels.json. Returns (faces imported,
    labels path). A JSON whose image is not a face of this faceset is an error naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DeepfakeError(f"{folder}: not a folder of LabelMe files")
    by_name = {Path(r.file).name: r for r in fs.records}
    labels = read_labels(fs)
    count = 0
    for path in sorted(folder.glob("*.json")):
        try:
            image = Path(str(json.loads(path.read_text(encoding="utf-8")).get("imagePath") or path.with_suffix(".png").name)).name
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            image = path.with_suffix(".png").name  # read_labelme reports what is wrong with the file
        rec = by_name.get(image)
        if rec is None:
            raise DeepfakeError(f"{path}: image {image} is not a face of {fs.root}")
        label = read_labelme(path, rec.size or fs.size)
        if label:
            labels[rec.file] = label
            count += 1
    if count == 0:
        raise DeepfakeError(f"{folder}: no LabelMe file with include/exclude shapes")
    return count, write_labels(fs, labels)
