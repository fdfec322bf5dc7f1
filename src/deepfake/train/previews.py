"""The preview grid: what the user looks at to judge training.

Rows (top to bottom), one column per fixed validation face (as many as both sides have):
    A        the real A faces
    A->A     A reconstructed by side a
    A->B     A rendered as B (the swap)
    B        the real B faces
    B->B     B reconstructed by side b
    B->A     B rendered as A (the swap)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from deepfake.io.atomic import atomic_path

ROWS = ("A", "A->A", "A->B", "B", "B->B", "B->A")
LABEL_WIDTH = 56


@torch.no_grad()
def preview_images(model: torch.nn.Module, faces_a: torch.Tensor, faces_b: torch.Tensor) -> list[torch.Tensor]:
    """The six rows as float tensors (N, 3, R, R) in [0, 1]. faces_*: float (N_a or N_b, 3, R, R) on the
    model's device; a row holds as many faces as the smaller side has (a faceset of two faces shows two)."""
    n = min(len(faces_a), len(faces_b))
    faces_a, faces_b = faces_a[:n], faces_b[:n]
    was_training = model.training
    model.eval()
    za, zb = model.encode(faces_a), model.encode(faces_b)
    rows = [faces_a, model.decode(za, "a")[0], model.decode(za, "b")[0], faces_b, model.decode(zb, "b")[0], model.decode(zb, "a")[0]]
    model.train(was_training)
    return [r.float().clamp(0, 1).cpu() for r in rows]


def grid(rows: list[torch.Tensor], labels: tuple[str, ...] = ROWS) -> np.ndarray:
    """Tile rows of faces into one RGB uint8 image (H, W, 3) with a label strip on the left."""
    n, _, r, _ = rows[0].shape
    out = np.full((len(rows) * r, LABEL_WIDTH + n * r, 3), 32, dtype=np.uint8)
    for i, row in enumerate(rows):
        faces = (row.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)  # (N, R, R, 3)
        out[i * r : (i + 1) * r, LABEL_WIDTH:] = np.concatenate(list(faces), axis=1)
        cv2.putText(out, labels[i], (4, i * r + r // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_preview(path: str | Path, model: torch.nn.Module, faces_a: torch.Tensor, faces_b: torch.Tensor) -> Path:
    """Render and atomically write the preview PNG. Returns the path."""
    path = Path(path)
    image = grid(preview_images(model, faces_a, faces_b))
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write the preview image")
    return path
