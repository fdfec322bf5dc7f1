"""DeepFaceLab's "true face" discriminator: a small classifier on the DF autoencoder's latent code.

It learns to tell A's codes from B's; the generator is trained to make B's codes pass as A's. A swap
(B's frame through A's decoder) then feeds A's decoder codes that look like the ones it was trained on,
so it renders more of A's identity and less of B's (DFL's `true_face_power`). DF only, as in DFL: in LIAE
the identity lives in `inter_B`, not in one shared code.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class CodeDiscriminator(nn.Module):
    """(B, C, r, r) latent codes -> (B, 1) logits: "this code is A's"."""

    def __init__(self, channels: int, res: int, width: int = 256):
        super().__init__()
        layers, c, r = [], channels, res
        while r > 4:  # halve the grid down to 4x4 or less, so the head stays small at any resolution
            layers += [nn.Conv2d(c, width, 3, 2, 1), nn.LeakyReLU(0.1)]
            c, r = width, (r + 1) // 2
        layers += [nn.Conv2d(c, width, 3, 1, 1), nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width * r * r, 1)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(code).flatten(1))  # (B, 1)


def build_code_discriminator(autoencoder: nn.Module) -> CodeDiscriminator:
    """The true-face discriminator for a DF autoencoder's code (bottleneck_channels x 2r x 2r)."""
    from deepfake.models.autoencoder import bottleneck_res

    cfg = autoencoder.config
    return CodeDiscriminator(cfg.bottleneck_channels, 2 * bottleneck_res(cfg))
