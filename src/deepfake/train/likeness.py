"""Likeness in training: the identity loss and DeepFaceLab's true face.

Identity leakage ("the result is more similar to the target than the source", DFL #896) is what a
reconstruction loss cannot see: it never looks at a swap. Both terms here do.

- **Identity** (`loss.identity_weight`): B's faces decoded by A's decoder, and A's by B's, are the swaps
  `deepfake swap` makes. dlib's face-recognition ResNet, frozen and in torch (faces/identity_net.py),
  embeds each swap on the device, and the loss pulls the embedding towards the mean embedding of the
  identity whose decoder made it. Its gradient reaches the decoders (and the encoder) through the chip
  sampling; the identity net itself never changes.
- **True face** (`loss.true_face_weight`, DF only): a small discriminator on the latent code learns to
  tell A's codes from B's in a phase of its own; the G phase is trained to make B's codes pass as A's.

    likeness = build_likeness(cfg, autoencoder, device, identities)   # None when both are off
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepfake.config import TrainConfig
from deepfake.errors import DeepfakeError
from deepfake.faces.chip import CHIP_SIZE, chip_to_image
from deepfake.faces.identity_net import EMBEDDING_DIM, IdentityNet


@dataclass
class Likeness:
    """What the G phase needs for the identity and true-face terms, and the true-face phase's parts."""

    identity_net: IdentityNet | None  # frozen; None when identity_weight is 0
    targets: torch.Tensor | None  # (2, 128): the mean embedding of A, then of B
    code_d: nn.Module | None  # the true-face discriminator; None when true_face_weight is 0
    opt_code: torch.optim.Optimizer | None

    def embed(self, faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) aligned faces in 0-1 with their (B, 68, 2) landmarks -> (B, 128) embeddings."""
        return self.identity_net(training_chips(faces.float(), landmarks))  # (B, 128)


def training_chips(faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """dlib's 150 px chips (get_face_chip's geometry, padding 0.25) of aligned training faces, sampled
    bilinearly with one grid_sample: batched, on the faces' device, differentiable in the pixels, with
    no host round trip. dlib's image pyramid is left out: it only starts for faces over twice the chip's
    size, and training faces at up to 512 px cover 0.75 of the crop, under 400 px.

    faces (B, 3, R, R) in 0-1, landmarks (B, 68, 2) in R-px units -> (B, 3, 150, 150)."""
    b, _, h, w = faces.shape
    to_image = chip_to_image(landmarks.detach())  # (B, 2, 3) float64: chip px -> face px
    u = torch.arange(CHIP_SIZE, device=faces.device, dtype=torch.float64)
    gy, gx = torch.meshgrid(u, u, indexing="ij")
    chip_px = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(1, -1, 3)  # (1, S*S, 3)
    px = (chip_px @ to_image.transpose(1, 2)).view(b, CHIP_SIZE, CHIP_SIZE, 2)  # face pixels
    last = u.new_tensor([w - 1.0, h - 1.0])
    # As dlib: a chip pixel whose 2x2 neighbourhood leaves the face is black, not half-blended.
    inside = ((px >= 0) & (px < last)).all(-1)[:, None]  # (B, 1, S, S)
    grid = (2 * px / last - 1).to(faces.dtype)  # align_corners: -1..1 over the pixel centres
    chips = F.grid_sample(faces, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return chips * inside  # (B, 3, S, S)


def identity_loss(embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance of (B, 128) embeddings to one (128,) identity: the distance dlib's 0.6
    verifier thresholds, so the loss reads on the same scale as evaluate's identity metrics."""
    return (embeddings.float() - target.float()).norm(dim=1).mean()


def identity_targets(identities: dict[str, np.ndarray] | None, device: torch.device) -> torch.Tensor:
    """(2, 128) float32: A's and B's mean embeddings from the facesets' manifests."""
    if not identities or set(identities) != {"a", "b"}:
        raise DeepfakeError("loss.identity_weight needs identity embeddings in both facesets' manifests "
                            "(extract computes them; re-extract facesets made without)")
    return torch.as_tensor(np.stack([identities["a"], identities["b"]]), dtype=torch.float32, device=device)


def build_likeness(cfg: TrainConfig, autoencoder: nn.Module, device: torch.device, make_optimizer,
                   identities: dict[str, np.ndarray] | None = None, move: bool = True) -> Likeness | None:
    """The identity net and targets, and the true-face discriminator with its optimizer, as cfg asks.

    Without `identities` (the memory estimate, the batch probe) the targets are zeros of the right shape:
    the same cost, no facesets needed."""
    loss = cfg.loss
    if loss.identity_weight <= 0 and loss.true_face_weight <= 0:
        return None
    net = targets = code_d = opt_code = None
    if loss.identity_weight > 0:
        net = IdentityNet.from_dlib()
        net = net.to(device) if move else net
        targets = (identity_targets(identities, device) if identities is not None
                   else torch.zeros(2, EMBEDDING_DIM, device=device if move else "cpu"))
    if loss.true_face_weight > 0:
        if cfg.model.arch != "df":
            raise DeepfakeError(f"loss.true_face_weight: true face is for the df architecture (model.arch is {cfg.model.arch})")
        from deepfake.models.code_discriminator import build_code_discriminator

        code_d = build_code_discriminator(autoencoder)
        code_d = code_d.to(device) if move else code_d
        opt_code = make_optimizer(cfg, code_d.parameters(), cfg.d_lr)
    return Likeness(net, targets, code_d, opt_code)
