"""Where live frames go besides the screen: a video file tagged synthetic, and a virtual camera."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from deepfake.errors import OutputError


class FileSink:
    """The -o file: frames at the source's rate, each output frame standing in for the source frames
    dropped before it (so the file keeps real time), tagged synthetic like every output."""

    def __init__(self, path: Path, fps: float, width: int, height: int, record: dict, crf: int, preset: str):
        from deepfake.io.video_writer import VideoWriter
        from deepfake.provenance.label import video_tags

        self.writer = VideoWriter(path, Fraction(fps).limit_denominator(1001), width + width % 2, height + height % 2,
                                  crf=crf, preset=preset, metadata=video_tags(record))
        self.pad = (height % 2, width % 2)
        self.next_index = 0

    def __enter__(self) -> "FileSink":
        self.writer.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.writer.__exit__(*exc)

    def write(self, index: int, rgb: np.ndarray) -> None:
        if any(self.pad):
            rgb = np.pad(rgb, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        for _ in range(max(1, index + 1 - self.next_index)):
            self.writer.write(rgb)
        self.next_index = max(self.next_index, index) + 1


class VirtualCamera:
    """pyvirtualcam's camera (v4l2loopback on Linux); OutputError in one line where there is none."""

    def __init__(self, width: int, height: int, fps: float):
        try:
            import pyvirtualcam
        except ImportError:
            raise OutputError("--virtual-camera needs pyvirtualcam (pip install -e \".[live]\")") from None
        try:
            self.camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB)
        except Exception as e:  # noqa: BLE001 - pyvirtualcam raises RuntimeError with the backend's reasons
            first = (str(e).strip().splitlines() or ["no backend"])[0]
            raise OutputError(f"--virtual-camera: no virtual camera device ({first}); on Linux load v4l2loopback: "
                              "sudo modprobe v4l2loopback exclusive_caps=1") from None
        self.name = self.camera.device

    def write(self, rgb: np.ndarray) -> None:
        self.camera.send(rgb)

    def close(self) -> None:
        self.camera.close()
