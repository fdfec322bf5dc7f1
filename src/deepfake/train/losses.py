"""Losses: pure functions of tensors. No modules, no optimizers, no state.

Images are float (B, C, H, W) in [0, 1]; masks (B, 1, H, W) in [0, 1]. Every function computes in
float32 whatever the input dtype, also inside a bf16 autocast region and on a GPU that allows TF32
(SSIM's blur is elementwise float32 arithmetic), so reduced precision cannot push SSIM's small
differences of large numbers into noise or NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from deepfake.config import LossConfig

# 68-point landmark ranges (iBUG): eyes 36-41 and 42-47, outer lips 48-59.
EYE_MOUTH_REGIONS = ((36, 42), (42, 48), (48, 60))


# ----------------------------------------------------------------------------------------------------
# Structural similarity.


def _gaussian_weights(size: int, sigma: float) -> tuple[float, ...]:
    """Normalised 1-D Gaussian taps, as Python floats (compile-time constants for torch.compile)."""
    taps = [math.exp(-((i - (size - 1) / 2) ** 2) / (2 * sigma**2)) for i in range(size)]
    total = sum(taps)
    return tuple(t / total for t in taps)


def _taps_valid(x: torch.Tensor, weights: tuple[float, ...], dim: int) -> torch.Tensor:
    """'Valid' correlation of x with `weights` along `dim`: a sum of shifted slices (float32 multiply-adds)."""
    n = x.shape[dim] - len(weights) + 1
    out = x.narrow(dim, 0, n) * weights[0]
    for i, w in enumerate(weights[1:], start=1):
        # Out of place: torch 2.11's compiler gets the gradient wrong with an in-place add here.
        out = torch.add(out, x.narrow(dim, i, n), alpha=w)
    return out


def _taps_full(g: torch.Tensor, weights: tuple[float, ...], dim: int) -> torch.Tensor:
    """The adjoint of `_taps_valid`: 'full' convolution, the gradient spread back over the input."""
    k = len(weights)
    pad = [0, 0] * (g.dim() - 1 - dim % g.dim()) + [k - 1, k - 1]  # F.pad counts dims from the last
    return _taps_valid(F.pad(g, pad), weights[::-1], dim)


class _SeparableBlur(torch.autograd.Function):
    """Separable Gaussian blur, 'valid' borders, in plain float32 multiply-adds.

    Not a convolution on purpose. SSIM's variances are small differences of large moments
    (e_aa - mu_a**2), and a convolution may run at reduced precision: bf16 inside autocast, or TF32,
    which cuDNN uses for float32 convolutions by default (channels_last inputs go to cuDNN; inductor
    may choose that layout). Simulated on real 256 px faces (the blur's inputs rounded as TF32 or bf16
    would round them) against float64: TF32 puts DSSIM 2.5-11 % off, bf16 up to 60x. Elementwise
    arithmetic has no such mode.
    """

    @staticmethod
    def forward(x: torch.Tensor, wx: tuple[float, ...], wy: tuple[float, ...]) -> torch.Tensor:
        return _taps_valid(_taps_valid(x, wx, -1), wy, -2)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, wx, wy = inputs
        ctx.weights = (wx, wy)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        wx, wy = ctx.weights
        return _taps_full(_taps_full(grad, wy, -2), wx, -1), None, None


def ssim_map(a: torch.Tensor, b: torch.Tensor, kernel: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM over a Gaussian window, 'valid' borders: (B, C, H-k+1, W-k+1), values in [-1, 1].

    Always float32, also inside a bf16 autocast region and on a GPU that allows TF32: the blur is
    elementwise float32 arithmetic (`_SeparableBlur`), never a reduced-precision convolution.

    Under autograd the map is recomputed in the backward pass instead of keeping its intermediates
    (five float32 moments and their blurs per channel: several times the image per scale); the blur is
    cheap next to the networks, and the values and gradients are the same.
    """
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return checkpoint(_ssim_map, a, b, kernel, sigma, use_reentrant=False, preserve_rng_state=False)
    return _ssim_map(a, b, kernel, sigma)


