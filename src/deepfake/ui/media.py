"""Uploads into inputs/, and single video frames for the before/after viewer.

An upload streams into a hidden temp file beside its target, counting bytes against the limit, then
is decoded the way the CLI decodes inputs (the CLI's reader, so the reason is the CLI's own words)
and only then renamed into place. Any failure, a dropped connection included, removes the temp file:
nothing partial is ever listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import cv2
import numpy as np

from deepfake.errors import BadInputError, DeepfakeError
from deepfake.io.atomic import atomic_path
from deepfake.io.images import IMAGE_EXTENSIONS
from deepfake.io.video import VIDEO_EXTENSIONS
from deepfake.ui.workspace import Workspace


class UploadError(DeepfakeError):
    """An upload refused: `status` is its HTTP code (400 bad content, 409 exists, 413 too big, 415 type)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def check_media(path: Path, shown: str) -> str:
    """'image' or 'video' when the CLI could read the file; UploadError with the CLI's reason otherwise.
    `shown` replaces the temp path in the message."""
    from deepfake.io.images import read_image
    from deepfake.io.video import VideoReader

    suffix = path.suffix.lower()
    try:
        if suffix in IMAGE_EXTENSIONS:
            read_image(path)
            return "image"
        with VideoReader(path) as reader:
            first = next(iter(reader), None)
            if first is None:
                raise BadInputError(path, reader.error or "no frame could be decoded")
        return "video"
    except BadInputError as e:
        raise UploadError(f"{shown}: {e.reason}", 400) from None


async def receive(ws: Workspace, name: str, chunks: AsyncIterator[bytes], declared: int | None,
                  limit: int, overwrite: bool = False) -> dict:
    """Store an upload as inputs/NAME. `declared`: the Content-Length, refused early when too big."""
    from starlette.concurrency import run_in_threadpool

    target = ws.child("inputs", name, must_exist=False)
    suffix = target.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
        # extract's own words for a file it would skip
        raise UploadError(f"{name}: unsupported file type '{suffix or '(none)'}'", 415)
    if target.is_dir() or target.is_symlink():
        raise UploadError(f"{name}: inputs/ holds a folder or a link of that name (upload under another name)", 409)
    if target.exists() and not overwrite:
        raise UploadError(f"{name}: already in inputs/ (delete it or upload under another name)", 409)
    if declared is not None and declared > limit:
        raise UploadError(f"{name}: {declared} bytes is over the upload limit of {limit} bytes", 413)
    size = 0
    with atomic_path(target) as tmp:  # a rejected upload leaves nothing behind
        with open(tmp, "wb") as f:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise UploadError(f"{name}: over the upload limit of {limit} bytes", 413)
                f.write(chunk)
        if size == 0:
            raise UploadError(f"{name}: empty file (0 bytes)", 400)
        kind = await run_in_threadpool(check_media, tmp, name)
    return {"path": ws.rel(target), "name": name, "kind": kind, "bytes": size}


# ----------------------------------------------------------------------------------------------------
# Frames.


def media_info(path: Path) -> dict:
    from deepfake.io.video import VideoReader
    from deepfake.ui.workspace import media_kind

    kind = media_kind(path)
    if kind != "video":
        return {"kind": kind}
    try:
        with VideoReader(path) as v:
            return {"kind": "video", "frames": v.frame_count, "fps": v.fps, "width": v.width, "height": v.height,
                    "audio": v.has_audio}
    except BadInputError as e:
        raise UploadError(f"{path.name}: {e.reason}", 400) from None


def frame_jpeg(path: Path, index: int, max_side: int = 720) -> bytes:
    """Frame `index` of a video (or the image itself) as JPEG, at most `max_side` px on its long side."""
    from deepfake.io.images import read_image
    from deepfake.io.video import VideoReader

    if index < 0:
        raise UploadError(f"index {index}: must be 0 or more", 400)
    try:
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            rgb = read_image(path)
        else:
            with VideoReader(path, start=index, stop=index + 1) as reader:
                rgb = next((f for i, _, f in reader if i == index), None)
            if rgb is None:
                raise UploadError(f"{path.name}: no frame {index}", 404)
    except BadInputError as e:
        raise UploadError(f"{path.name}: {e.reason}", 400) from None
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise UploadError(f"{path.name}: could not encode frame {index}", 400)
    return buf.tobytes()
