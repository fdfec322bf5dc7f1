"""Batched augmentation: identity when off, landmarks follow the pixels, deterministic by seed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from deepfake.train.augment import apply, augment, no_augment, sample_params
from deepfake.config import AugmentConfig


def batch(b=4, r=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (b, 3, r, r), generator=g, dtype=torch.uint8)
    masks = (torch.rand(b, 1, r, r, generator=g) > 0.5).to(torch.uint8) * 255
    landmarks = torch.rand(b, 68, 2, generator=g) * (r * 0.6) + r * 0.2
    return images, masks, landmarks


def test_everything_off_is_the_identity():
    images, masks, lm = batch()
    p = sample_params(AugmentConfig(), 4, torch.Generator().manual_seed(0), warp=False, affine=False)
    out = apply(images, masks, lm, p)
    torch.testing.assert_close(out.target, images.float() / 255, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.inputs, out.target)
    torch.testing.assert_close(out.target_mask, masks.float() / 255, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.landmarks, lm, atol=1e-4, rtol=0)


def test_flip_only_mirrors_image_and_landmarks():
    images, masks, lm = batch()
    cfg = dataclasses.replace(AugmentConfig(), rotation=0, scale=0, shift=0, brightness=0, contrast=0, saturation=0, hue=0)
    p = sample_params(cfg, 4, torch.Generator().manual_seed(3), warp=False)
    flipped = p.theta[:, 0, 0] < 0
    assert flipped.any() and (~flipped).any()
    out = apply(images, masks, lm, p)
    expect = torch.where(flipped.view(4, 1, 1, 1), images.flip(-1), images).float() / 255
    torch.testing.assert_close(out.target, expect, atol=1e-5, rtol=0)
    expect_x = torch.where(flipped.view(4, 1), 63 - lm[..., 0], lm[..., 0])
    torch.testing.assert_close(out.landmarks[..., 0], expect_x, atol=1e-4, rtol=0)


def test_landmarks_follow_the_pixels_under_a_random_affine():
    r = 64
    images = torch.zeros(4, 3, r, r, dtype=torch.uint8)
    lm = torch.full((4, 68, 2), 0.0)
    spots = torch.tensor([[20, 30], [40, 25], [33, 44], [28, 36]])
    for i, (x, y) in enumerate(spots.tolist()):
        images[i, :, y - 1 : y + 2, x - 1 : x + 2] = 255  # a 3x3 bright spot
        lm[i, :] = torch.tensor([x, y], dtype=torch.float32)
    cfg = dataclasses.replace(AugmentConfig(), rotation=20, scale=0.1, shift=0.05, brightness=0, contrast=0, saturation=0, hue=0)
    out = apply(images, torch.zeros(4, 1, r, r, dtype=torch.uint8), lm, sample_params(cfg, 4, torch.Generator().manual_seed(1), warp=False))
    for i in range(4):
        heat = out.target[i, 0]
        ys, xs = torch.meshgrid(torch.arange(r).float(), torch.arange(r).float(), indexing="ij")
        centre = torch.stack([(heat * xs).sum(), (heat * ys).sum()]) / heat.sum()
        assert torch.dist(centre, out.landmarks[i, 0]) < 0.75  # sub-pixel agreement


def test_warp_changes_the_input_but_not_the_target():
    images, masks, lm = batch()
    cfg = AugmentConfig()
    with_warp = augment(images, masks, lm, cfg, torch.Generator().manual_seed(5))
    no_warp = augment(images, masks, lm, dataclasses.replace(cfg, warp=False), torch.Generator().manual_seed(5))
    torch.testing.assert_close(with_warp.target, no_warp.target)
    assert (with_warp.inputs - no_warp.inputs).abs().mean() > 0.01
    assert torch.equal(no_warp.inputs, no_warp.target)


def test_deterministic_by_seed_and_the_stream_does_not_depend_on_the_phase():
    images, masks, lm = batch()
    cfg = dataclasses.replace(AugmentConfig(), warp_until_step=10)
    a = augment(images, masks, lm, cfg, torch.Generator().manual_seed(7), step=0)
    b = augment(images, masks, lm, cfg, torch.Generator().manual_seed(7), step=0)
    c = augment(images, masks, lm, cfg, torch.Generator().manual_seed(8), step=0)
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    augment(images, masks, lm, cfg, g1, step=0)  # warp phase
    late = augment(images, masks, lm, cfg, g2, step=10)  # after warp_until_step: no warp
    assert torch.equal(g1.get_state(), g2.get_state())  # same number of draws either way
    assert torch.equal(late.inputs, late.target)


def test_colour_jitter_keeps_range_and_is_shared_by_input_and_target():
    images, masks, lm = batch()
    cfg = dataclasses.replace(AugmentConfig(), warp=False, rotation=0, scale=0, shift=0, flip=False, brightness=0.5, hue=0.1)
    out = augment(images, masks, lm, cfg, torch.Generator().manual_seed(2))
    assert float(out.target.min()) >= 0 and float(out.target.max()) <= 1
    assert torch.equal(out.inputs, out.target)
    assert (out.target - images.float() / 255).abs().mean() > 0.01


def test_no_augment():
    images, masks, lm = batch()
    out = no_augment(images, masks, lm)
    assert torch.equal(out.inputs, images.float() / 255) and torch.equal(out.landmarks, lm)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to compare against the CPU")
def test_device_matches_cpu_reference():
    images, masks, lm = batch(8)
    cfg = AugmentConfig()
    cpu = augment(images, masks, lm, cfg, torch.Generator().manual_seed(11))
    gpu = augment(images.cuda(), masks.cuda(), lm.cuda(), cfg, torch.Generator().manual_seed(11))
    torch.testing.assert_close(gpu.inputs.cpu(), cpu.inputs, atol=2e-3, rtol=0)
    torch.testing.assert_close(gpu.target.cpu(), cpu.target, atol=2e-3, rtol=0)
    torch.testing.assert_close(gpu.landmarks.cpu(), cpu.landmarks, atol=1e-3, rtol=0)


def test_parameters_follow_the_config_ranges():
    """Each drawn transform stays inside the config's ranges and fills them, with a fair coin for the
    flip; affine off is the identity and flip off never mirrors."""
    cfg = dataclasses.replace(AugmentConfig(), rotation=30, scale=0.2, shift=0.1, hue=0.05)
    b = 2048
    p = sample_params(cfg, b, torch.Generator().manual_seed(9))
    assert p.theta.dtype == p.color.dtype == torch.float32 and p.theta.shape == (b, 2, 3)
    t = p.theta.double()
    scale = 1 / torch.hypot(t[:, 1, 0], t[:, 1, 1])  # the second row is (sin, cos) / scale
    angle = torch.atan2(t[:, 1, 0], t[:, 1, 1])
    mirrored = torch.linalg.det(t[:, :, :2]) < 0
    limit = torch.pi * cfg.rotation / 180
    assert limit * 0.95 < float(angle.abs().max()) <= limit + 1e-6
    assert cfg.scale * 0.95 < float((scale - 1).abs().max()) <= cfg.scale + 1e-6
    assert float(t[:, :, 2].abs().max()) <= 2 * cfg.shift + 1e-6
    assert 0.45 < float(mirrored.double().mean()) < 0.55
    c = p.color.double()
    for col, spread in enumerate([cfg.brightness, cfg.contrast, cfg.saturation]):
        assert spread * 0.95 < float((c[:, col] - 1).abs().max()) <= spread + 1e-6
    assert float(c[:, 3].abs().max()) <= 2 * torch.pi * cfg.hue + 1e-6
    assert float(p.warp.std()) == pytest.approx(cfg.warp_strength, rel=0.1)
    still = sample_params(cfg, 8, torch.Generator().manual_seed(9), affine=False)
    torch.testing.assert_close(still.theta, torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(8, 2, 3))
    torch.testing.assert_close(still.color, torch.tensor([1.0, 1, 1, 0]).expand(8, 4))
    unflipped = sample_params(dataclasses.replace(cfg, flip=False), b, torch.Generator().manual_seed(9))
    assert not bool((torch.linalg.det(unflipped.theta[:, :, :2]) < 0).any())
