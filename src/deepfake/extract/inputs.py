"""Extract's inputs: folders expanded into media files, unfamiliar files sniffed, and the work cut into
tasks (one per image, a few contiguous segments per video) so that several workers share one video."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake.config import ExtractConfig
from deepfake.errors import BadInputError
from deepfake.io.images import IMAGE_EXTENSIONS, read_image_scaled
from deepfake.io.video import VIDEO_EXTENSIONS, VideoReader

MIN_SEGMENT = 60  # frames; shorter videos are not split between workers


@dataclass
class InputItem:
    path: Path
    kind: str  # image | video | unknown (tried as an image, then as a video)
    order: int  # position among the inputs: manifest order
    expected_frames: int = 0  # video: frames to read according to the header (after --frames, --every)


@dataclass
class Task:
    task_id: int
    item: InputItem
    start: int = 0  # video frame range [start, stop)
    stop: int | None = None


def collect_inputs(paths: list[str | Path], exclude: Path | None = None) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand folders (recursively, sorted) into media files. Returns (items, skipped).

    Files under `exclude` (the output faceset, when it sits inside an input folder) are left out, so
    a second run never extracts faces from the aligned faces of the first.
    """
    excluded = exclude.resolve() if exclude is not None else None
    items: list[InputItem] = []
    skipped: list[tuple[str, str]] = []

    def add(p: Path, explicit: bool) -> None:
        ext = p.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            items.append(InputItem(p, "image", len(items)))
        elif ext in VIDEO_EXTENSIONS:
            items.append(InputItem(p, "video", len(items)))
        elif explicit:
            items.append(InputItem(p, "unknown", len(items)))
        else:
            skipped.append((str(p), f"unsupported file type '{p.suffix or '(none)'}'"))

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not f.name.startswith(".") and not (excluded and excluded in f.resolve().parents)
            )
            if not files:
                skipped.append((str(p), "folder has no files"))
            for f in files:
                add(f, explicit=False)
        elif p.exists():
            add(p, explicit=True)
        elif p.is_symlink():
            skipped.append((str(p), "broken symbolic link"))
        else:
            skipped.append((str(p), "file not found"))
    return items, skipped


def sniff_kind(path: Path) -> str:
    """'image' or 'video' for a file with an unfamiliar extension, by trying to open it."""
    try:
        read_image_scaled(path, max_pixels=1)  # decodes a tiny draft where it can
        return "image"
    except BadInputError:
        pass
    try:
        VideoReader(path).close()
        return "video"
    except BadInputError:
        raise BadInputError(path, "not an image or a video") from None


def plan_tasks(items: list[InputItem], cfg: ExtractConfig) -> tuple[list[Task], list[tuple[str, str]], int]:
    """Tasks, skipped inputs, and the expected number of frames (for the progress bar)."""
    tasks: list[Task] = []
    skipped: list[tuple[str, str]] = []
    total = 0
    for item in items:
        if item.kind != "video":
            tasks.append(Task(len(tasks), item))
            total += 1
            continue
        try:
            with VideoReader(item.path) as v:
                count = v.frame_count
        except BadInputError as e:
            skipped.append((e.path, e.reason))
            continue
        limit = cfg.frames if cfg.frames > 0 else None
        if limit is not None:
            count = min(count, limit) if count else limit
        item.expected_frames = -(-count // cfg.every) if count else 0
        total += max(1, item.expected_frames)
        segments = max(1, min(cfg.workers, count // MIN_SEGMENT)) if count else 1
        bounds = np.linspace(0, count, segments + 1).round().astype(int) if segments > 1 else [0, None]
        for a, b in zip(bounds[:-1], bounds[1:]):
            # The last segment reads to the real end of the stream (header counts can be short).
            stop = limit if b is None or b >= count else int(b)
            tasks.append(Task(len(tasks), item, int(a), stop))
    return tasks, skipped, total
