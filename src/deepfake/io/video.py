"""Reading video frames with PyAV: RGB uint8 frames with their index and time.

A truncated or partly corrupt file yields the frames that decode and then stops; `error` says why it
stopped early. A file that cannot be opened at all raises BadInputError.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from deepfake.errors import BadInputError

VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


class VideoReader:
    """`with VideoReader(path, every=2) as v: for index, time_s, rgb in v: ...`

    start/stop restrict the frame indices read ([start, stop)); reading from `start` seeks to the
    nearest keyframe before it, so several readers can share one video without decoding it all.
    """

    def __init__(self, path: str | Path, every: int = 1, start: int = 0, stop: int | None = None):
        self.path = Path(path)
        self.every = max(1, int(every))
        self.start = max(0, int(start))
        self.stop = stop
        self.error: str | None = None  # set when decoding stopped before the end of the stream
        self.decode_failed = False  # True when that was a decoding error (not just an early end)
        self.frames_decoded = 0
        if not self.path.exists():
            raise BadInputError(self.path, "file not found")
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise BadInputError(self.path, "empty file (0 bytes)")
        try:
            self._container = av.open(str(self.path))
        except PermissionError:
            raise BadInputError(self.path, "permission denied") from None
        except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
            raise BadInputError(self.path, f"not a readable video ({_short(e)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise BadInputError(self.path, "no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        cc = self._stream.codec_context
        self.width, self.height = int(cc.width or 0), int(cc.height or 0)
        if self.width <= 0 or self.height <= 0:
            self._container.close()
            raise BadInputError(self.path, "video stream has no frame size (corrupt header)")
        rate = self._stream.average_rate or self._stream.guessed_rate or Fraction(30)
        self.fps = float(rate) if float(rate) > 0 else 30.0
        self.has_audio = bool(self._container.streams.audio)
        frames = int(self._stream.frames or 0)
        self.frame_count_exact = frames > 0  # the header counts the frames; else a count from a duration
        if frames <= 0 and self._stream.duration and self._stream.time_base:
            frames = int(round(float(self._stream.duration * self._stream.time_base) * self.fps))
        if frames <= 0 and self._container.duration:
            frames = int(round(self._container.duration / av.time_base * self.fps))
        self.frame_count = frames  # from the header; may be an estimate, 0 when unknown

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def _index_of(self, frame: av.VideoFrame, fallback: int) -> int:
        if frame.pts is None or self._stream.time_base is None:
            return fallback
        t0 = self._stream.start_time or 0
        return int(round(float((frame.pts - t0) * self._stream.time_base) * self.fps))

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        stream = self._stream
        index = None
        if self.start > 0 and stream.time_base:
            t0 = stream.start_time or 0
            target = t0 + int(self.start / self.fps / float(stream.time_base))
            try:
                self._container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                self._container.seek(0, stream=stream)
                index = 0
        else:
            index = 0
        try:
            for frame in self._container.decode(stream):
                # After a seek, frame indices come from timestamps; from the start we count, which
                # is exact even when timestamps are missing.
                i = self._index_of(frame, 0) if index is None else index
                index = i + 1
                self.frames_decoded += 1
                if i < self.start:
                    continue
                if self.stop is not None and i >= self.stop:
                    return
                if i % self.every:
                    continue
                # A plain contiguous copy: PyAV may hand out a view with padded rows, which dlib refuses.
                yield i, i / self.fps, np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
        except (av.FFmpegError, OSError, ValueError) as e:
            self.error = f"decoding stopped after {self.frames_decoded} frames ({_short(e)})"
            self.decode_failed = True
        if self.stop is None and index is not None and index < self.frame_count - self._slack() and not self.error:
            self.error = f"stream ended at frame {index} of {self.frame_count} (truncated?)"

    def _slack(self) -> float:
        """Frames a complete stream may fall short of `frame_count`. A count estimated from a duration
        (MKV and WebM keep no frame count) runs over: the container's duration spans the audio too, and
        a stream's own ends a frame's length or a timestamp's rounding past its last frame."""
        return 0.02 * self.frame_count + (0 if self.frame_count_exact else 3)


def _short(e: BaseException) -> str:
    # FFmpeg errors repeat the file name; the caller already names the file.
    text = getattr(e, "strerror", None) if isinstance(e, av.FFmpegError) else None
    text = text or str(e)
    return text.splitlines()[0][:160] if text else type(e).__name__
