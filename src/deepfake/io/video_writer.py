"""Streaming video encoder (PyAV, libx264) that carries the source's audio over and tags the container.

Frames go in one at a time and leave as packets, so memory stays flat on long videos. The file is written
to a temp path next to the target and renamed only when `close()` succeeds (deepfake.io.atomic): a failure
or a kill never leaves a partial output under the requested name. FFmpeg's own errors become a one-line
OutputError naming the file.

A frame is written at the time it is given (the source's, for variable-rate video or video that starts
after its audio), else at the next step of `fps`. Audio is remuxed packet by packet (no re-encode) when the
output container carries the source codec playably, and re-encoded to AAC otherwise; either way it is
shifted by the same `audio_origin` as the frames' times and interleaved with the video as it is written.
"""

from __future__ import annotations

import contextlib
import logging
import math
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

# Audio codecs copied as they are, by container; others are re-encoded to AAC. FFmpeg's MP4 muxer takes
# more (PCM, FLAC, Opus) but many players cannot play those, and multichannel PCM fails at its trailer.
# QuickTime plays PCM. Matroska carries whatever FFmpeg's muxer takes.
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac"}
_PCM = {f"pcm_{t}{e}" for t in ("s16", "s24", "s32", "f32", "f64") for e in ("le", "be")} | {"pcm_u8", "pcm_s8"}
COPY_AUDIO: dict[str, set[str] | None] = {"mp4": _MP4_AUDIO, "mov": _MP4_AUDIO | _PCM, "matroska": None}
# Channel orders FFmpeg assumes for a count it is given no layout for.
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


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

    Use as a context manager; `write(rgb)` or `write(rgb, time_s)` per frame. On a clean exit the temp file
    is finalised and renamed to `path`; on an exception it is removed.

    Args:
        path: output file; its suffix picks the container (.mp4, .m4v, .mov, .mkv).
        fps: frame rate (a Fraction keeps 30000/1001 exact).
        width, height: frame size in pixels.
        crf, preset: libx264 quality (lower crf = better) and speed/size trade-off.
        audio_from: a media file whose first audio stream is copied into the output (None = no audio).
        audio_until: seconds of audio to keep, on the output's timeline (None = all of it); may be set
            until the writer closes.
        audio_origin: the source time (seconds) that becomes 0 in the output: the frames' times were
            shifted by it (VideoReader.origin), so the audio is too.
        time_base: the clock frame times were measured with (the source video's time base). The writer
            keeps them exact, and puts a time within half a tick of the `fps` grid on the grid: a
            constant-rate video whose clock cannot hold 1/fps (Matroska's milliseconds) stays constant-rate.
            Default: no times given, ticks of 1/fps.
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
        audio_origin: float = 0.0,
        time_base: Fraction | None = None,
    ):
        self.path = Path(path)
        self.format = container_format(self.path)
        self.fps = _as_fraction(fps)
        self.width, self.height = int(width), int(height)
        self.crf, self.preset = int(crf), str(preset)
        self.audio_from = None if audio_from is None else Path(audio_from)
        self.audio_until = audio_until
        self.audio_origin = float(audio_origin)
        self.time_base, self._tick = _output_time_base(self.fps, time_base)
        self._t0: float | None = None  # the first frame's time: where the fps grid starts
        self.metadata = dict(metadata or {})
        self.frames_written = 0
        self.audio_mode = "none"  # none | copy | aac
        self._last_pts: int | None = None
        self._aac_pts: int | None = None  # the next AAC frame's pts, in samples
        self._audio_shift = 0  # audio_origin in the copied audio's ticks
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
        with self._ffmpeg("cannot open for writing"):
            self._out = av.open(str(tmp), mode="w", format=self.format, options=options)
        for k, v in self.metadata.items():
            self._out.metadata[k] = str(v)
        with self._ffmpeg("cannot set up the video stream"):
            video = self._out.add_stream("libx264", rate=self.fps)
            video.width, video.height = self.width, self.height
            # 4:2:0 needs even sides; odd-sized inputs keep their size in 4:4:4 rather than being cropped.
            video.pix_fmt = "yuv420p" if self.width % 2 == 0 and self.height % 2 == 0 else "yuv444p"
            video.codec_context.time_base = self.time_base
            video.options = {"crf": str(self.crf), "preset": self.preset}
        self._video = video
        if self.audio_from is not None:
            self._open_audio()
        # The header now, not at the first frame: what the container refuses fails before any encoding.
        with self._ffmpeg("cannot start writing"):
            self._out.start_encoding()

    def _open_audio(self) -> None:
        try:
            self._audio_in = av.open(str(self.audio_from))
        except (OSError, av.error.FFmpegError) as e:
            raise BadInputError(self.audio_from, f"cannot read audio ({_reason(e)})") from None
        if not self._audio_in.streams.audio:
            self._audio_in.close()
            self._audio_in = None
            return
        src = self._audio_in.streams.audio[0]
        self._audio_src = src
        codec = src.codec_context.name
        copyable = COPY_AUDIO.get(self.format)
        with self._ffmpeg("cannot set up the audio stream"):
            if codec in self._out.supported_codecs and (copyable is None or codec in copyable):
                self._audio_out = self._out.add_stream_from_template(src)
                self._audio_shift = int(round(self.audio_origin / float(src.time_base)))
                self.audio_mode = "copy"
            else:
                layout, rate = self._aac_layout(src.codec_context)
                self._audio_out = self._out.add_stream("aac", rate=rate)
                self._audio_out.layout = layout
                self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
                self._fifo = av.AudioFifo()
                self.audio_mode = "aac"
        self._audio_packets = self._audio_in.demux(src)

    def _aac_layout(self, cc) -> tuple[str, int]:
        """The AAC encoder's channel layout and rate for source audio `cc`: the source's where AAC takes
        them, else the nearest rate and a downmix to stereo (mono stays mono)."""
        rate = cc.sample_rate or 48000
        if rate not in _AAC_RATES:
            rate = min(_AAC_RATES, key=lambda r: abs(r - rate))
        channels = cc.channels or 2
        layout = cc.layout.name
        if layout.endswith("channels"):  # a count without an order: AAC refuses it; FFmpeg's default order
            layout = _DEFAULT_LAYOUTS.get(channels, layout)
        probe = av.CodecContext.create("aac", "w")
        probe.sample_rate, probe.format = rate, "fltp"
        try:
            probe.layout = layout
            probe.open()
            return layout, rate
        except (av.FFmpegError, ValueError):
            fallback = "mono" if channels == 1 else "stereo"
            what = layout if layout.endswith("channels") else f"{layout} ({channels} channels)"
            log.warning("%s: AAC cannot carry its %s audio; downmixed to %s in %s",
                        self.audio_from, what, fallback, self.path)
            return fallback, rate

    @contextlib.contextmanager
    def _ffmpeg(self, what: str) -> Iterator[None]:
        """FFmpeg's errors about the output as one line naming the output file (not its temp file)."""
        try:
            yield
        except av.error.FFmpegError as e:
            raise OutputError(f"{self.path}: {what} ({_reason(e)})") from None

    # -- writing ---------------------------------------------------------------------------------------

    def write(self, rgb: np.ndarray, time: float | None = None) -> None:
        """Encode one RGB uint8 frame of shape (height, width, 3), shown from `time` seconds (None = one
        frame at `fps` after the previous one)."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 ({self.height}, {self.width}, 3), got {rgb.dtype} {rgb.shape}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._next_pts(time)
        frame.time_base = self.time_base
        self.frames_written += 1
        with self._ffmpeg("cannot encode"):
            self._mux_video(self._video.encode(frame))

    def _next_pts(self, time: float | None) -> int:
        last = self._last_pts
        if time is None:
            pts = 0 if last is None else last + max(1, round(1 / (self.fps * self.time_base)))
        else:
            # A clock coarser than 1/fps (Matroska's milliseconds) rounds constant-rate times off the grid.
            self._t0 = time if self._t0 is None else self._t0
            grid = self._t0 + round((time - self._t0) * self.fps) / self.fps
            if self._tick and abs(time - grid) <= self._tick / 2 + 1e-9:
                time = grid
            pts = max(0, round(time * self.time_base.denominator / self.time_base.numerator))
        if last is not None and pts <= last:  # a muxer refuses repeated or backward timestamps
            pts = last + 1
        self._last_pts = pts
        return pts

    def _mux_video(self, packets) -> None:
        for packet in packets:
            if packet.pts is not None:
                self._mux_audio_until(float(packet.pts * packet.time_base))
            self._out.mux(packet)

    def _mux_audio_until(self, t: float | None) -> None:
        """Mux source audio up to output time `t` (seconds; None = to the end) so the streams interleave."""
        if self._audio_packets is None:
            return
        while True:
            packet = self._pending_audio
            self._pending_audio = None
            if packet is None:
                try:
                    packet = next(self._audio_packets, None)
                except (OSError, av.error.FFmpegError) as e:
                    raise BadInputError(self.audio_from, f"cannot read audio ({_reason(e)})") from None
            if packet is None:
                self._audio_packets = None
                self._flush_audio_encoder()
                return
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's empty flush packet
            pt = packet.pts if packet.pts is not None else packet.dts
            time = float(pt * packet.time_base) - self.audio_origin
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
            if packet.pts is not None:
                packet.pts -= self._audio_shift
            if packet.dts is not None:
                packet.dts -= self._audio_shift
            packet.stream = self._audio_out
            self._out.mux(packet)
            return
        try:
            frames = packet.decode()
        except (OSError, av.error.FFmpegError) as e:
            raise BadInputError(self.audio_from, f"cannot decode audio ({_reason(e)})") from None
        for frame in frames:
            if self._aac_pts is None:  # the re-encoded audio starts where the source's does
                start = (frame.time or 0.0) - self.audio_origin
                self._aac_pts = max(0, round(start * self._audio_out.codec_context.sample_rate))
            for resampled in self._resampler.resample(frame):
                resampled.pts = None
                self._fifo.write(resampled)
            self._encode_fifo(final=False)

    def _encode_fifo(self, final: bool) -> None:
        cc = self._audio_out.codec_context
        size = cc.frame_size or 1024
        while self._fifo.samples >= size or (final and self._fifo.samples > 0):
            chunk = self._fifo.read(min(size, self._fifo.samples) if final else size)
            chunk.pts, chunk.time_base = self._aac_pts or 0, Fraction(1, cc.sample_rate)
            self._aac_pts = chunk.pts + chunk.samples
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
        with self._ffmpeg("cannot finish writing"):
            self._mux_video(self._video.encode(None))
            self._mux_audio_until(None)
            out, self._out = self._out, None
            out.close()
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None


def _output_time_base(fps: Fraction, clock: Fraction | float | None) -> tuple[Fraction, float]:
    """The encoder's time base and the tick a time may be moved by to land on the fps grid (0: never).
    Given a clock, ticks that hold both the clock's and 1/fps exactly, unless that gets absurdly fine."""
    if not clock:
        return 1 / fps, 0.0
    clock = Fraction(clock).limit_denominator(1 << 31)
    den = math.lcm(clock.denominator, fps.numerator)
    if den > 1 << 22:
        return clock, 0.0
    return Fraction(1, den), float(clock)


def _reason(e: BaseException) -> str:
    # FFmpeg's message names the temp file; the caller names the real one.
    text = (e.strerror if isinstance(e, av.error.FFmpegError) else None) or str(e)
    return text.splitlines()[0][:160] if text else type(e).__name__


class _Abort(Exception):
    """Raised into atomic_path's context to make it discard the temp file."""
