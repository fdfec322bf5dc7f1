"""What the user looks at to judge the segmenter: masks drawn over faces.

The training preview, one column per fixed validation face:
    face        the face as it is
    mask        the predicted mask over it (outside darkened and tinted blue)
    occluded    the same face with a fixed augmentation (occluders, background, blur, JPEG)
    mask        the prediction over that
    target      what the prediction should be
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from deepfake.io.atomic import atomic_path
from deepfake.train.previews import grid

ROWS = ("face", "mask", "occluded", "mask", "target")
OUTSIDE_TINT = (0.10, 0.20, 0.55)  # RGB of what the mask leaves out: visible on skin and on dark hair


def overlay(faces: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Faces (N, 3, R, R) in [0, 1] with what `masks` (N, 1, R, R) leaves out darkened and tinted."""
    tint = torch.tensor(OUTSIDE_TINT, device=faces.device).view(1, 3, 1, 1)
    return faces * masks + (0.35 * faces + 0.65 * tint) * (1 - masks)


@torch.no_grad()
def preview_rows(net: torch.nn.Module, faces: torch.Tensor, occluded: torch.Tensor,
                 targets: torch.Tensor) -> list[torch.Tensor]:
    """The five rows as float tensors (N, 3, R, R) on the host. faces, occluded: float (N, 3, R, R)."""
    clean = net.predict(faces)  # (N, 1, R, R)
    occ = net.predict(occluded)
    rows = [faces, overlay(faces, clean), occluded, overlay(occluded, occ), targets.expand(-1, 3, -1, -1)]
    return [r.float().clamp(0, 1).cpu() for r in rows]


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """An RGB uint8 image to a PNG, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write the image")
    return path


def write_preview(path: str | Path, net: torch.nn.Module, faces: torch.Tensor, occluded: torch.Tensor,
                  targets: torch.Tensor) -> Path:
    return write_png(path, grid(preview_rows(net, faces, occluded, targets), ROWS))
