"""Batched augmentation in torch: random warp, random affine, flip and colour jitter.

The random numbers are drawn on a CPU generator (a few hundred floats per batch: cheap, and the same
on every device), then the pixel work runs wherever the images are. So a GPU run and a CPU run with the
same seed produce the same batch up to float rounding, and the generator state is all a resume needs.

The model learns to undo the warp: its input is warped, its target is not (faceswap's and DFL's
practice). The affine, flip and colour are shared by input and target, so they widen the data without
asking the network to invent anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deepfake.config import AugmentConfig
from deepfake.faceset.cache import host_to_device


@dataclass
class AugmentParams:
    theta: torch.Tensor  # (B, 2, 3) output -> input affine in normalised coordinates (affine_grid's theta)
    warp: torch.Tensor | None  # (B, 2, g, g) coarse grid offsets, normalised units; None = no warp
    color: torch.Tensor  # (B, 4) brightness, contrast, saturation factors and hue angle (radians)


@dataclass
class Augmented:
    inputs: torch.Tensor  # (B, 3, R, R) float in [0, 1], warped: what the encoder sees
    target: torch.Tensor  # (B, 3, R, R) float in [0, 1], not warped: what the decoder must produce
    target_mask: torch.Tensor  # (B, 1, R, R) float in [0, 1]
    landmarks: torch.Tensor  # (B, 68, 2) target landmarks, R-pixel units


def sample_params(
    cfg: AugmentConfig, batch: int, generator: torch.Generator, warp: bool = True, affine: bool = True
) -> AugmentParams:
    """Draw one batch's augmentation from `generator` (a CPU torch.Generator). Always draws the same
    amount, whatever is switched off, so the random stream does not depend on the phase.

    Two draws, then numpy arithmetic on a few hundred floats: this runs on the host for each side every
    step, and host time spent here is time the host is not launching kernels (benchmarks/RESULTS.md,
    "augmentation parameters"). Not for a fake-tensor mode: draw before entering one."""
    u = torch.rand(batch, 9, generator=generator).numpy() * 2 - 1  # (B, 9) in [-1, 1)
    offsets = torch.randn(batch, 2, cfg.warp_grid, cfg.warp_grid, generator=generator) * cfg.warp_strength
    # Columns: angle, scale, shift x, shift y, flip, brightness, contrast, saturation, hue.
    spread = np.array([math.radians(cfg.rotation), cfg.scale, 2 * cfg.shift, 2 * cfg.shift, 1,
                       cfg.brightness, cfg.contrast, cfg.saturation, 2 * math.pi * cfg.hue], np.float32)
    u = u * spread if affine else np.zeros_like(u)  # affine off: no rotation, scale, shift, colour
    angle, scale, shift = u[:, 0], 1 + u[:, 1], u[:, 2:4]  # (B,), (B,), (B, 2)
    flip = (u[:, 4] < 0) & cfg.flip  # (B,) probability 1/2 (and never with affine off)
    color = u[:, 5:9] + np.array([1, 1, 1, 0], np.float32)  # (B, 4) brightness, contrast, saturation, hue
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    sx = np.where(flip, -1, 1).astype(np.float32)  # a horizontal flip negates the output x column
    theta = np.stack([cos * sx, -sin, shift[:, 0], sin * sx, cos, shift[:, 1]], 1).reshape(batch, 2, 3)  # (B, 2, 3)
    return AugmentParams(theta=torch.from_numpy(theta.astype(np.float32)), warp=offsets if (warp and cfg.warp) else None,
                         color=torch.from_numpy(color.astype(np.float32)))


def params_to(params: AugmentParams, device: torch.device) -> AugmentParams:
    """The parameters on `device` in one host-to-device copy from pinned memory (no host sync)."""
    parts = [params.theta, params.color] + ([params.warp] if params.warp is not None else [])
    if all(p.device == torch.device(device) for p in parts):
        return params
    flat = host_to_device(torch.cat([p.reshape(-1) for p in parts]), device)  # (sum of numels,)
    out = list(torch.split(flat, [p.numel() for p in parts]))
    theta, color = out[0].view_as(params.theta), out[1].view_as(params.color)
    warp = out[2].view_as(params.warp) if params.warp is not None else None
    return AugmentParams(theta=theta, warp=warp, color=color)


def _to_norm(points: torch.Tensor, size: int) -> torch.Tensor:
    return (2 * points + 1) / size - 1  # pixel centres -> [-1, 1] (align_corners=False)


def _to_px(points: torch.Tensor, size: int) -> torch.Tensor:
    return ((points + 1) * size - 1) / 2


def transform_landmarks(landmarks: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """Where the source landmarks land in the output: invert theta (output -> input). (B, 68, 2) px."""
    lin, t = theta[:, :, :2], theta[:, :, 2:]  # (B, 2, 2), (B, 2, 1)
    a, b, c, d = lin[:, 0, 0], lin[:, 0, 1], lin[:, 1, 0], lin[:, 1, 1]  # (B,) each
    # The 2x2 inverse in closed form: linalg.solve would check for singularity and sync with the host.
    inv = torch.stack([torch.stack([d, -b], 1), torch.stack([-c, a], 1)], 1) / (a * d - b * c).view(-1, 1, 1)
    p = _to_norm(landmarks.float(), size).transpose(1, 2)  # (B, 2, 68)
    out = inv @ (p - t)  # (B, 2, 68)
    return _to_px(out.transpose(1, 2), size)  # (B, 68, 2)


def _apply_color(x: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    bright, contrast, sat, hue = (color[:, i].view(b, 1, 1, 1) for i in range(4))
    x = x * bright
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    x = (x - mean) * contrast + mean
    gray = x.mean(dim=1, keepdim=True)  # (B, 1, R, R)
    x = gray + (x - gray) * sat
    # Hue: rotate the chroma around the grey axis (Rodrigues about (1,1,1)/sqrt(3)).
    cos, sin = torch.cos(hue), torch.sin(hue)  # (B, 1, 1, 1)
    k = 1 / math.sqrt(3)
    r, g, bl = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    cross = k * torch.cat([bl - g, r - bl, g - r], dim=1)  # axis x colour, (B, 3, R, R)
    x = x * cos + cross * sin + gray * (1 - cos)
    return x.clamp(0, 1)


def apply(
    images: torch.Tensor, masks: torch.Tensor, landmarks: torch.Tensor, params: AugmentParams, kernel=None
) -> Augmented:
    """Augment a uint8 batch on its own device. images (B,3,R,R) u8, masks (B,1,R,R) u8, landmarks (B,68,2).

    kernel: what does the pixel work (default `apply_on_device`; training passes its torch.compile'd
    twin, see `augment_kernel`)."""
    device = images.device
    params = params_to(params, device)
    return (kernel or apply_on_device)(images, masks, host_to_device(landmarks, device), params)


def apply_on_device(
    images: torch.Tensor, masks: torch.Tensor, landmarks: torch.Tensor, params: AugmentParams
) -> Augmented:
    """`apply` with everything already on one device: tensor ops only, so torch.compile can fuse them."""
    b, _, size, _ = images.shape
    x = images.float() / 255  # (B, 3, R, R)
    m = masks.float() / 255  # (B, 1, R, R)
    theta, color = params.theta, params.color
    grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)  # (B, R, R, 2)
    xm = torch.cat([x, m], dim=1)  # one grid_sample for image and mask
    target = F.grid_sample(xm, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if params.warp is not None:
        # A smooth random displacement: coarse offsets, bicubically upsampled to every pixel.
        offsets = params.warp
        dense = F.interpolate(offsets, size=(size, size), mode="bicubic", align_corners=True)  # (B, 2, R, R)
        warped_grid = grid + dense.permute(0, 2, 3, 1)  # (B, R, R, 2)
        inputs = F.grid_sample(x, warped_grid, mode="bilinear", padding_mode="border", align_corners=False)
    else:
        inputs = target[:, :3]
    # The same colour for input and target: the network reproduces colour, it does not invent it.
    both = _apply_color(torch.cat([inputs, target[:, :3]], dim=0), color.repeat(2, 1))  # (2B, 3, R, R)
    return Augmented(
        inputs=both[:b],
        target=both[b:],
        target_mask=target[:, 3:],
        landmarks=transform_landmarks(landmarks, theta, size),
    )


def augment_kernel(compile_: bool):
    """The pixel work of `apply`, compiled when training compiles (None = eager). About twenty small
    kernels per side and step fuse into a few, which matters for small faces at high step rates. Always
    the default compile mode: CUDA-graph replays would overwrite one micro-batch's faces with the next's."""
    return torch.compile(apply_on_device, dynamic=False) if compile_ else None


def augment(
    images: torch.Tensor,
    masks: torch.Tensor,
    landmarks: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator,
    step: int = 0,
    kernel=None,
) -> Augmented:
    """Draw parameters for this step (DFL's "warp first, then no warp" by step) and apply them."""
    return apply(images, masks, landmarks, step_params(cfg, images.shape[0], generator, step), kernel)


def step_params(cfg: AugmentConfig, batch: int, generator: torch.Generator, step: int = 0) -> AugmentParams:
    """The parameters `augment` draws at `step`: warp and affine on until their `*_until_step`."""
    warp = cfg.warp_until_step <= 0 or step < cfg.warp_until_step
    affine = cfg.affine_until_step <= 0 or step < cfg.affine_until_step
    return sample_params(cfg, batch, generator, warp=warp, affine=affine)


def no_augment(images: torch.Tensor, masks: torch.Tensor, landmarks: torch.Tensor) -> Augmented:
    """Validation and previews: the faces as they are."""
    x = images.float() / 255
    return Augmented(inputs=x, target=x, target_mask=masks.float() / 255, landmarks=landmarks.float())
