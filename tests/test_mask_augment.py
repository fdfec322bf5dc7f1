"""The segmenter's device augmentation and the network: shapes, ranges, determinism, occluders cut out
of the target, JPEG artefacts against libjpeg, and the U-Net's shapes."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from conftest import media_path
from deepfake.segment.augment import apply, augment, gaussian_blur, sample_params
from deepfake.config import MaskAugmentConfig, MaskTrainConfig, SegmenterConfig
from deepfake.segment.checks import validate
from deepfake.segment.jpeg import jpeg_like
from deepfake.models.segmenter import Segmenter, fused_for_inference, level_channels
from deepfake.errors import DeepfakeError

R = 64


def _batch(b: int = 6):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(b, 3, R, R, generator=g) * 255).to(torch.uint8)
    hulls = torch.zeros(b, 1, R, R, dtype=torch.uint8)
    hulls[:, :, 12:56, 16:48] = 255
    return images, hulls


def test_augment_shapes_ranges_and_determinism():
    images, hulls = _batch()
    cfg = MaskAugmentConfig(occluders=1.0, background=1.0, blur=0.5, jpeg=0.5)
    a = augment(images, hulls, hulls, cfg, torch.Generator().manual_seed(3))
    b = augment(images, hulls, hulls, cfg, torch.Generator().manual_seed(3))
    assert a.images.shape == (6, 3, R, R) and a.targets.shape == a.occluders.shape == (6, 1, R, R)
    for t in (a.images, a.targets, a.occluders):
        assert t.dtype == torch.float32 and torch.isfinite(t).all() and t.min() >= 0 and t.max() <= 1
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
    assert (a.occluders.flatten(1).amax(1) > 0.5).all()  # occluders=1: every face gets one


def test_occluders_are_cut_out_of_the_target():
    images, hulls = _batch()
    cfg = MaskAugmentConfig(occluders=1.0, max_occluders=3, occluder_size=(0.3, 0.6))
    out = augment(images, hulls, hulls, cfg, torch.Generator().manual_seed(1))
    assert (out.targets <= 1 - out.occluders + 1e-5).all()
    covered = (out.occluders > 0.5) & (out.targets.new_ones(out.targets.shape) > 0)
    assert covered.sum() > 0 and (out.targets[covered] < 0.5).all()
    # Without occluders, background or affine, the target is the hull as it came.
    plain = MaskAugmentConfig(rotation=0, scale=0, shift=0, flip=False, background=0, occluders=0, blur=0, jpeg=0, color=0)
    clean = augment(images, hulls, hulls, plain, torch.Generator().manual_seed(1))
    torch.testing.assert_close(clean.targets, hulls.float() / 255)
    assert clean.occluders.max() == 0
    torch.testing.assert_close(clean.images, images.float() / 255, atol=1e-5, rtol=0)


def test_draws_do_not_depend_on_the_probabilities():
    """Resuming replays the generator: the same draws whatever the config's probabilities."""
    states = []
    for p in (0.0, 1.0):
        g = torch.Generator().manual_seed(5)
        sample_params(MaskAugmentConfig(occluders=p, background=p, blur=p, jpeg=p), 8, g)
        states.append(g.get_state())
    assert torch.equal(*states)


def test_background_is_pasted_only_outside_the_hull():
    images, hulls = _batch()
    cfg = MaskAugmentConfig(rotation=0, scale=0, shift=0, flip=False, background=1.0, occluders=0, blur=0, jpeg=0, color=0)
    out = augment(images, hulls, hulls, cfg, torch.Generator().manual_seed(2))
    inside = (hulls > 0).expand(-1, 3, -1, -1)
    torch.testing.assert_close(out.images[inside], images.float()[inside] / 255, atol=1e-5, rtol=0)
    assert (out.images[:, :, :4, :4] - images.float()[:, :, :4, :4] / 255).abs().max() > 0.1  # corners replaced


def test_blur_sigma_zero_is_identity_and_blur_smooths():
    images, _ = _batch(2)
    x = images.float() / 255
    y = gaussian_blur(x, torch.tensor([0.0, 1.5]), 3)
    torch.testing.assert_close(y[0], x[0], atol=1e-5, rtol=0)
    assert y[1].std() < 0.6 * x[1].std()


def test_jpeg_approximation_matches_libjpeg():
    img = cv2.cvtColor(cv2.imread(str(media_path("d9.jpg"))), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ref_img = img.astype(np.float32) / 255

    def psnr(a, b):
        return 10 * np.log10(1 / np.mean((a - b) ** 2))

    for q in (20, 75):
        ours = jpeg_like(x, torch.tensor([float(q)]))[0].permute(1, 2, 0).numpy()
        _, enc = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
        lib = cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        assert abs(psnr(ours, ref_img) - psnr(lib, ref_img)) < 1.0  # the same loss as libjpeg
        assert psnr(ours, lib) > 38  # and close to libjpeg's own output
    assert psnr(jpeg_like(x, torch.tensor([20.0]))[0].permute(1, 2, 0).numpy(), ref_img) < 35  # and visibly lossy


def test_apply_runs_on_other_sizes_and_batch_one():
    images, hulls = _batch(1)
    p = sample_params(MaskAugmentConfig(occluders=1.0, jpeg=1.0), 1, torch.Generator().manual_seed(0))
    out = apply(images, hulls, hulls, p)
    assert out.images.shape == (1, 3, R, R) and torch.isfinite(out.images).all()


def test_segmenter_shapes_width_depth_and_fusion():
    small, wide = SegmenterConfig(base_channels=4, max_channels=16, depth=3), SegmenterConfig(base_channels=8, max_channels=32, depth=4)
    assert level_channels(small) == [4, 8, 16, 16] and level_channels(wide) == [8, 16, 32, 32, 32]
    n = [sum(p.numel() for p in Segmenter(c).parameters()) for c in (small, wide)]
    assert n[0] < n[1]
    torch.manual_seed(0)
    net = Segmenter(small)
    x = torch.rand(2, 3, 128, 128)
    net.train()
    net(x)  # moves the batch-norm statistics off their initial values
    logits = net.eval()(x)
    assert logits.shape == (2, 1, 128, 128) and torch.isfinite(logits).all()
    torch.testing.assert_close(fused_for_inference(net)(x), logits, atol=1e-4, rtol=1e-4)


def test_config_validation_is_one_line():
    validate(MaskTrainConfig())
    for bad in (replace(MaskTrainConfig(), region="head"),
                replace(MaskTrainConfig(), model=SegmenterConfig(resolution=100)),
                replace(MaskTrainConfig(), augment=MaskAugmentConfig(jpeg=1.5)),
                replace(MaskTrainConfig(), model=SegmenterConfig(norm="layer"))):
        with pytest.raises(DeepfakeError) as e:
            validate(bad)
        assert "\n" not in str(e.value)
