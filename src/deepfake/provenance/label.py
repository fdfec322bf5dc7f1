"""The synthetic-media label every output carries, and reading it back (`deepfake detect` uses it).

The label is one line of text, `LABEL_PREFIX` followed by a JSON record naming the tool, its version and
the model:

    synthetic media made with deepfake; provenance={"synthetic": true, "tool": "deepfake", ...}

Where it goes:
- video containers: the `comment` tag, plus the JSON alone under the custom key `deepfake_provenance`
  (MP4/MOV write custom keys with `movflags=use_metadata_tags`; see io/video_writer.py);
- PNG: tEXt chunks `deepfake_provenance` (JSON) and `Comment` (the line);
- JPEG: a COM segment (the line) and EXIF ImageDescription (the line) + Software;
- WebP and TIFF: EXIF ImageDescription (the line) + Software.

Either copy is enough for `read_provenance`, so a tool that strips one kind of metadata does not erase it.
A visible mark (`add_watermark`) is optional on top.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake import __version__
from deepfake.errors import BadInputError, OutputError
from deepfake.io import format_for_suffix
from deepfake.io.atomic import atomic_path

TAG_KEY = "deepfake_provenance"
LABEL_PREFIX = "synthetic media made with deepfake; provenance="
WATERMARK_TEXT = "AI-GENERATED"

# Image formats we can label, by suffix -> PIL format name.
IMAGE_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

_EXIF_IMAGE_DESCRIPTION = 0x010E
_EXIF_SOFTWARE = 0x0131


def make_record(model: str, **extra: Any) -> dict[str, Any]:
    """The provenance record of one output: tool, version, model (its folder name), time, and `extra`."""
    record: dict[str, Any] = {
        "synthetic": True,
        "tool": "deepfake",
        "version": __version__,
        "model": model,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    record.update(extra)
    return record


def label_text(record: dict[str, Any]) -> str:
    return LABEL_PREFIX + json.dumps(record, sort_keys=True, separators=(",", ":"))


def parse_label(text: str | bytes | None) -> dict[str, Any] | None:
    """The record inside a label line (or a bare JSON record); None when `text` holds no label."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip().rstrip("\x00")
    start = text.find(LABEL_PREFIX)
    payload = text[start + len(LABEL_PREFIX) :] if start >= 0 else text
    try:
        record = json.loads(payload)
    except (ValueError, TypeError):
        return None
    if isinstance(record, dict) and record.get("synthetic") is True and record.get("tool"):
        return record
    return None


def video_tags(record: dict[str, Any]) -> dict[str, str]:
    """Container tags for a video (pass as VideoWriter(metadata=...))."""
    return {
        "comment": label_text(record),
        TAG_KEY: json.dumps(record, sort_keys=True, separators=(",", ":")),
        "encoder_tool": f"deepfake {__version__}",
    }


def image_format(path: str | Path) -> str:
    return format_for_suffix(path, IMAGE_FORMATS, "image format", " for a labelled output")


def save_labelled_image(path: str | Path, rgb: np.ndarray, record: dict[str, Any], quality: int = 95) -> None:
    """Write an RGB uint8 image in the format its suffix names, with the provenance label; atomically."""
    from PIL import Image, PngImagePlugin

    fmt = image_format(path)
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    line = label_text(record)
    exif = Image.Exif()
    exif[_EXIF_IMAGE_DESCRIPTION] = line
    exif[_EXIF_SOFTWARE] = f"deepfake {__version__}"
    kwargs: dict[str, Any] = {}
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(TAG_KEY, json.dumps(record, sort_keys=True, separators=(",", ":")))
        info.add_text("Comment", line)
        kwargs = {"pnginfo": info, "exif": exif.tobytes()}
    elif fmt == "JPEG":
        kwargs = {"quality": quality, "comment": line.encode("utf-8"), "exif": exif.tobytes()}
    elif fmt == "WEBP":
        kwargs = {"quality": quality, "exif": exif.tobytes()}
    elif fmt == "TIFF":
        kwargs = {"exif": exif.tobytes()}
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format=fmt, **kwargs)
    except OSError as e:
        raise OutputError(f"{path}: cannot write image ({e.strerror or e})") from None


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The provenance record of an image or video, or None when it carries no deepfake label.

    Raises BadInputError when the file is missing or neither an image nor a media container.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found")
    record = _read_image_label(path)
    if record is not None:
        return record
    return _read_container_label(path)


def _read_image_label(path: Path) -> dict[str, Any] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            info = dict(im.info)
            exif = im.getexif()
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    candidates = [info.get(TAG_KEY), info.get("Comment"), info.get("comment"), exif.get(_EXIF_IMAGE_DESCRIPTION)]
    for text in candidates:
        record = parse_label(text)
        if record is not None:
            return record
    return None


def _read_container_label(path: Path) -> dict[str, Any] | None:
    import av

    try:
        with av.open(str(path)) as container:
            tags = {k.lower(): v for k, v in container.metadata.items()}
            for stream in container.streams:
                for k, v in stream.metadata.items():
                    tags.setdefault(k.lower(), v)
    except (OSError, av.error.FFmpegError) as e:
        raise BadInputError(path, f"neither an image nor a readable media file ({e})") from None
    for key in (TAG_KEY, "comment", "description"):
        record = parse_label(tags.get(key))
        if record is not None:
            return record
    return None


def add_watermark(rgb: np.ndarray, text: str = WATERMARK_TEXT) -> np.ndarray:
    """Draw a small visible mark in the bottom-right corner (returns a new array)."""
    out = np.ascontiguousarray(rgb).copy()
    h, w = out.shape[:2]
    scale = max(0.3, min(h, w) / 900.0)
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    margin = max(2, round(4 * scale))
    x = max(0, w - tw - 2 * margin)
    y = max(th + margin, h - base - 2 * margin)
    box = out[max(0, y - th - margin) : min(h, y + base + margin), x : min(w, x + tw + 2 * margin)]
    box[:] = (box.astype(np.uint16) // 3).astype(np.uint8)  # darken behind the text so it reads anywhere
    cv2.putText(out, text, (x + margin, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
