"""A trained segmenter put to use: masks for aligned faces of any size, and `mask apply`, which writes
them into a faceset as a mask kind of its own beside the hull:

    FACESET/
      masks/000000.png             the hull (extract's), unchanged
      masks_segmenter/000000.png   the segmenter's mask, L, size x size, 0..255 = its probability
      faces.jsonl                  header["masks"]["segmenter"]: folder, model, step, resolution, region

A segmenter mask has the name of the face's hull mask, in its own folder (`segmenter_mask_file`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from deepfake.errors import DeepfakeError
from deepfake.faceset import MANIFEST, FaceRecord, read_faceset, write_manifest
from deepfake.faceset.cache import FaceCache
from deepfake.faceset.mask_files import FOLDERS, SEGMENTER, faceset_region, mask_file
from deepfake.io.atomic import atomic_path
from deepfake.segment.checkpoint import LoadedSegmenter
from deepfake.models.segmenter import fused_for_inference

MASK_KIND = SEGMENTER
FOLDER = FOLDERS[SEGMENTER]


def segmenter_mask_file(record: FaceRecord) -> str:
    """The segmenter mask of a face, relative to the faceset root."""
    return mask_file(record, SEGMENTER)


class MaskPredictor:
    """Aligned faces in, masks out, at the faces' own size: resized to the segmenter's resolution,
    predicted in batches, resized back. Batch norm is folded into the convolutions first."""

    def __init__(self, loaded: LoadedSegmenter, device: str | torch.device = "cpu", batch: int = 32):
        self.device = torch.device(device)
        self.net = fused_for_inference(loaded.net).to(self.device).eval()
        self.resolution = loaded.config.model.resolution
        self.batch = batch

    @torch.no_grad()
    def __call__(self, faces: torch.Tensor) -> torch.Tensor:
        """faces (N, 3, S, S) uint8 or float in [0, 1], RGB -> (N, 1, S, S) float probabilities, on the host."""
        out = []
        r = self.resolution
        for chunk in faces.split(self.batch):
            x = chunk.to(self.device)
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()  # (n, 3, S, S)
            s = x.shape[-1]
            if s != r:
                x = F.interpolate(x, size=(r, r), mode="bilinear", antialias=s > r, align_corners=False)
            m = torch.sigmoid(self.net(x))  # (n, 1, R, R)
            if s != r:
                m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False)  # (n, 1, S, S)
            out.append(m.clamp(0, 1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 1, faces.shape[-1], faces.shape[-1])

    def predict_rgb(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        """HxWx3 uint8 RGB aligned faces (one size) -> float32 (S, S) masks."""
        return list(self.predict_array(np.stack(faces))) if faces else []

    def predict_array(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) RGB aligned faces -> float32 (N, S, S) masks, in batches: swap's faces."""
        if len(faces) == 0:
            return np.zeros(faces.shape[:3], np.float32)
        x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2)  # (N, 3, S, S)
        return self(x)[:, 0].numpy()


@dataclass
class ApplyResult:
    faceset: Path
    folder: Path
    faces: int
    seconds: float

    def lines(self) -> list[str]:
        rate = self.faces / max(self.seconds, 1e-9)
        return [f"wrote {self.faces} segmenter masks to {self.folder} ({rate:.0f} faces/s)",
                f"{self.faceset / MANIFEST}: header notes the mask kind '{MASK_KIND}'"]


def apply_to_faceset(faceset: str | Path, loaded: LoadedSegmenter, device: str | torch.device = "cpu",
                     batch: int = 32, progress: bool = True) -> ApplyResult:
    """Predict every face's mask and write it under FACESET/masks_segmenter/, then note the kind in
    the manifest's header. Faces come from the faceset's uint8 cache at the segmenter's resolution (the
    one `mask train` built), so nothing is decoded twice."""
    from tqdm import tqdm

    fs = read_faceset(faceset)
    if len(fs) == 0:
        raise DeepfakeError(f"{fs.root}: faceset has no faces")
    t0 = time.perf_counter()
    predictor = MaskPredictor(loaded, device, batch)
    cache = FaceCache.from_faceset(fs, predictor.resolution, progress=progress)
    (fs.root / FOLDER).mkdir(exist_ok=True)
    bar = tqdm(total=len(cache), unit="face", desc="segmenter masks", disable=not progress, leave=False)
    for start in range(0, len(cache), batch):
        masks = predictor(cache.images[start : start + batch])  # (n, 1, R, R)
        for rec, m in zip(cache.records[start : start + batch], masks):
            size = rec.size or fs.size
            m = m[0].numpy()
            if m.shape[0] != size:
                m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
            _write_mask(fs.root / segmenter_mask_file(rec), (m * 255 + 0.5).astype(np.uint8))
        bar.update(len(masks))
    bar.close()
    _note_kind(fs.root, {"folder": FOLDER, "model": str(Path(loaded.path).resolve()), "step": loaded.step,
                         "resolution": predictor.resolution, "region": loaded.config.region, "faces": len(cache)})
    return ApplyResult(fs.root, fs.root / FOLDER, len(cache), time.perf_counter() - t0)


def _write_mask(path: Path, mask: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), mask):
            raise DeepfakeError(f"{path}: could not write the mask")


def _note_kind(root: Path, note: dict) -> None:
    """Record the mask kind in the header. The manifest is read again just before the atomic rewrite,
    so faces appended while the masks were written are kept."""
    fs = read_faceset(root)
    header = dict(fs.header)
    kinds = dict(header.get("masks") or {})
    kinds.setdefault("hull", {"folder": FOLDERS["hull"], "region": faceset_region(fs)})
    kinds[MASK_KIND] = json.loads(json.dumps(note))
    header["masks"] = kinds
    write_manifest(root, header, fs.records)
