"""Streaming video encoder (PyAV, libx264) that carries the source's audio over and tags the container.

Frames go in one at a time and leave as packets, so memory stays flat on long videos. The file is written
to a temp path next to the target and renamed only when `close()` succeeds (deepfake.io.atomic): a failure
or a kill never leaves a partial output under the requested name.

Audio is remuxed packet by packet (no re-encode) when the output container accepts the source codec, and
re-encoded to AAC otherwise. Audio packets are interleaved with the video as it is written.
"""

from __future__ import annotations

import contextlib
import logging
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from deepfake.errors import BadInputError, OutputError
from deepfake.io import format_for_suffix
from deepfake.io.atomic import atomic_path

log = logging.getLogger(__name__)

# Containers libx264 output may go into, by suffix -> PyAV format name.
VIDEO_CONTAINERS: dict[str, str] = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def container_format(path: str | Path) -> str:
    """PyAV format name for an output path; BadInputError for a container we don't write."""
    return format_for_suffix(path, VIDEO_CONTAINERS, "output container")


def _as_fraction(fps: float | Fraction) -> Fraction:
    fps = Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return fps


class VideoWriter:
    """Encode RGB uint8 frames to `path`.

    Use as a context manager; `write(rgb)` per frame. On a clean exit the temp file is finalised and renamed
    to `path`; on an exception it is removed.

    Args:
        path: output file; its suffix picks the container (.mp4, .m4v, .mov, .mkv).
        fps: frame rate (a Fraction keeps 30000/1001 exact).
        width, height: frame size in pixels.
        crf, preset: libx264 quality (lower crf = better) and speed/size trade-off.
        audio_from: a media file whose first audio stream is copied into the output (None = no audio).
        audio_until: seconds of audio to keep (None = all of it).
        metadata: container tags (strings), e.g. the provenance label.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        width: int,
        height: int,
        crf: int = 18,
        preset: str = "medium",
        audio_from: str | Path | None = None,
        audio_until: float | None = None,
        metadata: dict[str, str] | None = None,
    ):
        self.path = Path(path)
        self.format = container_format(self.path)
        self.fps = _as_fraction(fps)
        self.width, self.height = int(width), int(height)
        self.crf, self.preset = int(crf), str(preset)
        self.audio_from = None if audio_from is None else Path(audio_from)
        self.audio_until = audio_until
        self.metadata = dict(metadata or {})
        self.frames_written = 0
        self.audio_mode = "none"  # none | copy | aac
        self._stack: contextlib.ExitStack | None = None
        self._out = None
        self._video = None
        self._audio_in = None
        self._audio_src = None
        self._audio_out = None
        self._audio_packets: Iterator | None = None
        self._pending_audio = None
        self._resampler = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> "VideoWriter":
        self._stack = contextlib.ExitStack()
        try:
            try:
                tmp = self._stack.enter_context(atomic_path(self.path))
            except OSError as e:
                raise OutputError(f"{self.path}: cannot write here ({e.strerror or e})") from None
            self._open(tmp)
        except BaseException:
            self._abort()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._finish()
        except BaseException:
            self._abort()
            raise
        stack, self._stack = self._stack, None
        stack.close()  # renames the temp file onto self.path

    def _abort(self) -> None:
        for c in (self._out, self._audio_in):
            with contextlib.suppress(Exception):
                if c is not None:
                    c.close()
        self._out = self._audio_in = None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            # Unwind atomic_path with an exception so it removes the temp file instead of renaming it.
            with contextlib.suppress(_Abort):
                stack.__exit__(_Abort, _Abort(), None)

    def _open(self, tmp: Path) -> None:
        options = {"movflags": "use_metadata_tags+faststart"} if self.format in ("mp4", "mov") else {}
        try:
            self._out = av.open(str(tmp), mode="w", format=self.format, options=options)
        except (OSError, av.error.FFmpegError) as e:
            raise OutputError(f"{self.path}: cannot open for writing ({e})") from None
        for k, v in self.metadata.items():
            self._out.metadata[k] = str(v)
        video = self._out.add_stream("libx264", rate=self.fps)
        video.width, video.height = self.width, self.height
        # 4:2:0 needs even sides; odd-sized inputs keep their size in 4:4:4 rather than being cropped.
        video.pix_fmt = "yuv420p" if self.width % 2 == 0 and self.height % 2 == 0 else "yuv444p"
        video.codec_context.time_base = 1 / self.fps
        video.options = {"crf": str(self.crf), "preset": self.preset}
        self._video = video
        if self.audio_from is not None:
            self._open_audio()

    def _open_audio(self) -> None:
        try:
            self._audio_in = av.open(str(self.audio_from))
        except (OSError, av.error.FFmpegError) as e:
            raise BadInputError(self.audio_from, f"cannot read audio ({e})") from None
        if not self._audio_in.streams.audio:
            self._audio_in.close()
            self._audio_in = None
            return
        src = self._audio_in.streams.audio[0]
        self._audio_src = src
        codec = src.codec_context.name
        if codec in self._out.supported_codecs:
            self._audio_out = self._out.add_stream_from_template(src)
            self.audio_mode = "copy"
        else:
            rate = src.codec_context.sample_rate or 48000
            self._audio_out = self._out.add_stream("aac", rate=rate)
            # Unnamed layouts ("2 channels") are rejected by the AAC encoder; AAC gets mono or stereo.
            layout = "mono" if src.codec_context.channels == 1 else "stereo"
            self._audio_out.layout = layout
            self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            self._fifo = av.AudioFifo()
            self.audio_mode = "aac"
        self._audio_packets = self._audio_in.demux(src)

    # -- writing ---------------------------------------------------------------------------------------

    def write(self, rgb: np.ndarray) -> None:
        """Encode one RGB uint8 frame of shape (height, width, 3)."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 ({self.height}, {self.width}, 3), got {rgb.dtype} {rgb.shape}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = self._video.codec_context.time_base
        self.frames_written += 1
        self._mux_video(self._video.encode(frame))

    def _mux_video(self, packets) -> None:
        for packet in packets:
            if packet.pts is not None:
                self._mux_audio_until(float(packet.pts * packet.time_base))
            self._out.mux(packet)

    def _mux_audio_until(self, t: float | None) -> None:
        """Mux source audio up to time `t` (seconds; None = to the end) so the two streams interleave."""
        if self._audio_packets is None:
            return
        while True:
            packet = self._pending_audio
            self._pending_audio = None
            if packet is None:
                packet = next(self._audio_packets, None)
            if packet is None:
                self._audio_packets = None
                self._flush_audio_encoder()
                return
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's empty flush packet
            pt = packet.pts if packet.pts is not None else packet.dts
            time = float(pt * packet.time_base)
            if self.audio_until is not None and time >= self.audio_until:
                self._audio_packets = None
                self._flush_audio_encoder()
                return
            if t is not None and time > t:
                self._pending_audio = packet
                return
            self._write_audio_packet(packet)

    def _write_audio_packet(self, packet) -> None:
        if self.audio_mode == "copy":
            packet.stream = self._audio_out
            self._out.mux(packet)
            return
        for frame in packet.decode():
            for resampled in self._resampler.resample(frame):
                resampled.pts = None
                self._fifo.write(resampled)
            self._encode_fifo(final=False)

    def _encode_fifo(self, final: bool) -> None:
        size = self._audio_out.codec_context.frame_size or 1024
        while self._fifo.samples >= size or (final and self._fifo.samples > 0):
            chunk = self._fifo.read(min(size, self._fifo.samples) if final else size)
            chunk.pts = None
            self._out.mux(self._audio_out.encode(chunk))

    def _flush_audio_encoder(self) -> None:
        if self.audio_mode == "aac":
            for resampled in self._resampler.resample(None):
                resampled.pts = None
                self._fifo.write(resampled)
            self._encode_fifo(final=True)
            self._out.mux(self._audio_out.encode(None))

    def _finish(self) -> None:
        if self.frames_written == 0:
            raise OutputError(f"{self.path}: no frames to write")
        self._mux_video(self._video.encode(None))
        self._mux_audio_until(None)
        self._out.close()
        self._out = None
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None


class _Abort(Exception):
    """Raised into atomic_path's context to make it discard the temp file."""
