"""The video reader hands out frames every consumer can take: PyAV may return a view of its frame buffer
with padded rows (av 18.1.1 does for 480-px-wide clips), which dlib's descriptor and face-chip bindings
refuse, so the reader's frames must be plain C-contiguous RGB."""

from __future__ import annotations

import av
import numpy as np

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
        assert not v.frame_count_exact and v.frame_count > len(frames)  # the estimate overshoots
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
