"""The video reader hands out frames every consumer can take: PyAV may return a view of its frame buffer
with padded rows (av 18.1.1 does for 480-px-wide clips), which dlib's descriptor and face-chip bindings
refuse, so the reader's frames must be plain C-contiguous RGB."""

from __future__ import annotations

import av
import numpy as np
import pytest

from conftest import media_path
from deepfake.io.video import VideoReader


def test_frames_are_contiguous_rgb_with_the_decoders_pixels():
    clip = media_path("d6.mp4")  # 480 px wide: a row of 1440 bytes, which a decoder may pad
    with av.open(str(clip)) as c:
        raw = [f.to_ndarray(format="rgb24") for _, f in zip(range(3), c.decode(video=0))]
    with VideoReader(clip, stop=3) as v:
        frames = [rgb for _, _, rgb in v]
    assert len(frames) == 3
    for ours, theirs in zip(frames, raw):
        assert ours.shape == (480, 480, 3) and ours.dtype == np.uint8
        assert ours.flags["C_CONTIGUOUS"] and ours.flags["WRITEABLE"]
        np.testing.assert_array_equal(ours, theirs)


def test_a_short_mkv_with_audio_reads_whole(tmp_path):
    """MKV keeps no frame count, so the reader estimates one from a duration that runs past the last frame
    (the audio's, a frame's length); a complete short clip must not read as truncated."""
    from deepfake.io.video_writer import VideoWriter

    clip = media_path("d14.mp4")
    with VideoReader(clip, stop=10) as v:
        frames = [rgb for _, _, rgb in v]
    out = tmp_path / "short.mkv"
    with VideoWriter(out, 30, 512, 512, preset="ultrafast", audio_from=clip, audio_until=len(frames) / 30) as w:
        for rgb in frames:
            w.write(rgb)
    with av.open(str(out)) as c:
        assert c.streams.audio and not c.streams.video[0].frames  # the case: no count in the header
    with VideoReader(out) as v:
        got = [rgb for _, _, rgb in v]
        assert not v.frame_count_exact and v.frame_count >= len(frames)  # an estimate, from a duration
        assert v.error is None
    assert len(got) == len(frames)


def test_a_truncated_mkv_still_reads_as_truncated(tmp_path):
    from deepfake.io.video_writer import VideoWriter

    clip = media_path("d14.mp4")
    with VideoReader(clip, stop=60) as v:
        frames = [rgb for _, _, rgb in v]
    out = tmp_path / "whole.mkv"
    with VideoWriter(out, 30, 512, 512, preset="ultrafast", audio_from=clip, audio_until=2.0) as w:
        for rgb in frames:
            w.write(rgb)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with VideoReader(cut) as v:
        n = sum(1 for _ in v)
        assert n < len(frames) and v.error and "truncated" in v.error


# ----------------------------------------------------------------------------------------------------
# Clips made here with PyAV: a display matrix, timestamps of our choosing, audio that starts elsewhere.


def write_clip(path, frames, times=None, *, rotation=None, hflip=False, audio_start=None, audio_seconds=1.0):
    """An H.264 clip (container from the suffix) of RGB `frames` shown at `times` (seconds; default every
    1/30 s from 0), with a display matrix rotating them `rotation` degrees counterclockwise and then
    mirroring them when `hflip` (a player's view; what phones record), and a mono AAC tone from
    `audio_start` lasting `audio_seconds` when `audio_start` is given."""
    from fractions import Fraction

    times = [i / 30 for i in range(len(frames))] if times is None else times
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = w, h, "yuv444p"
        video.codec_context.time_base = Fraction(1, 1000)
        video.options = {"preset": "ultrafast", "qp": "0"}
        if rotation is not None:
            video.set_display_rotation(rotation, hflip=hflip)
        if audio_start is not None:
            audio = c.add_stream("aac", rate=16000)
            audio.layout = "mono"
        c.start_encoding()
        if audio_start is not None:
            n = int(16000 * audio_seconds)
            tone = (np.sin(np.arange(n) * 2 * np.pi * 440 / 16000) * 0.3).astype(np.float32)[None]
            for i in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, i:i + 1024]), format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = 16000, round(audio_start * 16000) + i, Fraction(1, 16000)
                c.mux(audio.encode(af))
            c.mux(audio.encode(None))
        for rgb, t in zip(frames, times):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            c.mux(video.encode(frame))
        c.mux(video.encode(None))
    return path


