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
