"""Colour matching on real faces: every mode must move the face's mean colour towards the target's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import media_path
from deepfake.swap.color import COLOR_MODES, match_color


def _face_crop(name: str, size: int = 160) -> np.ndarray:
    """A float RGB crop around the face of a shared still (the faces sit near the image centre)."""
    bgr = cv2.imread(str(media_path(name)))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    side = min(h, w) // 2
    y0, x0 = h // 2 - side // 2 - h // 10, w // 2 - side // 2
    crop = rgb[y0 : y0 + side, x0 : x0 + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def faces():
    source = _face_crop("d9.jpg")
    target = _face_crop("d30.jpg")
    # Make the gap unmistakable: a warm cast on the source, a cool and darker target.
    source = np.clip(source * np.array([1.15, 0.95, 0.8], np.float32), 0, 1)
    target = np.clip(target * np.array([0.8, 0.9, 1.1], np.float32), 0, 1)
    mask = np.zeros(source.shape[:2], np.float32)
    cv2.ellipse(mask, (80, 85), (55, 70), 0, 0, 360, 1.0, -1)
    return source, target, mask


def _mean(img, mask):
    return img[mask > 0.5].mean(axis=0)


@pytest.mark.parametrize("mode", [m for m in COLOR_MODES if m != "none"])
def test_every_mode_moves_mean_colour_towards_target(faces, mode):
    source, target, mask = faces
    out = match_color(mode, source, target, mask)
    assert out.shape == source.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    before = np.linalg.norm(_mean(source, mask) - _mean(target, mask))
    after = np.linalg.norm(_mean(out, mask) - _mean(target, mask))
    assert before > 0.05  # the fixture really has a colour gap
    assert after < 0.35 * before, f"{mode}: mean colour gap {before:.4f} -> {after:.4f}"


def test_none_leaves_the_face_alone(faces):
    source, target, mask = faces
    np.testing.assert_array_equal(match_color("none", source, target, mask), source)


def test_rct_and_hist_match_spread_too(faces):
    source, target, mask = faces
    for mode in ("rct", "lct", "hist"):
        out = match_color(mode, source, target, mask)
        before = np.abs(source[mask > 0.5].std(0) - target[mask > 0.5].std(0)).sum()
        after = np.abs(out[mask > 0.5].std(0) - target[mask > 0.5].std(0)).sum()
        assert after < before, mode


def test_matching_a_face_to_itself_changes_little(faces):
    source, _, mask = faces
    for mode in COLOR_MODES:
        out = match_color(mode, source, source, mask)
        assert np.abs(out - source)[mask > 0.5].mean() < 0.02, mode


def test_unknown_mode_is_a_clear_error(faces):
    source, target, mask = faces
    with pytest.raises(ValueError, match="unknown colour mode"):
        match_color("sepia", source, target, mask)


def _composed(faces, **options) -> np.ndarray:
    """The warm source face composed into the cool target (an identity placement) with `options`."""
    from deepfake.config import SwapConfig
    from deepfake.swap.compose import compose_face

    source, target, mask = faces
    frame = np.rint(target * 255).astype(np.uint8)
    hull = np.rint(mask * 255).astype(np.uint8)
    cfg = SwapConfig(mask="hull", blur=-1, **options)
    return compose_face(frame.copy(), frame, hull, np.eye(2, 3), source, None, cfg).astype(np.float32) / 255.0


def test_color_strength_scales_the_match(faces):
    _, target, mask = faces
    gap = {s: np.linalg.norm(_mean(_composed(faces, color="rct", color_strength=s), mask) - _mean(target, mask))
           for s in (0.0, 0.5, 1.0)}
    assert gap[1.0] < gap[0.5] < gap[0.0]
    # 0 keeps the model's colours: the same pixels as no matching at all.
    np.testing.assert_array_equal(_composed(faces, color="rct", color_strength=0.0), _composed(faces, color="none"))
    # Halfway in colour is halfway in mean colour (up to the uint8 frame's rounding).
    half = _mean(_composed(faces, color="rct", color_strength=0.5), mask)
    ends = (_mean(_composed(faces, color="rct", color_strength=0.0), mask)
            + _mean(_composed(faces, color="rct", color_strength=1.0), mask)) / 2
    assert np.abs(half - ends).max() < 2 / 255


def test_color_strength_on_the_command_line_and_the_dashboard():
    from deepfake.cli import build_parser, main
    from deepfake.config import SwapConfig
    from deepfake.config.options import config_from_args
    from deepfake.ui import specs

    args = build_parser(only="swap").parse_args(["swap", "x.mp4", "-m", "m", "-o", "y.mp4", "--color-strength", "0.4"])
    assert config_from_args(SwapConfig, args).color_strength == 0.4
    assert main(["swap", "x.mp4", "-m", "m", "-o", "y.mp4", "--color-strength", "1.5"]) == 2
    assert specs.parse({"kind": "swap", "model": "m", "input": "x.mp4", "color_strength": 0.4}).color_strength == 0.4
    with pytest.raises(specs.SpecError, match="color_strength"):
        specs.parse({"kind": "swap", "model": "m", "input": "x.mp4", "color_strength": -1})