def stream_times(path):
    """(each video frame's time, the audio's start time) in seconds, as the file records them."""
    with av.open(str(path)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        a = c.streams.audio[0] if c.streams.audio else None
        audio = None if a is None else float(a.start_time * a.time_base)
    return times, audio


def _quadrants(w=64, h=48) -> np.ndarray:
    """A picture whose every rotation and mirror image differs: four flat colours, one per quadrant."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[: h // 2, : w // 2] = (250, 20, 20)
    rgb[: h // 2, w // 2:] = (20, 250, 20)
    rgb[h // 2:, : w // 2] = (20, 20, 250)
    rgb[h // 2:, w // 2:] = (240, 240, 240)
    return rgb


@pytest.mark.parametrize("rotation, hflip, turns, mirror", [
    (90, False, 1, False), (-90, False, 3, False), (270, False, 3, False), (180, False, 2, False),
    (0, True, 0, True), (90, True, 1, True),
])
def test_frames_come_out_as_displayed(tmp_path, rotation, hflip, turns, mirror):
    """A display matrix (rotation counterclockwise, then a mirror) is applied, and the size is the upright one."""
    stored = _quadrants()
    clip = write_clip(tmp_path / "rot.mp4", [stored] * 3, rotation=rotation, hflip=hflip)
    shown = np.rot90(stored, turns)
    shown = shown[:, ::-1] if mirror else shown
    with VideoReader(clip) as v:
        assert (v.width, v.height) == (shown.shape[1], shown.shape[0])
        frames = [rgb for _, _, rgb in v]
    assert len(frames) == 3
    for rgb in frames:
        assert rgb.shape == shown.shape and rgb.flags["C_CONTIGUOUS"]
        assert np.abs(rgb.astype(int) - shown).mean() < 8


def test_frame_times_are_the_sources_from_the_earliest_stream(tmp_path):
    """Variable-rate frames, the video starting 0.5 s after its audio: each frame's time is its own
    timestamp, counted from where the earliest stream starts."""
    times = [0.7, 0.733, 0.8, 1.2, 1.233, 1.5, 2.0, 2.033]
    clip = write_clip(tmp_path / "vfr.mp4", [_quadrants()] * len(times), times, audio_start=0.2, audio_seconds=2.5)
    recorded, audio_start = stream_times(clip)
    with VideoReader(clip) as v:
        got = [t for _, t, _ in v]
        assert v.error is None and v.origin == pytest.approx(audio_start)
    assert got == pytest.approx([t - audio_start for t in recorded], abs=1e-6)
    assert got[3] - got[0] == pytest.approx(0.5, abs=1e-3)  # not 3 frames at 30 fps


@pytest.mark.parametrize("case", ["audio outlasts the video", "variable rate"])
def test_a_whole_mkv_is_not_called_truncated(tmp_path, case):
    """MKV and WebM keep no frame count; one estimated from a duration that spans the audio, or from a
    variable rate, says nothing about truncation."""
    if case == "variable rate":
        times = [0.0, 0.033, 0.067, 1.0, 1.5, 2.0, 2.5, 3.0, 3.033, 3.067]
        clip = write_clip(tmp_path / "vfr.mkv", [_quadrants()] * len(times), times)
    else:
        times = [i / 30 for i in range(30)]
        clip = write_clip(tmp_path / "long_audio.mkv", [_quadrants()] * 30, audio_start=0.0, audio_seconds=3.0)
    with VideoReader(clip) as v:
        got = [t for _, t, _ in v]
        assert not v.frame_count_exact
        assert v.error is None
    assert len(got) == len(times)
