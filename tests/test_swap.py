"""Swap on real faces: paste-back geometry, identity matching with two people, a real video end to end
through the CLI (frame count, fps, audio, provenance), images, previews, and every bad-input case."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import cut_clip, media_path
from deepfake.cli import main
from deepfake.config import SwapConfig
from deepfake.io.video import VideoReader
from deepfake.io.video_writer import VideoWriter
from deepfake.provenance.label import read_provenance
from deepfake.swap.blend_mask import build_mask
from deepfake.swap.paste import face_roi, warp_to_frame
from deepfake.swap.pipeline import Swapper, analyzer_config
from deepfake.swap.model import SwapModel
from deepfake.swap.run import swap

FACE_SIZE = 128
COVERAGE = 0.75
CLIP_FRAMES = 36


class IdentityModel:
    """Returns its input with a full mask: a swap through it must give the frame back."""

    def __call__(self, faces):
        return faces.astype(np.float32) / 255.0, np.ones(faces.shape[:3], np.float32)


class NegativeModel:
    """Returns the colour negative: a swapped face is unmistakable."""

    def __call__(self, faces):
        return 1.0 - faces.astype(np.float32) / 255.0, np.ones(faces.shape[:3], np.float32)


def _first_frame(name: str) -> np.ndarray:
    with VideoReader(media_path(name)) as r:
        for _, _, rgb in r:
            return rgb


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def analyzer():
    from deepfake.faces.analyzer import FaceAnalyzer

    return FaceAnalyzer(analyzer_config(FACE_SIZE, COVERAGE), with_embedding=True)


@pytest.fixture(scope="module")
def identities(analyzer):
    """Mean embeddings of woman A (d6) and woman B (d14) from their first frames."""
    return {
        "a": analyzer.analyze(_first_frame("d6.mp4"))[0].embedding,
        "b": analyzer.analyze(_first_frame("d14.mp4"))[0].embedding,
    }


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The first CLIP_FRAMES frames of d6.mp4 with their audio (AAC copied)."""
    return cut_clip("d6.mp4", tmp_path_factory.mktemp("clip") / "d6_cut.mp4", stop=CLIP_FRAMES, audio=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, identities):
    """A real model folder of the tiny preset (untrained weights: this file tests the plumbing), with A = d6
    and B = d14 recorded as its identities, as `deepfake train` writes them."""
    from safetensors.torch import save_file

    from deepfake.model_dir import write_config
    from deepfake.models import build_autoencoder
    from deepfake.models.presets import preset_config

    folder = tmp_path_factory.mktemp("model") / "tiny_ab"
    folder.mkdir()
    cfg = dataclasses.replace(preset_config("tiny"), face_size=FACE_SIZE, coverage=COVERAGE)
    ae = build_autoencoder(cfg.model)
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(folder / "autoencoder.safetensors"),
              metadata={"step": "0"})
    write_config(folder, cfg, identities)
    return folder


# ----------------------------------------------------------------------------------------------------
# Paste-back geometry.


