"""Reading video frames with PyAV: upright RGB uint8 frames with their index and time.

A frame's time is its own timestamp on the source's timeline, shifted so that the earliest stream (video
or audio) starts at 0: variable-rate video and video that starts after its audio keep their timing, and a
writer given the same shift (`origin`) for the audio keeps them in sync. Frames come out as they are
displayed: a display matrix (phones record sideways and tag the rotation) is applied, and width/height
are the upright ones.

A truncated or partly corrupt file yields the frames that decode and then stops; `error` says why it
stopped early. A file that cannot be opened at all raises BadInputError.
"""

from __future__ import annotations

import re
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import Iterator, NamedTuple

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

from deepfake.errors import BadInputError

VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
_DECODE_ERRORS = (av.FFmpegError, OSError, ValueError)


class Orientation(NamedTuple):
    """How a stored frame becomes the displayed one: transpose, then mirror left-right and/or top-bottom."""

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        if self.transpose:
            rgb = rgb.transpose(1, 0, 2)
        if self.flip_x:
            rgb = rgb[:, ::-1]
        if self.flip_y:
            rgb = rgb[::-1]
        return rgb


def orientation_of(frame: av.VideoFrame | None) -> Orientation:
    """The orientation a frame's display matrix asks for (FFmpeg's layout: a point (x, y) is displayed at
    (a*x + c*y, b*x + d*y)). Right angles and mirrors only, as players apply them; anything else is left as
    stored."""
    data = None if frame is None else frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if data is None or len(bytes(data)) < 36:
        return Orientation()
    m = np.frombuffer(bytes(data), np.int32)[:9].astype(np.float64) / 65536.0  # 16.16 fixed point
    a, b, c, d = (int(round(v)) for v in (m[0], m[1], m[3], m[4]))
    if a == 0 and d == 0 and abs(b) == 1 and abs(c) == 1:  # x' = c*y, y' = b*x
        return Orientation(True, c < 0, b < 0)
    if b == 0 and c == 0 and abs(a) == 1 and abs(d) == 1:  # x' = a*x, y' = d*y
        return Orientation(False, a < 0, d < 0)
    return Orientation()


