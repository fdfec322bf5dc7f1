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
