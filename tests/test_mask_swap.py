"""Swap's masks on real frames: `--mask segmenter` leaves a pasted occluder untouched, `--mask-region
full` keeps the swap below the brows (the model's region by default, a one-line warning when the user's
choice differs), and the mask options fail in one line."""

from __future__ import annotations

import dataclasses
import json
import logging

import cv2
import numpy as np
import pytest

from conftest import media_path
from deepfake.cli import main
from deepfake.swap.blend_mask import MASK_MODES, auto_blur, build_mask, segmenter_alpha

FACE_SIZE = 128
COVERAGE = 0.75
FRAME = 100  # of d6.mp4: past the 60 frames faceset_a (and so the segmenter) was made of


def test_segmenter_modes_intersect_and_ramp():
    hull = np.zeros((64, 64), np.uint8)
    hull[8:56, 8:56] = 255
    learned = np.full((64, 64), 0.6, np.float32)
    seg = np.full((64, 64), 0.9, np.float32)
    seg[:, :32] = 0.1  # an occluder over the left half
    np.testing.assert_allclose(segmenter_alpha(np.array([0.0, 0.25, 0.5, 0.75, 1.0])), [0, 0, 0.5, 1, 1])
    m = build_mask("segmenter*hull", None, hull, blur=-1, segmenter=seg)
    assert m[:, :32].max() == 0.0 and m[20, 40] == 1.0 and m[60, 40] == 0.0
    m = build_mask("learned*segmenter*hull", learned, hull, blur=-1, segmenter=seg)
    assert m[20, 40] == pytest.approx(0.6) and m[20, 10] == 0.0  # the minimum, FaceFusion's rule
    with pytest.raises(ValueError, match="needs the segmenter"):
        build_mask("segmenter", learned, hull)


def test_cli_mask_choices_are_the_mask_modes():
    from deepfake.cli import build_parser

    p = build_parser(only="swap")
    sub = next(a for a in p._actions if getattr(a, "choices", None) and "swap" in a.choices).choices["swap"]
    assert tuple(next(a for a in sub._actions if a.dest == "mask").choices) == MASK_MODES


# ----------------------------------------------------------------------------------------------------
# Real frames.


@pytest.fixture(scope="module")
def frame():
    from deepfake.io.video import VideoReader

    with VideoReader(media_path("d6.mp4"), start=FRAME, stop=FRAME + 1) as r:
        for _, _, rgb in r:
            return rgb


@pytest.fixture(scope="module")
def face(frame):
    """The frame's face as swap aligns it: landmarks in frame px and the frame -> aligned matrix."""
    from deepfake.faces.analyzer import FaceAnalyzer
    from deepfake.swap.pipeline import analyzer_config

    found = FaceAnalyzer(analyzer_config(FACE_SIZE, COVERAGE), with_embedding=False).analyze(frame)
    assert len(found) == 1
    return found[0]


def _model_dir(folder, mask_region: str):
    """A tiny model folder (untrained weights: its faces differ from the input everywhere), no identities."""
    from safetensors.torch import save_file

    from deepfake.model_dir import write_config
    from deepfake.models import build_autoencoder
    from deepfake.models.presets import preset_config

    folder.mkdir(parents=True)
    cfg = dataclasses.replace(preset_config("tiny"), face_size=FACE_SIZE, coverage=COVERAGE, mask_region=mask_region)
    ae = build_autoencoder(cfg.model)
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(folder / "autoencoder.safetensors"),
              metadata={"step": "0"})
    write_config(folder, cfg)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {r: _model_dir(root / r, r) for r in ("full", "whole")}


@pytest.fixture(scope="module")
def segmenter(faceset_a, tmp_path_factory, one_torch_thread):
    """A segmenter trained briefly on faceset_a's hulls with the augmentation's occluders on every face."""
    from deepfake.config import MaskAugmentConfig, MaskTrainConfig, SegmenterConfig
    from deepfake.segment.train import train_segmenter

    out = tmp_path_factory.mktemp("segmenter") / "m"
    cfg = MaskTrainConfig(model=SegmenterConfig(resolution=64, base_channels=8, max_channels=32, depth=3),
                          augment=MaskAugmentConfig(occluders=1.0, background=0.3, blur=0.1, jpeg=0.1),
                          steps=200, batch=8, lr=3e-3, log_every=100, save_every=10**6, preview_every=0)
    train_segmenter(cfg, [faceset_a], out, progress=False)
    return out


def _swap(tmp_path, rgb, *options) -> np.ndarray:
    """`deepfake swap` on an image through the CLI; the output frame, RGB."""
    src, out = tmp_path / "in.png", tmp_path / f"out{len(list(tmp_path.glob('out*.png')))}.png"
    if not src.exists():
        cv2.imwrite(str(src), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert main(["swap", str(src), "-o", str(out), "--device", "cpu", *options]) == 0
    return cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)


def _scale(face) -> float:
    """Frame px per aligned px."""
    return 1.0 / float(np.hypot(*face.matrix[0, :2]))