@pytest.mark.parametrize("blend", ["feather", "poisson"])
def test_identity_model_gives_the_frame_back(analyzer, blend):
    frame = _first_frame("d6.mp4")
    cfg = SwapConfig(color="none", blend=blend, mask="learned*hull")
    result = Swapper(IdentityModel(), analyzer, cfg).swap_image(frame.copy())
    assert result.swapped == 1
    psnr = _psnr(result.frame, frame)
    assert psnr >= 40.0, f"{blend}: PSNR {psnr:.1f} dB"

    # Only pixels under the (dilated) blend mask may change; everything else is bit-identical.
    face = analyzer.analyze(frame)[0]
    mask = build_mask(cfg.mask, np.ones((FACE_SIZE, FACE_SIZE), np.float32), face.mask, cfg.erode, cfg.blur)
    h, w = frame.shape[:2]
    in_frame = warp_to_frame(mask, face.matrix, (0, 0, w, h)) > 0
    dilated = cv2.dilate(in_frame.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    changed = np.any(result.frame != frame, axis=2)
    assert changed.sum() > 0  # it did go through resampling
    assert not np.any(changed & ~dilated)
    assert dilated.mean() < 0.5  # the mask is the face, not the frame
    # The paste touched only the face's region of interest.
    x0, y0, x1, y1 = face_roi(face.matrix, mask, frame.shape)
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(result.frame[outside], frame[outside])


def test_frames_without_a_face_pass_through_untouched(analyzer):
    from PIL import Image

    with Image.open(media_path("s33.jpg")) as im:  # a dog
        dog = np.asarray(im.convert("RGB"))
    result = Swapper(NegativeModel(), analyzer, SwapConfig()).swap_image(dog)
    assert result.found == 0 and result.swapped == 0
    np.testing.assert_array_equal(result.frame, dog)


# ----------------------------------------------------------------------------------------------------
# Two faces, one identity.


@pytest.fixture(scope="module")
def two_faces():
    """d6's woman on the left, d14's woman on the right, in one 960x480 frame."""
    left = _first_frame("d6.mp4")
    right = cv2.resize(_first_frame("d14.mp4"), (480, 480), interpolation=cv2.INTER_AREA)
    return np.concatenate([left, right], axis=1)


@pytest.mark.parametrize(
    "direction, all_faces, left_changes, right_changes",
    [("a2b", False, False, True), ("b2a", False, True, False), ("a2b", True, True, True)],
)
def test_only_the_matching_identity_is_swapped(analyzer, identities, two_faces, direction, all_faces,
                                               left_changes, right_changes):
    from deepfake.swap.model import DIRECTIONS

    in_side, _ = DIRECTIONS[direction]
    cfg = SwapConfig(direction=direction, all_faces=all_faces, color="none")
    result = Swapper(NegativeModel(), analyzer, cfg, identity=identities[in_side]).swap_image(two_faces.copy())
    assert result.found == 2
    assert result.swapped == int(left_changes) + int(right_changes)
    left_diff = np.abs(result.frame[:, :480].astype(int) - two_faces[:, :480]).mean()
    right_diff = np.abs(result.frame[:, 480:].astype(int) - two_faces[:, 480:]).mean()
    assert (left_diff > 5) == left_changes, left_diff
    assert (right_diff > 5) == right_changes, right_diff
    if not left_changes:
        np.testing.assert_array_equal(result.frame[:, :480], two_faces[:, :480])
    if not right_changes:
        np.testing.assert_array_equal(result.frame[:, 480:], two_faces[:, 480:])


# ----------------------------------------------------------------------------------------------------
# Video end to end through the CLI.


def _video_info(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"fps": v.average_rate, "size": (v.width, v.height),
                "audio": [s.codec_context.name for s in c.streams.audio]}
        info["frames"] = sum(1 for _ in c.decode(video=0))
    return info


def test_video_swap_keeps_frames_fps_audio_and_label(tmp_path, clip, model_dir, capsys):
    out = tmp_path / "swapped.mp4"
    rc = main(["swap", str(clip), "-m", str(model_dir), "-o", str(out), "--preset", "ultrafast", "-q",
               "--direction", "b2a", "--batch", "8"])  # the clip shows A (d6): b2a swaps her
    assert rc == 0, capsys.readouterr().err
    src, got = _video_info(clip), _video_info(out)
    assert got["frames"] == src["frames"] == CLIP_FRAMES
    assert got["fps"] == src["fps"] == 30
    assert got["size"] == src["size"]
    assert got["audio"] == ["aac"]
    record = read_provenance(out)
    assert record["synthetic"] is True and record["tool"] == "deepfake" and record["model"] == "tiny_ab"
    assert record["direction"] == "b2a"
    # Every frame has the face, and the summary says they were all swapped.
    assert f"{CLIP_FRAMES} frame(s), {CLIP_FRAMES} swapped" in capsys.readouterr().out
    assert (tmp_path / "swapped.mp4.swap.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swapped.mp4", "swapped.mp4.swap.json"]


def test_video_of_the_other_identity_is_refused_without_all_faces(tmp_path, clip, model_dir, capsys):
    out = tmp_path / "x.mp4"
    rc = main(["swap", str(clip), "-m", str(model_dir), "-o", str(out), "-q", "--frames", "3"])  # a2b: wants d14
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "matches the model's identity" in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_preview_sheet_from_video(tmp_path, clip, model_dir):
    out = tmp_path / "preview.png"
    cfg = SwapConfig(direction="b2a", preview=True, preview_frames=2)
    summary = swap(clip, out, model_dir, cfg, progress=False)
    assert summary.frames_swapped == 2
    img = cv2.imread(str(out))
    assert img.shape[0] > 400 and img.shape[1] > 900  # two rows of (480 | 480)
    assert read_provenance(out)["synthetic"] is True


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_image_swap_keeps_format_and_is_labelled(tmp_path, suffix):
    from PIL import Image

    src = tmp_path / f"in{suffix}"
    Image.open(media_path("d9.jpg")).convert("RGB").save(src)
    out = tmp_path / f"out{suffix}"
    model = SwapModel(NegativeModel(), FACE_SIZE, COVERAGE, None, "negative")
    summary = swap(src, out, "unused", SwapConfig(watermark=True), progress=False, model=model)
    assert summary.faces_swapped == 1
    with Image.open(out) as im:
        assert im.format == ("JPEG" if suffix == ".jpg" else "PNG")
        assert im.size == Image.open(src).size
    assert read_provenance(out)["model"] == "negative"


def test_folder_skips_bad_items_and_reports_them(tmp_path):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(media_path("d9.jpg")).convert("RGB").save(folder / "face.jpg")
    Image.open(media_path("s33.jpg")).convert("RGB").save(folder / "dog.png")
    (folder / "broken.png").write_bytes(b"not a png")
    model = SwapModel(NegativeModel(), FACE_SIZE, COVERAGE, None, "negative")
    summary = swap(folder, tmp_path / "out", "unused", SwapConfig(), progress=False, model=model)
    assert summary.frames == 1 and len(summary.skipped) == 2
    assert any("dog.png" in s and "no face" in s for s in summary.skipped)
    assert any("broken.png" in s for s in summary.skipped)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["face.jpg", "swap_config.json"]


# ----------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing left behind.


def _fails(capsys, argv, out_dir: Path, expect: str) -> None:
    before = set(out_dir.rglob("*")) if out_dir.exists() else set()
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert expect in err, err
    after = set(out_dir.rglob("*")) if out_dir.exists() else set()
    assert after == before, f"left behind: {sorted(after - before)}"


def test_bad_model_dirs(tmp_path, clip, model_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    _fails(capsys, ["swap", str(clip), "-m", str(tmp_path / "nope"), "-o", str(out / "x.mp4")], out, "does not exist")
    # Weights missing.
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((model_dir / "config.json").read_text())
    _fails(capsys, ["swap", str(clip), "-m", str(no_weights), "-o", str(out / "x.mp4")], out, "missing weight file")
    # A face size that does not match: recorded smaller than the model's resolution.
    import json
    import shutil

    bad = tmp_path / "bad_size"
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["face_size"] = 32
    (bad / "config.json").write_text(json.dumps(cfg))
    _fails(capsys, ["swap", str(clip), "-m", str(bad), "-o", str(out / "x.mp4")], out, "face size 32 px")
    # Weights that do not fit the config.
    cfg["face_size"] = FACE_SIZE
    cfg["model"]["latent_dims"] = 32
    (bad / "config.json").write_text(json.dumps(cfg))
    _fails(capsys, ["swap", str(clip), "-m", str(bad), "-o", str(out / "x.mp4")], out, "do not match")


def test_video_without_a_face(tmp_path, model_dir, capsys):
    from PIL import Image

    dog = np.asarray(Image.open(media_path("s33.jpg")).convert("RGB").resize((256, 256)))
    src = tmp_path / "dog.mp4"
    with VideoWriter(src, 10, 256, 256, preset="ultrafast") as w:
        for _ in range(4):
            w.write(dog)
    out = tmp_path / "out"
    out.mkdir()
    _fails(capsys, ["swap", str(src), "-m", str(model_dir), "-o", str(out / "x.mp4"), "-q"], out, "no face found")


def test_corrupt_videos(tmp_path, clip, model_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01 this is not a video " * 200)
    _fails(capsys, ["swap", str(garbage), "-m", str(model_dir), "-o", str(out / "x.mp4")], out, "garbage.mp4")
    # A real file cut off in the middle of its data: decodes partly, must not produce a short output.
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    _fails(capsys, ["swap", str(truncated), "-m", str(model_dir), "-o", str(out / "x.mp4"), "-q",
                    "--direction", "b2a"], out, "truncated.mp4")


def test_unwritable_output_and_unsupported_containers(tmp_path, clip, model_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    blocker = out / "a_file"
    blocker.write_text("x")
    _fails(capsys, ["swap", str(clip), "-m", str(model_dir), "-o", str(blocker / "x.mp4")], out, "not writable")
    _fails(capsys, ["swap", str(clip), "-m", str(model_dir), "-o", str(out / "x.gif")], out, "unsupported output container")
    weird = tmp_path / "clip.xyz"
    weird.write_bytes(clip.read_bytes())
    _fails(capsys, ["swap", str(weird), "-m", str(model_dir), "-o", str(out / "x.mp4")], out, "unsupported container")
    _fails(capsys, ["swap", str(tmp_path / "missing.mp4"), "-m", str(model_dir), "-o", str(out / "x.mp4")], out,
           "not found")


def test_the_input_itself_or_a_folder_as_output_is_refused_first(tmp_path, clip, model_dir, capsys):
    own = tmp_path / "own.mp4"
    own.write_bytes(clip.read_bytes())
    _fails(capsys, ["swap", str(own), "-m", str(model_dir), "-o", str(own)], tmp_path, "is the input itself")
    assert own.read_bytes() == clip.read_bytes()
    (tmp_path / "taken.mp4").mkdir()
    _fails(capsys, ["swap", str(clip), "-m", str(model_dir), "-o", str(tmp_path / "taken.mp4")], tmp_path, "is a folder")


@pytest.mark.parametrize("option", [["--erode", "64"], ["--blur", "64"]])
def test_an_erode_or_blur_that_leaves_no_mask_is_refused(tmp_path, clip, model_dir, capsys, option):
    _fails(capsys, ["swap", str(clip), "-m", str(model_dir), "-o", str(tmp_path / "out" / "x.mp4"), *option],
           tmp_path, "leave no mask")


def test_sigterm_stops_a_swap_like_ctrl_c_and_leaves_nothing(tmp_path, model_dir):
    """The dashboard's Stop sends SIGTERM: the swap must remove its temp files as Ctrl-C does."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "deepfake", "swap", str(media_path("d6.mp4")), "-m", str(model_dir),
                             "-o", str(out / "x.mp4"), "--all-faces", "-q"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # a loaded box starts torch slowly
        while not any(out.iterdir()):  # the staging file: frames are being written
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert rc == 130 and "interrupted" in err, (rc, err[-2000:])
    assert list(out.iterdir()) == [], err[-2000:]


# ----------------------------------------------------------------------------------------------------
# The source's timing and orientation, through `deepfake swap`.


def _d6_frames(n: int) -> list[np.ndarray]:
    with VideoReader(media_path("d6.mp4"), stop=n) as r:
        return [rgb for _, _, rgb in r]


def test_video_swap_keeps_the_sources_timing_and_audio_sync(tmp_path, model_dir, capsys):
    """Variable-rate frames starting 0.5 s after the audio: each swapped frame is shown when its source
    frame was, and the audio starts where it did, both counted from the earliest stream."""
    from test_video_reader import stream_times, write_clip

    times = [0.7, 0.733, 0.8, 1.2, 1.233, 1.5]
    src = write_clip(tmp_path / "vfr.mp4", _d6_frames(len(times)), times, audio_start=0.2, audio_seconds=2.0)
    out = tmp_path / "swapped.mp4"
    rc = main(["swap", str(src), "-m", str(model_dir), "-o", str(out), "--preset", "ultrafast", "-q",
               "--direction", "b2a"])
    assert rc == 0, capsys.readouterr().err
    src_times, src_audio = stream_times(src)
    out_times, out_audio = stream_times(out)
    origin = min(src_times[0], src_audio)
    tick = 1e-3  # the source's clock
    assert out_times == pytest.approx([t - origin for t in src_times], abs=tick)
    assert out_audio == pytest.approx(src_audio - origin, abs=tick)


def test_a_video_recorded_sideways_is_swapped_upright(tmp_path, model_dir, capsys):
    """Stored on its side with a display rotation, as phones record: the face is found, and the output is
    upright with no rotation left to apply."""
    from test_video_reader import write_clip

    upright = [np.pad(f, ((0, 0), (80, 0), (0, 0))) for f in _d6_frames(4)]  # 560 x 480, a black band left
    src = write_clip(tmp_path / "phone.mp4", [np.rot90(f, -1) for f in upright], rotation=90)
    out = tmp_path / "swapped.mp4"
    rc = main(["swap", str(src), "-m", str(model_dir), "-o", str(out), "--preset", "ultrafast", "-q",
               "--direction", "b2a"])
    assert rc == 0, capsys.readouterr().err
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 4 and all(f.rotation == 0 for f in frames)
    for frame, want in zip(frames, upright):
        got = frame.to_ndarray(format="rgb24")
        assert got.shape == want.shape
        assert got[:, :70].max() < 40 and got[:, 100:].mean() > 60  # the band is on the left
        assert np.abs(got.astype(int) - want).mean() < 12