class VideoReader:
    """`with VideoReader(path, every=2) as v: for index, time_s, rgb in v: ...`

    start/stop restrict the frame indices read ([start, stop)); reading from `start` seeks to the
    nearest keyframe before it, so several readers can share one video without decoding it all.
    `origin` is the source time (seconds) that frame times count from; `time_base` the video stream's.
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
        self._stream = stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        cc = stream.codec_context
        width, height = int(cc.width or 0), int(cc.height or 0)
        if width <= 0 or height <= 0:
            self._container.close()
            raise BadInputError(self.path, "video stream has no frame size (corrupt header)")
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        self.fps = float(rate) if float(rate) > 0 else 30.0
        self.has_audio = bool(self._container.streams.audio)
        self.time_base: Fraction | None = stream.time_base
        audio = self._container.streams.audio[0] if self.has_audio else None
        starts = [s for s in (_start_s(stream), _start_s(audio)) if s is not None]
        self.origin = min(starts) if starts else 0.0
        self._end_s = _recorded_end(stream)  # the video's own recorded end (source time), None if unrecorded
        frames = int(stream.frames or 0)
        self.frame_count_exact = frames > 0  # the header counts the frames; else a count from a duration
        if frames <= 0 and stream.duration and stream.time_base:
            frames = int(round(float(stream.duration * stream.time_base) * self.fps))
        if frames <= 0 and self._end_s is not None:
            frames = int(round((self._end_s - (_start_s(stream) or 0.0)) * self.fps))
        if frames <= 0 and self._container.duration:
            frames = int(round(self._container.duration / av.time_base * self.fps))  # spans the audio too
        self.frame_count = frames  # from the header; may be an estimate, 0 when unknown
        # The display matrix rides on decoded frames (PyAV does not expose the stream's), so the first
        # frame is decoded now and handed out first.
        self._decoder = self._container.decode(stream)
        self._first: av.VideoFrame | None = None
        self._first_error: BaseException | None = None
        try:
            self._first = next(self._decoder, None)
        except _DECODE_ERRORS as e:
            self._first_error = e
        self.orientation = orientation_of(self._first)
        self.width, self.height = (height, width) if self.orientation.transpose else (width, height)

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

    def _source_time(self, frame: av.VideoFrame, previous: float | None) -> float:
        if frame.pts is not None and self.time_base:
            return float(frame.pts * self.time_base)
        return self.origin if previous is None else previous + 1.0 / self.fps

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        stream = self._stream
        index = None
        frames: Iterator[av.VideoFrame]
        if self.start > 0 and stream.time_base:
            t0 = stream.start_time or 0
            target = t0 + int(self.start / self.fps / float(stream.time_base))
            try:
                self._container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                self._container.seek(0, stream=stream)
                index = 0
            frames = self._container.decode(stream)
        else:
            index = 0
            if self._first_error is not None:
                self._stopped(self._first_error)
                return
            frames = self._decoder if self._first is None else chain([self._first], self._decoder)
        self._first = None
        last, last_end = None, None  # source times of the last frame decoded and of its end
        try:
            for frame in frames:
                # After a seek, frame indices come from timestamps; from the start we count, which
                # is exact even when timestamps are missing.
                i = self._index_of(frame, 0) if index is None else index
                index = i + 1
                self.frames_decoded += 1
                last = self._source_time(frame, last)
                length = float(frame.duration * self.time_base) if frame.duration and self.time_base else 0.0
                last_end = last + (length or 1.0 / self.fps)
                if i < self.start:
                    continue
                if self.stop is not None and i >= self.stop:
                    return
                if i % self.every:
                    continue
                # A plain contiguous copy: PyAV may hand out a view with padded rows, which dlib refuses.
                rgb = self.orientation.apply(frame.to_ndarray(format="rgb24"))
                yield i, last - self.origin, np.ascontiguousarray(rgb)
        except _DECODE_ERRORS as e:
            self._stopped(e)
        if self.stop is None and index is not None and not self.error:
            self.error = self._cut_short(index, last_end)

    def _stopped(self, e: BaseException) -> None:
        self.error = f"decoding stopped after {self.frames_decoded} frames ({_short(e)})"
        self.decode_failed = True

    def _cut_short(self, frames: int, end: float | None) -> str | None:
        """Why a stream that decoded cleanly still looks cut short, from what its header records for the
        video alone: its frame count, else its duration. A count estimated from a duration is no evidence
        (MKV and WebM keep none, their container duration spans the audio, and VFR defeats any count)."""
        if self.frame_count_exact:
            if frames < self.frame_count * 0.98:
                return f"stream ended at frame {frames} of {self.frame_count} (truncated?)"
            return None
        if self._end_s is not None and end is not None:
            # Slack for a last frame whose length the demuxer does not know and for rounded timestamps.
            slack = max(3.0 / self.fps, 0.02 * (self._end_s - self.origin))
            if end < self._end_s - slack:
                return (f"stream ended at {end - self.origin:.2f} s of the {self._end_s - self.origin:.2f} s "
                        "its header records (truncated?)")
        return None


def _start_s(stream) -> float | None:
    if stream is None or stream.start_time is None or not stream.time_base:
        return None
    return float(stream.start_time * stream.time_base)


_CLOCK = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def _recorded_end(stream) -> float | None:
    """The source time the video stream ends at, from Matroska's per-track DURATION tag, which FFmpeg and
    mkvmerge write from the packets they muxed. A stream's `duration` is no such record: for MPEG-PS/TS
    FFmpeg guesses it from the bitrate."""
    tag = next((v for k, v in (stream.metadata or {}).items() if k.lower() == "duration"), None)
    match = _CLOCK.match(tag.strip()) if isinstance(tag, str) else None
    if not match:
        return None
    end = int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    return end if end > 0 else None


def _short(e: BaseException) -> str:
    # FFmpeg errors repeat the file name; the caller already names the file.
    text = getattr(e, "strerror", None) if isinstance(e, av.FFmpegError) else None
    text = text or str(e)
    return text.splitlines()[0][:160] if text else type(e).__name__