@pytest.mark.media
@pytest.mark.slow
def test_segmenter_mask_leaves_a_pasted_occluder_untouched(frame, face, models, segmenter, tmp_path):
    lm = face.landmarks
    eyes = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    centre = lm[48:68].mean(0) + [0.25 * eyes, 0.1 * eyes]  # over the mouth and a cheek
    radius = 0.55 * eyes
    disc = np.zeros(frame.shape[:2], np.uint8)
    cv2.circle(disc, tuple(int(v) for v in centre.round()), int(radius), 1, -1)
    occluded = frame.copy()
    occluded[disc > 0] = (40, 70, 210)  # a blue disc: a microphone

    out = _swap(tmp_path, occluded, "-m", str(models["whole"]), "--mask", "segmenter", "--mask-model", str(segmenter))
    # Inside the disc, except the feather and a few px of the segmenter's edge, the frame is untouched.
    edge = round((auto_blur(FACE_SIZE) + 4) * _scale(face))
    inner = cv2.erode(disc, np.ones((2 * edge + 1, 2 * edge + 1), np.uint8))
    assert inner.sum() > 200
    changed = np.any(out != occluded, axis=2)
    assert not changed[inner > 0].any(), f"{changed[inner > 0].sum()} of {inner.sum()} occluder pixels were swapped"
    # The rest of the face was swapped: the segmenter kept it.
    hull = np.zeros_like(disc)
    cv2.fillConvexPoly(hull, cv2.convexHull(lm.round().astype(np.int32)), 1)
    rest = (hull > 0) & (cv2.dilate(disc, np.ones((2 * edge + 1,) * 2, np.uint8)) == 0)
    assert changed[rest].mean() > 0.8

    # The hull alone swaps the occluder too: what the segmenter is for.
    hull_out = _swap(tmp_path, occluded, "-m", str(models["whole"]), "--mask", "hull")
    assert np.any(hull_out != occluded, axis=2)[inner > 0].mean() > 0.9


def _rise_above_brows(changed: np.ndarray, face) -> float:
    """How far (frame px) the farthest changed pixel above the brows lies from them: the distance to the
    brows' convex hull of the changed pixels above its top edge (beside the brows: above their nearest end)."""
    brows = np.zeros(changed.shape, np.uint8)
    cv2.fillConvexPoly(brows, cv2.convexHull(face.landmarks[17:27].round().astype(np.int32)), 1)
    cols = np.flatnonzero(brows.any(0))
    top = np.interp(np.arange(changed.shape[1]), cols, brows[:, cols].argmax(0))  # (W,) the brows' top row
    distance = cv2.distanceTransform(1 - brows, cv2.DIST_L2, 5)  # (H, W) px to the brows
    ys, xs = np.nonzero(changed)
    above = ys < top[xs]
    return float(distance[ys[above], xs[above]].max(initial=0.0))


@pytest.mark.media
def test_full_region_keeps_the_swap_below_the_brows(frame, face, models, tmp_path, caplog):
    margin = (auto_blur(FACE_SIZE) + 2) * _scale(face) + 1  # the feather, and a pixel of warping
    eyes = np.linalg.norm(face.landmarks[36:42].mean(0) - face.landmarks[42:48].mean(0))

    out = _swap(tmp_path, frame, "-m", str(models["full"]), "--mask", "hull")  # the model's region: full
    rise = _rise_above_brows(np.any(out != frame, axis=2), face)
    assert rise <= margin, f"a swapped pixel lies {rise:.1f} px above the brows (margin {margin:.1f})"
    assert json.loads((tmp_path / "out0.png.swap.json").read_text())["mask_region"] == "full"
    assert not [r for r in caplog.records if "--mask-region" in r.getMessage()]

    with caplog.at_level(logging.WARNING):
        out = _swap(tmp_path, frame, "-m", str(models["full"]), "--mask", "hull", "--mask-region", "whole")
    assert _rise_above_brows(np.any(out != frame, axis=2), face) > 0.3 * eyes  # the forehead is swapped
    warned = [r.getMessage() for r in caplog.records if "--mask-region" in r.getMessage()]
    assert len(warned) == 1 and "\n" not in warned[0] and "'full'" in warned[0] and "whole" in warned[0]


@pytest.mark.media
def test_mask_options_fail_in_one_line(models, tmp_path, capsys):
    image = str(media_path("d9.jpg"))
    base = ["swap", image, "-m", str(models["whole"]), "-o", str(tmp_path / "o.png"), "--device", "cpu"]
    for extra, words in (
        (["--mask", "segmenter"], "--mask segmenter needs --mask-model"),
        (["--mask", "segmenter*hull", "--mask-model", str(tmp_path / "nope")], "mask model folder does not exist"),
        (["--mask", "segmenter", "--mask-model", str(models["full"])], "a face-swap model (deepfake train), not a mask model"),
    ):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and words in err, err
    assert not (tmp_path / "o.png").exists()
