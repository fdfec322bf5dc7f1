"""Loss properties on CPU: zero on identical inputs, bounds, masking, no NaN in bf16."""

from __future__ import annotations

import pytest
import torch

from deepfake.config import LossConfig
from deepfake.faces.align import canonical_points
from deepfake.losses import (
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


@pytest.mark.parametrize("res", [64, 256])
def test_losses_inside_bf16_autocast_equal_fp32(res):
    """The train step computes its losses inside the bf16 autocast region. Autocast runs convolutions
    in bf16, and SSIM's blur is one: its variances (e_aa - mu_a**2) would lose every significant bit.
    The losses must give the fp32 value and gradient there, not merely a finite one."""
    target = images(1, 2, res)
    noise = 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 1, res, res)
    lm = face_landmarks(2, res)

    def run(amp: bool):
        pred = (target + noise).clamp(0, 1).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
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
