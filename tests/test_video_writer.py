"""The streaming encoder: frame count, fps, audio carried over (copied or re-encoded), atomic output."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import media_path
from deepfake.errors import BadInputError, OutputError
from deepfake.io.video_writer import VideoWriter

N = 40


def _frames(path, n):
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == n:
                break
            yield f.to_ndarray(format="rgb24")


def _streams(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {
            "fps": v.average_rate,
            "frames": sum(1 for _ in c.decode(video=0)),
            "size": (v.width, v.height),
        }
    with av.open(str(path)) as c:
        a = c.streams.audio[0] if c.streams.audio else None
        info["audio"] = None if a is None else a.codec_context.name
        info["audio_s"] = None if a is None else sum(fr.samples for fr in c.decode(audio=0)) / a.rate
    return info


def test_cut_keeps_count_fps_and_copies_audio(tmp_path):
    src = media_path("d6.mp4")
    out = tmp_path / "cut.mp4"
    with VideoWriter(out, Fraction(30), 480, 480, preset="ultrafast", audio_from=src, audio_until=N / 30,
                     metadata={"comment": "hello"}) as w:
        for rgb in _frames(src, N):
            w.write(rgb)
    assert w.audio_mode == "copy"  # AAC into MP4: packets remuxed, not re-encoded
    info = _streams(out)
    assert info["frames"] == N and info["fps"] == 30 and info["size"] == (480, 480)
    assert info["audio"] == "aac"
    assert abs(info["audio_s"] - N / 30) < 0.1
    with av.open(str(out)) as c:
        assert c.metadata["comment"] == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["cut.mp4"]  # no temp file left


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(tmp_path):
    # One second of mu-law audio (which MP4 does not accept) in a WAV file.
    src = tmp_path / "mulaw.wav"
    with av.open(str(src), "w") as c:
        aus = c.add_stream("pcm_mulaw", rate=8000)
        aus.layout = "mono"
        t = np.arange(8000) / 8000
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)[None]
        af = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        af.sample_rate = 8000
        af.pts = 0
        c.mux(aus.encode(af))
        c.mux(aus.encode(None))
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 10, 32, 32, preset="ultrafast", audio_from=src) as w:
        for i in range(10):
            w.write(np.full((32, 32, 3), i * 20, np.uint8))
    assert w.audio_mode == "aac"
    info = _streams(out)
    assert info["frames"] == 10 and info["audio"] == "aac"
    assert abs(info["audio_s"] - 1.0) < 0.2  # AAC adds 1024 priming samples (0.128 s at 8 kHz)


def test_odd_sizes_are_kept(tmp_path):
    out = tmp_path / "odd.mkv"
    with VideoWriter(out, 24, 33, 17, preset="ultrafast") as w:
        for i in range(4):
            w.write(np.full((17, 33, 3), 40 * i, np.uint8))
    info = _streams(out)
    assert info["size"] == (33, 17) and info["frames"] == 4 and info["audio"] is None


def test_failure_midway_leaves_nothing(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 30, 64, 64, preset="ultrafast") as w:
            w.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_shape_is_refused_and_nothing_left(tmp_path):
    with pytest.raises(ValueError, match="frame must be"):
        with VideoWriter(tmp_path / "x.mp4", 30, 64, 64) as w:
            w.write(np.zeros((32, 64, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_unsupported_container_and_unwritable_path(tmp_path):
    with pytest.raises(BadInputError, match="unsupported output container"):
        VideoWriter(tmp_path / "x.gif", 30, 64, 64)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        with VideoWriter(blocker / "sub" / "x.mp4", 30, 64, 64):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


# ----------------------------------------------------------------------------------------------------
# Source timing kept; audio the container cannot play re-encoded; FFmpeg's errors as one line.


def _pictures(n, w=64, h=48):
    return [np.full((h, w, 3), (i * 30) % 250, np.uint8) for i in range(n)]


def _pass_through(src, out):
    from deepfake.io.video import VideoReader

    with VideoReader(src) as r, VideoWriter(out, r.fps, r.width, r.height, preset="ultrafast",
                                            audio_from=src if r.has_audio else None, audio_origin=r.origin,
                                            time_base=r.time_base) as w:
        for _, t, rgb in r:
            w.write(rgb, t)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_source_times_are_kept_and_the_audio_moves_with_them(tmp_path, suffix):
    """Variable-rate video starting 0.5 s after its audio, read and written: every frame keeps its time and
    the audio its start, both counted from the earliest stream."""
    from test_video_reader import stream_times, write_clip

    times = [0.7, 0.733, 0.8, 1.2, 1.233, 1.5, 2.0, 2.033]
    src = write_clip(tmp_path / "src.mp4", _pictures(len(times)), times, audio_start=0.2, audio_seconds=2.5)
    src_times, src_audio = stream_times(src)
    origin = min(src_times[0], src_audio)
    out = tmp_path / f"out{suffix}"
    _pass_through(src, out)
    out_times, out_audio = stream_times(out)
    tick = 1e-3  # the source's clock
    assert out_times == pytest.approx([t - origin for t in src_times], abs=tick)
    assert out_audio == pytest.approx(src_audio - origin, abs=tick)


def test_a_constant_rate_mkv_stays_constant_rate(tmp_path):
    """Matroska's millisecond clock cannot hold 1/30 s; the copy is still exactly 30 fps, frame for frame."""
    from test_video_reader import write_clip

    src = write_clip(tmp_path / "cfr.mkv", _pictures(30))
    out = tmp_path / "out.mp4"
    _pass_through(src, out)
    info = _streams(out)
    assert info["fps"] == 30 and info["frames"] == 30
    with av.open(str(out)) as c:
        assert [f.time for f in c.decode(video=0)] == pytest.approx([i / 30 for i in range(30)], abs=1e-9)


