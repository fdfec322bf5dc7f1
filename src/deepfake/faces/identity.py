"""Identity embeddings: dlib's face-recognition ResNet (128-D, ~0.6 Euclidean separates people), run in
torch (faces/identity_net.py) on a device, batched.

The chips are cut with dlib's geometry and its uint8 truncations (`face_chips(..., quantize=True)`) and
the landmarks rounded to whole pixels as dlib's `full_object_detection` stores them, so an embedding
equals dlib's `compute_face_descriptor(image, shape)` up to float rounding (cosine >= 0.9999 on the
shared media, tests/test_identity.py): facesets extracted before keep their meaning.

    embedder = FaceEmbedder("auto")
    one = embedder.embed(rgb, landmarks68)                      # (128,)
    many = embedder.embed_many(rgb, [lm_0, lm_1])               # all faces of one frame: (2, 128)
    many = embedder.embed_many(aligned_faces, aligned_landmarks)  # one face per image: (N, 128)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from deepfake.devices import resolve_device
from deepfake.faces.chip import CHIP_SIZE, chip_frames, face_chips
from deepfake.faces.identity_net import EMBEDDING_DIM, IdentityNet

SAME_PERSON = 0.6  # dlib's recommended distance threshold
EMBED_BATCH = 64  # chips per network call: bounds the activations (the first layer's are 0.66 MB a chip)


class FaceEmbedder:
    """dlib's ResNet on `device` (auto | cpu | cuda | cuda:N or a torch.device), loaded once per object
    (never at import). Images are RGB uint8 (H, W, 3) in source pixels; landmarks (68, 2) in those pixels."""

    def __init__(self, device: str | torch.device = "auto", batch: int = EMBED_BATCH):
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.net = IdentityNet.from_dlib().to(self.device)
        self.batch = max(1, int(batch))

    def embed(self, image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        """128-D float32 embedding of the face with these 68 landmarks (source pixels of `image`)."""
        return self.embed_many(image, [landmarks68])[0]  # (128,)

    def embed_many(self, images: np.ndarray | Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 128) float32 embeddings. `images` is one frame (H, W, 3) holding all N faces, or N images
        (a list, or an (N, H, W, 3) array) with one face each."""
        return self.embed_chips(self.chips(images, landmarks))

    @torch.inference_mode()
    def chips(self, images: np.ndarray | Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> torch.Tensor:
        """dlib's 150 px chips of the faces, (N, 3, 150, 150) uint8 on the device (see `embed_many`)."""
        lms = [np.round(np.asarray(lm, dtype=np.float64)) for lm in landmarks]  # dlib keeps whole pixels
        if not lms:
            return torch.zeros(0, 3, CHIP_SIZE, CHIP_SIZE, dtype=torch.uint8, device=self.device)
        if isinstance(images, np.ndarray) and images.ndim == 3:
            return torch.cat([self._chip_from_frame(images, lm) for lm in lms])
        if len(images) != len(lms):
            raise ValueError(f"{len(images)} images but {len(lms)} landmark sets")
        if isinstance(images, np.ndarray) or len({np.shape(i) for i in images}) == 1:
            out = []
            for s in range(0, len(lms), self.batch):
                x = self._to_tensor(np.stack([np.asarray(i)[..., :3] for i in images[s : s + self.batch]]))
                lm = torch.from_numpy(np.stack(lms[s : s + self.batch])).to(self.device)
                out.append(_to_uint8(face_chips(x, lm, quantize=True)))
            return torch.cat(out)  # (N, 3, 150, 150)
        return torch.cat([self._chip_from_frame(np.asarray(i), lm) for i, lm in zip(images, lms)])

    @torch.inference_mode()
    def embed_chips(self, chips: torch.Tensor) -> np.ndarray:
        """(N, 3, 150, 150) uint8 chips (from `chips`) -> (N, 128) float32 embeddings."""
        out = [self.net(chips[s : s + self.batch].to(self.device)) for s in range(0, len(chips), self.batch)]
        if not out:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return torch.cat(out).float().cpu().numpy()  # (N, 128)

    def _to_tensor(self, images: np.ndarray) -> torch.Tensor:
        images = np.ascontiguousarray(images)
        if not images.flags.writeable:  # decoded frames may be read-only; torch wants to own writable memory
            images = images.copy()
        x = torch.from_numpy(images).to(self.device)  # (B, H, W, 3) uint8
        return x.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W) in 0-1

    def _chip_from_frame(self, frame: np.ndarray, lm: np.ndarray) -> torch.Tensor:
        """One face's chip from a crop of the frame around it: a whole frame per face would be copied
        (and converted to float) once per face, which costs more than the network on a 1080p frame."""
        frame = frame[..., :3]
        h, w = frame.shape[:2]
        center, rot, extent = (t[0].numpy() for t in chip_frames(torch.from_numpy(lm)[None]))
        corners = center + (np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]]) * extent / 2) @ rot.T  # (4, 2)
        # dlib builds its pyramid on the chip's bounding box grown by 2^(d+2) - 2 px for d halvings,
        # under 3 % of the chip's side; the margin covers that and the bilinear neighbourhood, so every
        # pixel dlib reads is inside the crop. Where the crop meets the frame's edge it is the frame's
        # edge, so dlib's black outside-the-image pixels stay where they were.
        margin = 8 + 0.125 * float(extent.max())
        x0, y0 = (max(0, math.floor(v - margin)) for v in corners.min(0))
        x1, y1 = (min(n - 1, math.ceil(v + margin)) for v, n in zip(corners.max(0), (w, h)))
        x0, y0 = min(x0, w - 1), min(y0, h - 1)  # a face wholly outside the frame: its chip is black
        x1, y1 = max(x1, x0), max(y1, y0)
        crop = self._to_tensor(frame[None, y0 : y1 + 1, x0 : x1 + 1])  # (1, 3, h', w')
        shifted = torch.from_numpy(lm - np.array([x0, y0], np.float64))[None].to(self.device)  # (1, 68, 2)
        return _to_uint8(face_chips(crop, shifted, quantize=True))  # (1, 3, 150, 150)


def _to_uint8(chips: torch.Tensor) -> torch.Tensor:
    """Quantised chips hold k/255 exactly up to float rounding: back to their integers (a quarter of the memory)."""
    return (chips * 255.0).round().clamp(0, 255).to(torch.uint8)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings (dlib's metric)."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)))
