"""The torch augmentation matches an independent NumPy reference (tests/augment_reference.py).

Same seed -> `sample_params` -> the same parameters go to torch `apply` (on CPU, and on CUDA where
there is one) and to the float64 reference; inputs, target, mask and landmarks must agree. This runs
in CI without a GPU, so the "augmentation on device matches a CPU reference" promise is checked on
every push, and on a GPU box the CUDA case checks the device against the same maths.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from augment_reference import affine_source, augment_reference
from deepfake.train.augment import Augmented, apply, sample_params
from deepfake.config import AugmentConfig

B, R = 6, 64
# Measured on CPU: <= 1.6e-5 on pixels and <= 1e-5 px on landmarks (float32 rounding against float64).
# 1e-4 leaves room for other kernels (CUDA's FMA contractions) yet is 50x below a half-pixel mistake.
PIXEL_ATOL = 1e-4
LANDMARK_ATOL = 1e-4  # pixels

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]

# Large rotation, zoom-out and shift: many output pixels read outside the image (border clamping), and
# a strong warp pushes the warped grid further out.
WILD = dataclasses.replace(AugmentConfig(), rotation=60, scale=0.5, shift=0.3, warp_strength=0.2)


def random_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (B, 3, R, R), generator=g, dtype=torch.uint8)
    masks = torch.randint(0, 256, (B, 1, R, R), generator=g, dtype=torch.uint8)
    landmarks = torch.rand(B, 68, 2, generator=g) * R  # (B, 68, 2) px
    return images, masks, landmarks


def run_both(images, masks, landmarks, params, device):
    out = apply(images.to(device), masks.to(device), landmarks.to(device), params)
    ref = augment_reference(
        images.numpy(),
        masks.numpy(),
        landmarks.numpy(),
        params.theta.numpy(),
        None if params.warp is None else params.warp.numpy(),
        params.color.numpy(),
    )
    return out, ref


def max_errors(out: Augmented, ref: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.abs(getattr(out, k).detach().cpu().double().numpy() - v).max()) for k, v in ref.items()}


def assert_matches(out: Augmented, ref: dict[str, np.ndarray]) -> None:
    err = max_errors(out, ref)
    for key in ("inputs", "target", "target_mask"):
        assert err[key] <= PIXEL_ATOL, f"{key}: max abs difference {err[key]:.2e} (all: {err})"
    assert err["landmarks"] <= LANDMARK_ATOL, f"landmarks: max abs difference {err['landmarks']:.2e} px"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "case",
    [
        pytest.param((AugmentConfig(), True), id="default"),
        pytest.param((AugmentConfig(), False), id="warp-off"),
        pytest.param((WILD, True), id="wild-affine-border"),
    ],
)
def test_apply_matches_the_numpy_reference(case, device, one_torch_thread):
    cfg, warp = case
    images, masks, landmarks = random_batch()
    params = sample_params(cfg, B, torch.Generator().manual_seed(2), warp=warp)
    assert (params.warp is not None) == warp
    # The case exercises what it claims: flips both ways, a real colour change, and for the wild
    # case many reads outside the image, so border clamping decides those pixels.
    flipped = params.theta[:, 0, 0] * params.theta[:, 1, 1] - params.theta[:, 0, 1] * params.theta[:, 1, 0] < 0
    assert flipped.any() and (~flipped).any()
    assert (params.color[:, 3].abs() > 1e-3).all()
    outside = (np.abs(affine_source(params.theta.numpy().astype(np.float64), R)) > 1).any(-1).mean()
    if cfg is WILD:
        assert outside > 0.1  # measured 0.25 for this seed

    out, ref = run_both(images, masks, landmarks, params, device)
    assert out.inputs.device.type == device
    assert_matches(out, ref)
    if not warp:
        assert torch.equal(out.inputs, out.target)
    else:
        assert (out.inputs - out.target).abs().mean() > 0.01  # the warp did move the input


def test_the_comparison_catches_small_mistakes(one_torch_thread):
    """The tolerance is tight enough to catch a flipped hue sign or a half-pixel shift."""
    images, masks, landmarks = random_batch()
    params = sample_params(AugmentConfig(), B, torch.Generator().manual_seed(1))
    out, _ = run_both(images, masks, landmarks, params, "cpu")

    def errors_with(theta, color):
        ref = augment_reference(images.numpy(), masks.numpy(), landmarks.numpy(), theta, params.warp.numpy(), color)
        return max_errors(out, ref)

    theta, color = params.theta.numpy().astype(np.float64), params.color.numpy().astype(np.float64)
    wrong_hue = color.copy()
    wrong_hue[:, 3] *= -1
    assert errors_with(theta, wrong_hue)["target"] > 50 * PIXEL_ATOL
    half_pixel = theta.copy()
    half_pixel[:, :, 2] += 1 / R  # half a pixel in normalised units (the image spans 2)
    err = errors_with(half_pixel, color)
    assert err["target"] > 50 * PIXEL_ATOL and err["target_mask"] > 50 * PIXEL_ATOL
    assert err["landmarks"] > 50 * LANDMARK_ATOL
    no_warp = augment_reference(images.numpy(), masks.numpy(), landmarks.numpy(), theta, None, color)
    assert max_errors(out, no_warp)["inputs"] > 50 * PIXEL_ATOL


@pytest.mark.parametrize("device", DEVICES)
def test_real_faces_match_the_reference(faceset_a, tmp_path_factory, device, one_torch_thread):
    """Aligned faces, hull masks and landmarks of a real person (d6.mp4), default augmentation."""
    from deepfake.faceset.cache import FaceCache

    cache = FaceCache.from_faceset(faceset_a, R, cache_dir=tmp_path_factory.mktemp("augref-cache"), progress=False)
    assert len(cache) >= B
    rows = torch.linspace(0, len(cache) - 1, B).round().long()  # spread over the clip
    images, masks, landmarks = cache.images[rows], cache.masks[rows], cache.landmarks[rows].float()
    assert masks.float().mean() > 20  # a real face mask, not an empty one
    params = sample_params(AugmentConfig(), B, torch.Generator().manual_seed(4))
    out, ref = run_both(images, masks, landmarks, params, device)
    assert_matches(out, ref)
