"""Loss properties on CPU: zero on identical inputs, bounds, masking, no NaN in bf16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepfake.config import LossConfig
from deepfake.faces.align import canonical_points
from deepfake.train.losses import (
    d_accuracy,
    dssim,
    dssim_kernels,
    eye_mouth_weights,
    gan_d_loss,
    gan_g_loss,
    mask_loss,
    masked_l1,
    masked_mse,
    r1_penalty,
    reconstruction_loss,
)


def images(seed=0, b=2, r=64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, r, r, generator=g)


def face_landmarks(b=2, r=64):
    pts = torch.as_tensor(canonical_points(r, 0.75), dtype=torch.float32)  # (68, 2)
    return pts.expand(b, 68, 2).clone()


def test_zero_on_identical_inputs():
    x, m = images(), (torch.rand(2, 1, 64, 64) > 0.3).float()
    assert float(dssim(x, x)) == pytest.approx(0, abs=1e-6)
    assert float(dssim(x, x, m)) == pytest.approx(0, abs=1e-6)
    assert float(masked_l1(x, x, m)) == 0
    assert float(masked_mse(x, x, m)) == 0
    assert float(mask_loss(m, m)) == 0
    total, terms = reconstruction_loss(x, m, x, m, face_landmarks(), LossConfig(l1_weight=1.0))
    assert float(total) == pytest.approx(0, abs=1e-5)
    assert set(terms) == {"dssim", "l1", "mse", "mask"}


def test_bounds_and_order():
    x, y = images(0), images(1)
    for r in (64, 256):
        a, b = images(0, 1, r), images(1, 1, r)
        assert 0 < float(dssim(a, b)) <= 1
    assert float(dssim(x, 1 - x)) > float(dssim(x, (x + y) / 2)) > 0  # further away scores worse
    assert 0 < float(masked_l1(x, y)) <= 1 and 0 < float(masked_mse(x, y)) <= 1
    assert float(masked_l1(torch.zeros_like(x), torch.ones_like(x))) == 1


def test_dssim_scales_follow_resolution():
    assert len(dssim_kernels(64)) == 1 and len(dssim_kernels(128)) == 1
    assert len(dssim_kernels(256)) == 2 and len(dssim_kernels(512)) == 2
    assert all(k % 2 == 1 and k >= 3 for r in (64, 256, 512) for k in dssim_kernels(r))


def test_mask_hides_the_background():
    x = images(0)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 16:48] = 1
    y = x.clone()
    y[:, :, :8] = 1 - y[:, :, :8]  # change only outside the mask
    assert float(masked_l1(x, y, mask)) == 0 and float(masked_mse(x, y, mask)) == 0
    assert float(dssim(x, y, mask)) == pytest.approx(0, abs=1e-6)
    assert float(masked_l1(x, y)) > 0


def test_eye_mouth_weights_sit_on_the_landmarks():
    lm = face_landmarks(1)
    w = eye_mouth_weights(lm, 64, 3.0)  # (1, 1, 64, 64)
    assert w.shape == (1, 1, 64, 64)
    for lo, hi in ((36, 42), (42, 48), (48, 60)):
        cx, cy = lm[0, lo:hi].mean(0).round().long().tolist()
        assert float(w[0, 0, cy, cx]) == 3.0
    assert float(w[0, 0, 0, 0]) == 1.0 and float(w[0, 0, 63, 63]) == 1.0
    assert 0.01 < float((w > 1).float().mean()) < 0.25  # regions, not the whole face
    assert torch.equal(eye_mouth_weights(lm, 64, 1.0), torch.ones(1, 1, 64, 64))


def test_eye_mouth_priority_weighs_errors_there_more():
    x, lm = images(0, 1), face_landmarks(1)
    cx, cy = lm[0, 36:42].mean(0).round().long().tolist()
    y_eye, y_cheek = x.clone(), x.clone()
    y_eye[..., cy, cx] += 0.5
    y_cheek[..., 50, 10] += 0.5
    w = eye_mouth_weights(lm, 64, 3.0)
    assert float(masked_mse(y_eye, x, w)) == pytest.approx(3 * float(masked_mse(y_cheek, x, w)), rel=1e-4)


def test_no_nan_in_bf16_even_on_flat_images():
    flat = torch.full((2, 3, 64, 64), 0.5, dtype=torch.bfloat16)  # zero variance: SSIM's NaN trap
    x = images().bfloat16()
    m = torch.ones(2, 1, 64, 64, dtype=torch.bfloat16)
    for a, b in ((flat, flat), (flat, x), (x, 1 - x)):
        assert torch.isfinite(dssim(a, b, m))
        total, _ = reconstruction_loss(a, m, b, m, face_landmarks(), LossConfig(l1_weight=1.0))
        assert torch.isfinite(total) and total.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.nn.Conv2d(3, 1, 3)(x.float())
        assert torch.isfinite(gan_g_loss(logits)) and torch.isfinite(gan_d_loss(logits, -logits, "hinge"))


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def ssim_float64(a: torch.Tensor, b: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """SSIM written from its definition, in float64 on the CPU, with a 2-D Gaussian window."""
    a, b = a.double().cpu(), b.double().cpu()
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    w = torch.outer(g, g) / g.sum() ** 2  # (k, k)
    c = a.shape[1]

    def mean(t):
        return F.conv2d(t, w.expand(c, 1, k, k), groups=c)

    mu_a, mu_b = mean(a), mean(b)
    var_a, var_b, cov = mean(a * a) - mu_a**2, mean(b * b) - mu_b**2, mean(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def smooth_faces(b=2, r=256, seed=0):
    """Face-like images: smooth shading plus a little texture, and a dark masked-out background, where
    the local variances are tiny next to the squared means (what makes SSIM sensitive to precision)."""
    g = torch.Generator().manual_seed(seed)
    low = F.interpolate(torch.rand(b, 3, 6, 6, generator=g), size=(r, r), mode="bicubic", align_corners=False)
    img = (0.25 + 0.6 * low + 0.01 * torch.rand(b, 3, r, r, generator=g)).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    return img * ((xx**2 / 0.5 + yy**2 / 0.8) < 1).float()  # (B, 3, R, R), an oval "face"


@pytest.mark.parametrize("device", DEVICES)
def test_ssim_matches_a_float64_reference_even_under_autocast(device):
    """On the CPU and on a GPU (where cuDNN would run a float32 convolution in TF32), inside bf16
    autocast: SSIM of near-identical faces within 1e-3 of float64 everywhere, DSSIM within 1e-4 relative."""
    from deepfake.train.losses import ssim_map

    target = smooth_faces()
    pred = (target + 0.02 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    for k in dssim_kernels(256):
        sigma = 1.5 * k / 11
        ref = ssim_float64(pred, target, k, sigma)
        p = pred.clone().to(device).requires_grad_(True)  # the training path (recomputed in backward)
        with torch.autocast(device, dtype=torch.bfloat16):
            ours = ssim_map(p, target.to(device), k, sigma)
        assert ours.dtype == torch.float32 and ours.shape == ref.shape
        ours = ours.detach().double().cpu()
        assert float((ours - ref).abs().max()) < 1e-3, f"k={k}"
        d_ours, d_ref = float((1 - ours).mean() / 2), float((1 - ref).mean() / 2)
        assert d_ours == pytest.approx(d_ref, rel=1e-4), f"k={k}"


def test_separable_blur_gradient():
    from deepfake.train.losses import _gaussian_weights, _SeparableBlur

    w = _gaussian_weights(5, 1.0)
    assert sum(w) == pytest.approx(1) and w == w[::-1]
    x = torch.rand(1, 2, 12, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _SeparableBlur.apply(t, w, w), (x,))
    uneven = (0.1, 0.6, 0.3)  # the adjoint must flip the taps, which a symmetric Gaussian hides
    assert torch.autograd.gradcheck(lambda t: _SeparableBlur.apply(t, uneven, (0.5, 0.5)), (x,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("res", [64, 256])
def test_losses_inside_bf16_autocast_equal_fp32(res, device):
    """The train step computes its losses inside the bf16 autocast region. Autocast runs convolutions
    in bf16, and SSIM's blur was one: its variances (e_aa - mu_a**2) lost every significant bit.
    The losses must give the fp32 value and gradient there, not merely a finite one."""
    target = images(1, 2, res).to(device)
    noise = 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(2)).to(device)
    mask = torch.ones(2, 1, res, res, device=device)
    lm = face_landmarks(2, res).to(device)

    def run(amp: bool):
        pred = (target + noise).clamp(0, 1).requires_grad_(True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            d = dssim(pred, target, mask)
            total, terms = reconstruction_loss(pred, mask, target, mask, lm, LossConfig())
        (d + total).backward()
        return d.detach(), total.detach(), terms, pred.grad

    d32, t32, terms32, g32 = run(False)
    d16, t16, terms16, g16 = run(True)
    assert d16.dtype == torch.float32 and t16.dtype == torch.float32
    assert float(d16) == pytest.approx(float(d32), rel=1e-5)
    assert float(t16) == pytest.approx(float(t32), rel=1e-5)
    assert float(terms16["dssim"]) == pytest.approx(float(terms32["dssim"]), rel=1e-5)
    cos = torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0)
    assert float(cos) > 0.9999


def test_gan_losses():
    big = torch.full((4, 1, 8, 8), 10.0)
    # A confident, correct D: near-zero loss; a fooled D: large loss.
    assert float(gan_d_loss(big, -big)) < 1e-3 < 10 < float(gan_d_loss(-big, big))
    assert float(gan_d_loss(big, -big, "hinge")) == 0
    assert float(gan_g_loss(big)) < 1e-3 and float(gan_g_loss(-big)) > 9
    assert float(gan_g_loss(big, "hinge")) == -10
    acc_real, acc_fake = d_accuracy(big, -big)
    assert float(acc_real) == 1 and float(acc_fake) == 1
    with pytest.raises(ValueError):
        gan_g_loss(big, "wasserstein")


def test_r1_penalty_matches_the_analytic_gradient():
    real = images(0, 2, 8).requires_grad_(True)
    w = torch.randn(3, 8, 8)
    logits = (real * w).sum(dim=(1, 2, 3))  # a linear D: gradient is w for every sample
    assert float(r1_penalty(logits, real)) == pytest.approx(float(w.square().sum()), rel=1e-5)
