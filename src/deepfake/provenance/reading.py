"""Reading the invisible mark back from a file: every face of a still, or of a video's frames.

The faces are found and their landmarks fitted by extract's own FaceAnalyzer; the mark's alignment
(provenance/watermark.py) is computed from them, so the reading does not depend on where the face sits,
how large it is or what was cropped around it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfake.errors import BadInputError
from deepfake.provenance import watermark

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


def mark_analyzer(detector: str = "hog"):
    """The face finder the reader uses (landmarks only: no embeddings)."""
    from deepfake.config import ExtractConfig
    from deepfake.faces.analyzer import FaceAnalyzer

    cfg = ExtractConfig(size=watermark.SIZE, coverage=watermark.COVERAGE, detector=detector, smooth=True, workers=1)
    return FaceAnalyzer(cfg, with_embedding=False)


def read_still(rgb: np.ndarray, analyzer) -> watermark.Reading:
    """The mark of one picture. HOG misses some faces the CNN detector finds (glasses, hair, turned
    heads), and the two fit a face's landmarks a little differently; a still can afford both, so when
    HOG's faces carry no mark the CNN's are read too. Two tries double the false-alarm rate (to
    2 x 17 / 65536 = 0.052 % per picture)."""
    if min(rgb.shape[:2]) < watermark.MIN_FACE_PX:
        return watermark.Reading(frames_checked=1, too_small=1)
    reading = None
    for a in [analyzer] + ([mark_analyzer("cnn")] if analyzer.cfg.detector == "hog" else []):
        faces = watermark.locate(a, rgb, variants=True)
        if not faces:
            continue
        reader = watermark.MarkReader()
        reader.add_frame(rgb, faces, still=True)
        reading = reader.result()
        if reading.found:
            break
    if reading is None:
        # No face. The detectors' smallest face is about 2 x MIN_FACE_PX: a picture smaller than that
        # cannot hold a face that carries the mark.
        reading = watermark.Reading(frames_checked=1, too_small=int(min(rgb.shape[:2]) < 2 * watermark.MIN_FACE_PX))
    reading.false_alarm = 2 * watermark.FALSE_ALARM
    return reading


def read_mark_file(path: str | Path, analyzer, max_frames: int = 0, every: int = 1) -> watermark.Reading:
    """The mark of one image or video. `max_frames` > 0 reads about that many frames of a video, spread
    over the whole clip (every `every`-th frame, or sparser), so a swap after a long intro is still
    read; frames without a face do not count against it.

    Raises BadInputError (one line) for a truncated or undecodable file."""
    import av

    path = Path(path)
    reader = watermark.MarkReader()
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        from deepfake.io.images import read_image

        return read_still(read_image(path), analyzer)
    from deepfake.io.video import VideoReader

    smoother = analyzer.new_smoother()
    with_face = 0
    try:
        with VideoReader(path, every=max(1, every)) as video:
            if max_frames and video.frame_count:
                video.every = max(video.every, -(-video.frame_count // max_frames))
            for _, t, rgb in video:
                faces = watermark.locate(analyzer, rgb, smoother, t)
                reader.add_frame(rgb, faces)
                with_face += bool(faces)
                if max_frames and with_face >= max_frames:
                    break
            error = getattr(video, "error", None)
    except (OSError, av.error.FFmpegError) as e:
        raise BadInputError(path, f"truncated or corrupt video ({e})") from None
    if error:
        raise BadInputError(path, f"truncated or corrupt video ({error})")
    if reader.reading.frames_checked == 0:
        raise BadInputError(path, "truncated or corrupt video (no frame could be decoded)")
    return reader.result()