def _ssim_map(a: torch.Tensor, b: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    a, b = a.float(), b.float()
    c = a.shape[1]
    g = _gaussian_weights(kernel, sigma)
    # The five local means in one separable blur over all moments at once.
    moments = torch.cat([a, b, a * a, b * b, a * b], dim=1)  # (B, 5C, H, W)
    with torch.autocast(a.device.type, enabled=False):
        blurred = _SeparableBlur.apply(moments, g, g)  # (B, 5C, H-k+1, W-k+1)
    mu_a, mu_b, e_aa, e_bb, e_ab = blurred.split(c, dim=1)

    c1, c2 = 0.01**2, 0.03**2  # for a dynamic range of 1
    var_a = e_aa - mu_a**2
    var_b = e_bb - mu_b**2
    cov = e_ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return num / den


def dssim_kernels(resolution: int) -> list[int]:
    """DFL's window sizes: resolution / 11.6, plus resolution / 23.2 from 256 px (two scales)."""
    sizes = [resolution / 11.6] + ([resolution / 23.2] if resolution >= 256 else [])
    return [max(3, int(s) | 1) for s in sizes]  # odd, at least 3


def dssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Structural dissimilarity (1 - SSIM) / 2 in [0, 1], averaged over the scales for this resolution.

    With a mask, both images are multiplied by it first, so the background does not count.
    """
    if mask is not None:
        pred, target = pred.float() * mask, target.float() * mask
    kernels = dssim_kernels(pred.shape[-1])
    total = sum(((1 - ssim_map(pred, target, k, sigma=1.5 * k / 11)) / 2).mean() for k in kernels)
    return total / len(kernels)


# ----------------------------------------------------------------------------------------------------
# Pixel losses.


def _weighted_mean(err: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return err.mean()
    w = weight.float().expand_as(err)  # (B, C, H, W)
    # Normalise per face, then average faces: every face counts the same whatever its mask area, and the
    # mean over a batch equals the mean of its shards' means, so data-parallel ranks add up exactly.
    per_face = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-8)  # (B,)
    return per_face.mean()


def masked_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |pred - target| weighted by `weight` (B, 1, H, W); in [0, 1] for images in [0, 1]."""
    return _weighted_mean((pred.float() - target.float()).abs(), weight)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean (pred - target)^2 weighted by `weight` (B, 1, H, W); in [0, 1] for images in [0, 1]."""
    return _weighted_mean((pred.float() - target.float()) ** 2, weight)


def mask_loss(pred_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """MSE between the learned mask and the face-hull mask, in [0, 1]."""
    return F.mse_loss(pred_mask.float(), target_mask.float())


def eye_mouth_weights(landmarks: torch.Tensor, size: int, weight: float) -> torch.Tensor:
    """(B, 1, size, size) map: `weight` inside the eyes and the mouth, 1 elsewhere.

    Each region is the ellipse around its landmarks' bounding box (grown by 30 %), rasterised on the
    device: cheaper than polygon filling and close enough for a loss weight. landmarks: (B, 68, 2) px.
    """
    b, device = landmarks.shape[0], landmarks.device
    if weight == 1:
        return torch.ones(b, 1, size, size, device=device)
    # The three regions at once (a few kernels, not a dozen per region): landmarks 36-59, each row tagged
    # with its region; rows of other regions are masked out of the min and max.
    first, last = EYE_MOUTH_REGIONS[0][0], EYE_MOUTH_REGIONS[-1][1]
    pts = landmarks[:, first:last].float().unsqueeze(1)  # (B, 1, n, 2)
    row = torch.arange(first, last, device=device)  # (n,) landmark numbers
    # The regions are consecutive, so a row's region is the number of region ends at or below it. Built on
    # the device from Python scalars: no host-to-device copy in the training step.
    region = sum((row >= hi).long() for _, hi in EYE_MOUTH_REGIONS[:-1])  # (n,)
    which = torch.arange(len(EYE_MOUTH_REGIONS), device=device)  # (3,)
    member = (region.view(1, 1, -1, 1) == which.view(1, -1, 1, 1))  # (1, 3, n, 1)
    top = torch.where(member, pts, float("inf")).amin(dim=2)  # (B, 3, 2)
    bottom = torch.where(member, pts, float("-inf")).amax(dim=2)  # (B, 3, 2)
    centre = (top + bottom) / 2  # (B, 3, 2)
    axes = ((bottom - top) / 2 * 1.3 + 1.5).clamp_min(1.0)  # (B, 3, 2) px; +1.5 px keeps shut eyes visible
    coords = torch.arange(size, device=device, dtype=torch.float32)
    dx = (coords.view(1, 1, 1, size) - centre[..., 0, None, None]) / axes[..., 0, None, None]  # (B, 3, 1, S)
    dy = (coords.view(1, 1, size, 1) - centre[..., 1, None, None]) / axes[..., 1, None, None]  # (B, 3, S, 1)
    out = (dx**2 + dy**2 <= 1).any(dim=1).float()  # (B, S, S): inside any region
    return (1 + (weight - 1) * out).unsqueeze(1)  # (B, 1, S, S)


def per_face_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean absolute error inside each face's mask: how hard each face is, for hard-sample mining."""
    m = mask.float()
    err = (pred.float() - target.float()).abs() * m  # (B, 3, R, R)
    return err.sum((1, 2, 3)) / (m.sum((1, 2, 3)) * pred.shape[1]).clamp_min(1.0)  # (B,)


def eye_mouth_l1(pred: torch.Tensor, target: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the eye and mouth regions, averaged over the whole image as DFL's eye and
    mouth priority does (so its weight reads like DFL's 300)."""
    region = eye_mouth_weights(landmarks, pred.shape[-1], 2.0) - 1  # (B, 1, R, R): 1 inside, 0 outside
    return ((pred.float() - target.float()).abs() * region).mean()


def reconstruction_loss(
    pred: torch.Tensor,
    pred_mask: torch.Tensor,
    target: torch.Tensor,
    target_mask: torch.Tensor,
    landmarks: torch.Tensor | None,
    cfg: LossConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The autoencoder's loss for one side: weighted DSSIM + L1 + MSE inside the mask, plus the mask loss.

    Returns (total, terms) where terms are detached scalars for logging.
    """
    weight = target_mask.float()  # (B, 1, H, W)
    if landmarks is not None and cfg.eye_mouth_weight != 1:
        weight = weight * eye_mouth_weights(landmarks, pred.shape[-1], cfg.eye_mouth_weight)
    terms: dict[str, torch.Tensor] = {}
    total = pred.new_zeros((), dtype=torch.float32)
    if cfg.dssim_weight:
        terms["dssim"] = dssim(pred, target, target_mask.float())
        total = total + cfg.dssim_weight * terms["dssim"]
    if cfg.l1_weight:
        terms["l1"] = masked_l1(pred, target, weight)
        total = total + cfg.l1_weight * terms["l1"]
    if cfg.mse_weight:
        terms["mse"] = masked_mse(pred, target, weight)
        total = total + cfg.mse_weight * terms["mse"]
    if cfg.mask_weight:
        terms["mask"] = mask_loss(pred_mask, target_mask)
        total = total + cfg.mask_weight * terms["mask"]
    if cfg.eye_mouth_l1 and landmarks is not None:
        terms["eye_mouth"] = eye_mouth_l1(pred, target, landmarks)
        total = total + cfg.eye_mouth_l1 * terms["eye_mouth"]
    return total, {k: v.detach() for k, v in terms.items()}


# ----------------------------------------------------------------------------------------------------
# Adversarial.


def gan_g_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """Generator side: make D call the fakes real."""
    fake_logits = fake_logits.float()
    if kind == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown gan loss '{kind}' (nonsaturating | hinge)")


def gan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """Discriminator side: real -> high logits, fake -> low logits."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "nonsaturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    raise ValueError(f"unknown gan loss '{kind}' (nonsaturating | hinge)")


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1: squared gradient norm of D's output at real samples (`real` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def d_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of patches D gets right on real and on fake (device tensors; no host sync)."""
    return (real_logits > 0).float().mean(), (fake_logits < 0).float().mean()


