"""`mask label --export`: which faces are most worth labelling, as a sheet and as a folder to label in.

Two kinds of faces teach the segmenter most per polygon drawn:
    pose     the most varied head poses (farthest-point sampling over yaw, pitch and roll from the
             manifest): the hull is worst at the extremes, and one label covers its neighbours
    unsure   with a mask model, the faces its prediction is least decided on (mean of 1 - |2p - 1| over
             the crop: 0 where every pixel is 0 or 1, 1 where all sit at 0.5)
Faces that already have labels are never picked. The chosen faces are copied, at the faceset's size, to
FACESET/label_queue/ (draw polygons named include / exclude there with LabelMe, then `--import` it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from deepfake.errors import DeepfakeError
from deepfake.faceset import Faceset, read_faceset
from deepfake.faceset.cache import FaceCache
from deepfake.io.atomic import atomic_path
from deepfake.segment.apply import MaskPredictor
from deepfake.segment.checkpoint import LoadedSegmenter
from deepfake.segment.labels import read_labels
from deepfake.segment.preview import overlay, write_png

QUEUE = "label_queue"
SHEET = "labels_todo.png"
POSE_SCALE = np.array([30.0, 20.0, 20.0])  # degrees that count as one unit of yaw, pitch, roll difference
TILE = 128


@dataclass
class Pick:
    index: int  # row in the faceset's records
    file: str  # the face's file, the key labels.json uses
    reason: str  # pose | unsure
    score: float  # pose: distance to the faces already picked; unsure: the uncertainty


def pose_picks(fs: Faceset, candidates: list[int], n: int) -> list[Pick]:
    """Up to n faces with the most varied poses: the most extreme first, then each the farthest from
    those already taken (greedy farthest-point sampling)."""
    if n <= 0 or not candidates:
        return []
    poses = np.array([[fs.records[i].pose.get(k, 0.0) for k in ("yaw", "pitch", "roll")] for i in candidates],
                     dtype=np.float64) / POSE_SCALE  # (C, 3)
    centre = np.median(poses, axis=0)
    dist = np.linalg.norm(poses - centre, axis=1)  # to the typical pose: the first pick is the most extreme
    picks: list[Pick] = []
    for _ in range(min(n, len(candidates))):
        j = int(np.argmax(dist))
        picks.append(Pick(candidates[j], fs.records[candidates[j]].file, "pose", float(dist[j])))
        dist = np.minimum(dist, np.linalg.norm(poses - poses[j], axis=1))
        dist[j] = -1.0
    return picks


def uncertainty(masks: torch.Tensor) -> torch.Tensor:
    """(N, 1, R, R) probabilities -> (N,) in [0, 1]: how undecided each mask is."""
    return (1 - (2 * masks - 1).abs()).flatten(1).mean(1)


def unsure_picks(fs: Faceset, candidates: list[int], n: int, predictor: MaskPredictor,
                 cache: FaceCache) -> tuple[list[Pick], dict[int, torch.Tensor]]:
    """Up to n faces the model is least sure of, and their masks (row -> (1, R, R))."""
    if n <= 0 or not candidates:
        return [], {}
    row_of = {rec.file: k for k, rec in enumerate(cache.records)}
    rows = [(i, row_of[fs.records[i].file]) for i in candidates if fs.records[i].file in row_of]
    masks = predictor(cache.images[torch.tensor([r for _, r in rows], dtype=torch.int64)])  # (C, 1, R, R)
    score = uncertainty(masks)
    order = torch.argsort(score, descending=True)[:n].tolist()
    picks = [Pick(rows[k][0], fs.records[rows[k][0]].file, "unsure", float(score[k])) for k in order]
    return picks, {rows[k][0]: masks[k] for k in order}


def export_label_sheet(faceset: str | Path, n: int = 24, loaded: LoadedSegmenter | None = None,
                       out: str | Path | None = None, device: str = "cpu", progress: bool = True) -> tuple[Path, list[Pick]]:
    """Pick faces worth labelling, write the sheet (default FACESET/labels_todo.png) and copy them to
    FACESET/label_queue/. Half pose picks and half unsure picks with a model; all pose picks without."""
    fs = read_faceset(faceset)
    labels = read_labels(fs)
    candidates = [i for i, r in enumerate(fs.records) if r.file not in labels]
    if not candidates:
        raise DeepfakeError(f"{fs.root}: every face already has labels; nothing to export")
    masks: dict[int, torch.Tensor] = {}
    unsure: list[Pick] = []
    if loaded is not None:
        predictor = MaskPredictor(loaded, device)
        cache = FaceCache.from_faceset(fs, predictor.resolution, progress=progress)
        unsure, masks = unsure_picks(fs, candidates, n // 2, predictor, cache)
    taken = {p.index for p in unsure}
    picks = pose_picks(fs, [i for i in candidates if i not in taken], n - len(unsure)) + unsure
    sheet = _sheet(fs, picks, masks)
    path = Path(out) if out is not None else fs.root / SHEET
    write_png(path, sheet)
    _fill_queue(fs, picks)
    return path, picks


def _sheet(fs: Faceset, picks: list[Pick], masks: dict[int, torch.Tensor]) -> np.ndarray:
    """Tiles of the picked faces (RGB uint8): file name and reason under each; unsure faces with the
    model's mask over them."""
    cols = max(1, int(np.ceil(np.sqrt(len(picks)))))
    rows = int(np.ceil(len(picks) / cols))
    sheet = np.full((rows * TILE, cols * TILE, 3), 32, dtype=np.uint8)
    for k, p in enumerate(picks):
        bgr = cv2.imread(str(fs.root / p.file), cv2.IMREAD_COLOR)
        face = np.zeros((TILE, TILE, 3), np.uint8) if bgr is None else cv2.resize(
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (TILE, TILE), interpolation=cv2.INTER_AREA)
        if p.index in masks:
            m = torch.nn.functional.interpolate(masks[p.index][None], size=(TILE, TILE), mode="bilinear")
            t = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255
            face = (overlay(t, m)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        text = f"{Path(p.file).stem} {p.reason}"
        cv2.rectangle(face, (0, TILE - 14), (TILE, TILE), (0, 0, 0), -1)
        cv2.putText(face, text, (3, TILE - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        r, c = divmod(k, cols)
        sheet[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = face
    return sheet


def _fill_queue(fs: Faceset, picks: list[Pick]) -> None:
    """Copy the picked faces to FACESET/label_queue/, by the face's own file name; the LabelMe JSON
    drawn next to each one names the face through it."""
    queue = fs.root / QUEUE
    queue.mkdir(exist_ok=True)
    for p in picks:
        dst = queue / Path(p.file).name
        if not dst.exists():
            with atomic_path(dst) as tmp:
                shutil.copyfile(fs.root / p.file, tmp)
