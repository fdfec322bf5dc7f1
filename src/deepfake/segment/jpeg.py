"""JPEG artefacts on the device: the codec's lossy step (8x8 DCT, quantisation by the standard tables
scaled for a quality, 4:2:0 chroma) without its entropy coding, which is lossless and changes nothing.

Batched, each face with its own quality, so no image leaves the device. Not bit-exact with libjpeg
(no rounding to 8 bits between stages, bilinear chroma upsampling), but the blocking, ringing and colour
bleeding a segmenter must ignore are the same. Not differentiable where it matters (rounding): it is
augmentation, applied under no_grad.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance).
LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32


def dct_matrix(device=None) -> torch.Tensor:
    """The orthonormal 8-point DCT-II: coefficients = D @ block @ D.T. (8, 8)"""
    k = torch.arange(8, dtype=torch.float32, device=device).view(8, 1)
    n = torch.arange(8, dtype=torch.float32, device=device).view(1, 8)
    d = torch.cos(math.pi * (2 * n + 1) * k / 16) * math.sqrt(2 / 8)
    d[0] = math.sqrt(1 / 8)
    return d


def quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's quality scaling of the standard tables, per face: (B, 8, 8) luma and chroma."""
    q = quality.float().clamp(1, 100).view(-1, 1, 1)  # (B, 1, 1)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)
    out = []
    for table in (LUMA_TABLE, CHROMA_TABLE):
        t = torch.tensor(table, dtype=torch.float32, device=quality.device).view(1, 8, 8)
        out.append(torch.floor((t * scale + 50) / 100).clamp(1, 255))  # (B, 8, 8)
    return out[0], out[1]


def _blocks_roundtrip(x: torch.Tensor, table: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """Quantise every 8x8 block of x (B, C, H, W) in its DCT domain with table (B, 8, 8).

    d2 = kron(D, D) (64, 64) maps a row-major block to its coefficients (D @ block @ D.T) in one
    matmul over all blocks: thousands of 8x8 matmuls are slow, one (N, 64) @ (64, 64) is not."""
    b, c, h, w = x.shape
    blocks = x.reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)  # (B, C, H/8, W/8, 8, 8)
    coeffs = blocks.reshape(b, -1, 64) @ d2.T  # (B, C*H/8*W/8, 64)
    t = table.view(b, 1, 64)
    coeffs = torch.round(coeffs / t) * t
    blocks = (coeffs @ d2).view(b, c, h // 8, w // 8, 8, 8)
    return blocks.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


@torch.no_grad()
def jpeg_like(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """images (B, 3, H, W) RGB in [0, 1], quality (B,) 1..100 -> the same after a JPEG round trip."""
    b, _, h, w = images.shape
    ph, pw = -h % 16, -w % 16  # whole 16 px macroblocks, so the half-size chroma splits into 8x8 blocks
    x = F.pad(images.float(), (0, pw, 0, ph), mode="replicate") * 255  # (B, 3, H', W')
    r, g, bl = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    # JFIF's full-range YCbCr.
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl
    luma, chroma = quant_tables(quality)
    d = dct_matrix(images.device)
    d2 = torch.kron(d, d)  # (64, 64)
    y = _blocks_roundtrip(y - 128, luma, d2) + 128  # (B, 1, H', W')
    cbcr = F.avg_pool2d(torch.cat([cb, cr], dim=1), 2)  # (B, 2, H'/2, W'/2): 4:2:0 subsampling
    cbcr = _blocks_roundtrip(cbcr, chroma, d2)
    cbcr = F.interpolate(cbcr, scale_factor=2, mode="bilinear", align_corners=False)  # (B, 2, H', W')
    cb, cr = cbcr[:, 0:1], cbcr[:, 1:2]
    rgb = torch.cat([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)
    return (rgb[:, :, :h, :w] / 255).clamp(0, 1)
