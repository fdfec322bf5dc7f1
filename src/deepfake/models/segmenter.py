"""The face segmenter: a small U-Net that predicts which pixels of an aligned face are visible face
(DeepFaceLab's XSeg idea: trained on the user's own faces, so it learns their occluders and hairline).

Reads top-down: the level block, the upsampling block, then the network. Width and depth come from
SegmenterConfig (deepfake.config); the network is fully convolutional, so it runs at any size that
is a multiple of 2**depth, but it is trained and used at `cfg.resolution`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepfake.config import SegmenterConfig
from deepfake.models.blocks import activation, norm


class LevelBlock(nn.Sequential):
    """Two 3x3 conv -> norm -> activation: the work done at one resolution."""

    def __init__(self, cin: int, cout: int, cfg: SegmenterConfig):
        bias = cfg.norm in ("none", "group")
        super().__init__(
            nn.Conv2d(cin, cout, 3, 1, 1, bias=bias), norm(cfg.norm, cout), activation(cfg.activation),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=bias), norm(cfg.norm, cout), activation(cfg.activation),
        )


class UpBlock(nn.Module):
    """Bilinear x2, then a level block over [upsampled, skip]. Bilinear rather than transposed convs:
    no checkerboard in the mask edges, and no weights spent on upsampling."""

    def __init__(self, cin: int, cskip: int, cout: int, cfg: SegmenterConfig):
        super().__init__()
        self.block = LevelBlock(cin + cskip, cout, cfg)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)  # (B, cin, 2H, 2W)
        return self.block(torch.cat([x, skip], dim=1))  # (B, cout, 2H, 2W)


def level_channels(cfg: SegmenterConfig) -> list[int]:
    """Channels per level, full resolution first: base doubled per level, capped."""
    return [min(cfg.base_channels * 2**i, cfg.max_channels) for i in range(cfg.depth + 1)]


class Segmenter(nn.Module):
    """(B, 3, R, R) RGB in [0, 1] -> (B, 1, R, R) logits of "visible face"."""

    def __init__(self, cfg: SegmenterConfig):
        super().__init__()
        self.cfg = cfg
        ch = level_channels(cfg)
        self.stem = LevelBlock(3, ch[0], cfg)
        self.down = nn.ModuleList(LevelBlock(ch[i], ch[i + 1], cfg) for i in range(cfg.depth))
        self.up = nn.ModuleList(UpBlock(ch[i + 1], ch[i], ch[i], cfg) for i in reversed(range(cfg.depth)))
        self.head = nn.Conv2d(ch[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x * 2 - 1)  # (B, c0, R, R); centred input, as the convs' init expects
        skips = [h]
        for block in self.down:
            h = block(F.max_pool2d(h, 2))  # (B, c_i+1, R/2^(i+1), R/2^(i+1))
            skips.append(h)
        skips.pop()  # the bottom level is h itself
        for block in self.up:
            h = block(h, skips.pop())  # (B, c_i, R/2^i, R/2^i)
        return self.head(h)  # (B, 1, R, R) logits

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, 1, R, R) in [0, 1], in eval mode."""
        was = self.training
        self.eval()
        out = torch.sigmoid(self(x))
        self.train(was)
        return out


def build_segmenter(cfg: SegmenterConfig) -> Segmenter:
    return Segmenter(cfg)


def fused_for_inference(net: Segmenter) -> Segmenter:
    """An eval-mode copy with each batch norm folded into the conv before it: the same masks (to float
    rounding) for one op less per layer. Other norms are left as they are."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(net).eval()
    for block in fused.modules():
        if isinstance(block, LevelBlock):
            for i in range(len(block) - 1):
                if isinstance(block[i], nn.Conv2d) and isinstance(block[i + 1], nn.BatchNorm2d):
                    block[i] = fuse_conv_bn_eval(block[i], block[i + 1])
                    block[i + 1] = nn.Identity()
    return fused
