"""The polygon label editor's side of the server: a faceset's faces, its labels.json, and a mask
model's prediction for one face.

labels.json is read, checked and written by deepfake.segment.labels (the file `mask train` reads), so a
polygon the page may save is exactly one the trainer accepts; points are aligned-face pixels. A face
is named by its manifest `file`: a key looked up in the manifest, never a path taken from the request.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from deepfake.errors import DeepfakeError
from deepfake.ui.workspace import NotFoundError, PathError, Workspace, model_kind

FACES_PAGE = 48


def _faceset(ws: Workspace, name: str):
    from deepfake.faceset import read_faceset

    return read_faceset(ws.child("facesets", name))


def _record(ws: Workspace, fs, name: str, face: Any):
    """The manifest record of `face` and its image's real path (inside the faceset, links followed)."""
    if not isinstance(face, str) or not face:
        raise PathError("face: expected a face file from the manifest, e.g. faces/000000.png")
    rec = next((r for r in fs.records if r.file == face), None)
    if rec is None:
        raise NotFoundError(f"{face}: not a face of faceset {name}")
    return rec, ws.resolve(f"facesets/{name}/{rec.file}", "facesets")


def _url(ws: Workspace, path: Path) -> str | None:
    from deepfake.ui.views import file_url

    return file_url(ws, path) + f"&v={int(path.stat().st_mtime)}" if path.is_file() else None


def polygons(label) -> dict[str, list]:
    return {kind: [p.tolist() for p in getattr(label, kind)] for kind in ("include", "exclude")}


def faces_view(ws: Workspace, name: str, offset: int, limit: int) -> dict[str, Any]:
    """One page of the faceset's faces, each with its picture, hull mask, the segmenter mask that
    `mask apply` wrote (when there is one) and its polygons; labelled faces first."""
    from deepfake.segment.apply import segmenter_mask_file
    from deepfake.segment.labels import read_labels

    fs = _faceset(ws, name)
    labels = read_labels(fs)
    order = sorted(range(len(fs.records)), key=lambda i: fs.records[i].file not in labels)
    faces = []
    for i in order[offset:offset + limit]:
        rec = fs.records[i]
        label = labels.get(rec.file)
        faces.append({"file": rec.file, "size": rec.size or fs.size, "url": _url(ws, fs.root / rec.file),
                      "hull": _url(ws, fs.root / rec.mask), "applied": _url(ws, fs.root / segmenter_mask_file(rec)),
                      "pose": rec.pose, **(polygons(label) if label else {"include": [], "exclude": []})})
    return {"name": name, "total": len(fs.records), "offset": offset, "labelled": len(labels),
            "size": fs.size, "faces": faces}


def save_label(ws: Workspace, name: str, body: Any, lock: threading.Lock) -> dict[str, Any]:
    """Replace one face's polygons ({"face", "include", "exclude"}; both empty removes its label).
    Checked as labels.json is checked before anything is written; DeepfakeError (400) otherwise."""
    from deepfake.segment import labels as lab

    if not isinstance(body, dict) or not isinstance(body.get("face"), str) or set(body) - {"face", *lab.KINDS}:
        raise PathError('body: expected {"face": FILE, "include": [[[x, y], ...], ...], "exclude": [...]}')
    fs = _faceset(ws, name)
    _record(ws, fs, name, body["face"])
    entry = {kind: body.get(kind, []) for kind in lab.KINDS}
    where = f"facesets/{name}/{lab.LABELS}"
    parsed = lab.parse_labels({"schema": lab.SCHEMA, "version": lab.VERSION, "faces": {body["face"]: entry}}, fs, where)
    with lock:  # read, change, write: two saves at once must not lose one another's face
        labels = lab.read_labels(fs)
        labels[body["face"]] = parsed[body["face"]]
        lab.write_labels(fs, labels)
    saved = parsed[body["face"]]
    return {"face": body["face"], **polygons(saved), "labelled": sum(1 for v in labels.values() if v),
            "path": where}


class Predictor:
    """A mask model's prediction for one face, the model loaded once per weight file version."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.predictor = None
        self.step = 0

    def __call__(self, ws: Workspace, name: str, face: Any, model: Any) -> tuple[bytes, int]:
        import cv2
        import numpy as np

        from deepfake.io.images import read_image
        from deepfake.segment.apply import MaskPredictor
        from deepfake.segment.checkpoint import SEGMENTER, load_mask_model

        folder = ws.child("models", model)
        if model_kind(folder) != "mask":
            raise PathError(f"models/{model}: not a mask model (deepfake mask train)")
        fs = _faceset(ws, name)
        _, image = _record(ws, fs, name, face)
        weights = folder / SEGMENTER
        key = (str(folder), weights.stat().st_mtime_ns if weights.is_file() else None)
        with self.lock:  # one model in memory; requests for the same one share it
            if key != self.key:
                loaded = load_mask_model(folder, "cpu")
                self.predictor, self.step, self.key = MaskPredictor(loaded, "cpu", batch=1), loaded.step, key
            mask = self.predictor.predict_rgb([read_image(image)])[0]
            step = self.step
        ok, png = cv2.imencode(".png", (np.clip(mask, 0, 1) * 255 + 0.5).astype(np.uint8))
        if not ok:
            raise DeepfakeError(f"{face}: could not encode the prediction")
        return png.tobytes(), step


def add_routes(app: FastAPI, ws: Workspace, read_json) -> None:
    """The editor's endpoints; `read_json` reads a request body (size-limited, 400 on bad JSON)."""
    lock, predict = threading.Lock(), Predictor()

    @app.get("/api/facesets/{name}/faces")
    def faces(name: str, offset: int = 0, limit: int = FACES_PAGE):
        if not (0 <= offset <= 10**7 and 1 <= limit <= 500):
            raise PathError("offset, limit: offset 0 or more, limit 1..500")
        return faces_view(ws, name, offset, limit)

    @app.get("/api/facesets/{name}/labels")
    def labels(name: str):
        from deepfake.segment.labels import read_labels

        fs = _faceset(ws, name)
        return {"name": name, "size": fs.size, "faces": {k: polygons(v) for k, v in read_labels(fs).items()}}

    @app.put("/api/facesets/{name}/labels")
    async def put_label(name: str, request: Request):
        body = await read_json(request)
        return await run_in_threadpool(save_label, ws, name, body, lock)

    @app.get("/api/facesets/{name}/predict")
    async def prediction(name: str, face: str, model: str):
        png, step = await run_in_threadpool(predict, ws, name, face, model)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store", "X-Mask-Step": str(step)})