def _pcm(path, layout):
    """One second of 16-bit PCM in an audio-only MKV (which, like the auditor's, keeps no channel order)."""
    with av.open(str(path), "w") as c:
        a = c.add_stream("pcm_s16le", rate=16000)
        a.layout = layout
        channels = len(av.AudioLayout(layout).channels)
        for i in range(0, 16000, 1600):
            af = av.AudioFrame.from_ndarray(np.full((1, 1600 * channels), 1000 * (i % 3), np.int16), format="s16",
                                            layout=layout)
            af.sample_rate, af.pts = 16000, i
            c.mux(a.encode(af))
        c.mux(a.encode(None))
    return path


@pytest.mark.parametrize("layout, suffix, channels", [
    ("5.1", ".mp4", 6),  # MP4's muxer took it, then failed at its trailer
    ("stereo", ".m4v", 2),  # raw PCM in MP4: many players cannot play it
])
def test_pcm_into_mp4_is_reencoded_to_aac_keeping_its_channels(tmp_path, layout, suffix, channels):
    src = _pcm(tmp_path / "pcm.mkv", layout)
    out = tmp_path / f"out{suffix}"
    with VideoWriter(out, 10, 32, 32, preset="ultrafast", audio_from=src) as w:
        assert w.audio_mode == "aac"  # decided before the first frame, so a refusal comes first
        for rgb in _pictures(10, 32, 32):
            w.write(rgb)
    info = _streams(out)
    assert info["frames"] == 10 and info["audio"] == "aac" and abs(info["audio_s"] - 1.0) < 0.1
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.channels == channels


def test_an_ffmpeg_failure_is_one_line_naming_the_output_and_leaves_nothing(tmp_path, monkeypatch):
    """What FFmpeg refuses only when finishing (here multichannel PCM in MP4, let through on purpose)."""
    from deepfake.io import video_writer

    src = _pcm(tmp_path / "pcm.mkv", "5.1")
    monkeypatch.setitem(video_writer.COPY_AUDIO, "mp4", {"pcm_s16le"})
    out = tmp_path / "out" / "x.mp4"
    with pytest.raises(OutputError) as e:
        with VideoWriter(out, 10, 32, 32, preset="ultrafast", audio_from=src) as w:
            for rgb in _pictures(10, 32, 32):
                w.write(rgb)
    assert str(e.value).startswith(f"{out}: ") and "\n" not in str(e.value) and ".tmp" not in str(e.value)
    assert list((tmp_path / "out").iterdir()) == []
