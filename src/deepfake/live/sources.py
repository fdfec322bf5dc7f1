"""Where live frames come from: a camera (an index or /dev/videoN), a network stream, or a video file
played as live, at its own frame rate.

A source is iterated on the capture thread and yields (index, capture_time, rgb). A file source waits
until each frame's time has come, so a pipeline slower than the file drops frames exactly as it would
drop a camera's. A camera that stops delivering frames is an error (BadInputError), not an end.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from deepfake.errors import BadInputError, DeepfakeError

STREAM = re.compile(r"^(rtsp|rtmp|http|https|udp|tcp)://", re.I)
CAMERA_FPS = 30.0  # when a camera does not say


@dataclass
class SourceInfo:
    name: str
    width: int
    height: int
    fps: float
    live: bool  # a camera or stream (its end is an error) rather than a file


class FileSource:
    """A video file played as live."""

    def __init__(self, path: Path):
        from deepfake.io.video import VideoReader

        self.path = path
        self.reader = VideoReader(path)  # BadInputError for a missing or unreadable file
        r = self.reader
        self.info = SourceInfo(str(path), r.width, r.height, r.fps, live=False)

    def frames(self, stop) -> Iterator[tuple[int, float, np.ndarray]]:
        start = time.perf_counter()
        with self.reader as r:
            for index, t, rgb in r:
                if stop.is_set():
                    return
                wait = start + t - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                yield index, time.perf_counter(), rgb
        if self.reader.decode_failed:
            raise BadInputError(self.path, f"corrupt video: {self.reader.error}")

    def close(self) -> None:
        self.reader.close()


class CaptureSource:
    """A camera or stream through OpenCV (or any object with its read()/get()/release())."""

    def __init__(self, capture, name: str):
        self.capture, self.name = capture, name
        if not capture.isOpened():
            capture.release()
            raise BadInputError(name, "cannot be opened (no such camera or stream, or it is busy)")
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise BadInputError(name, "opened but delivers no frames")
        import cv2

        self._first = first
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.info = SourceInfo(name, first.shape[1], first.shape[0], fps if 1 <= fps <= 240 else CAMERA_FPS, live=True)

    def frames(self, stop) -> Iterator[tuple[int, float, np.ndarray]]:
        import cv2

        frame, index = self._first, 0
        while not stop.is_set():
            yield index, time.perf_counter(), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = self.capture.read()
            if not ok or frame is None:
                raise BadInputError(self.name, f"stopped delivering frames after {index + 1}")
            index += 1

    def close(self) -> None:
        self.capture.release()


def _capture(target, *api):
    """cv2.VideoCapture without OpenCV's own warnings on stderr (the error is ours, in one line)."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(target, *api)
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_source(source: str | None, camera: int | None):
    """SOURCE or --camera N as a source; one-line errors when there is none or it cannot be opened."""
    import cv2

    if source is None and camera is None:
        raise DeepfakeError("no source: give a video file, a stream URL, /dev/videoN, or --camera N")
    if source is not None and camera is not None:
        raise DeepfakeError("give either SOURCE or --camera, not both")
    if camera is not None or (source is not None and source.isdigit()):
        index = camera if camera is not None else int(source)
        return CaptureSource(_capture(index), f"camera {index}")
    if STREAM.match(source):
        return CaptureSource(_capture(source), source)
    path = Path(source)
    if str(path).startswith("/dev/video"):
        if not path.exists():
            raise BadInputError(path, "no such camera")
        return CaptureSource(_capture(str(path), cv2.CAP_V4L2), str(path))
    return FileSource(path)
