"""Extract's output side: the faceset folder checked (or reopened to append to), the numbering of its
files, and a thread that writes the face and mask images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deepfake.config import ExtractConfig

from deepfake.config_io import to_dict
from deepfake.errors import OutputError
from deepfake.faceset import MANIFEST, FaceRecord, new_header, read_faceset
from deepfake.io.atomic import atomic_path
from deepfake.io.background import BackgroundWriter


def _write_image(item: tuple[Path, bytes]) -> None:
    path, data = item
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise OutputError(f"could not write a face image ({e})") from None


def image_writer() -> BackgroundWriter:
    """A thread that writes `(path, encoded image)` items atomically, so file I/O overlaps the rest."""
    return BackgroundWriter(_write_image, depth=256, name="extract-images")


def prepare_output(out: Path, cfg: ExtractConfig) -> tuple[dict[str, Any], list[FaceRecord]]:
    """Check the output folder; return the header and records of an existing faceset (to append to)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: output exists and is a file, not a folder")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{out}: {parent} is a file, not a folder")
    settings = to_dict(cfg)
    if (out / MANIFEST).exists():
        existing = read_faceset(out)
        # Facesets from before --mask-region hold whole-face hulls.
        old = {"mask_region": "whole", **existing.settings}
        for key in ("size", "coverage", "mask_region"):
            if key in old and old[key] != settings[key]:
                option = "--" + key.replace("_", "-")
                raise OutputError(
                    f"{out}: faceset was extracted with {key}={old[key]}, not {settings[key]}; "
                    f"use {option} {old[key]} to append, or a new folder"
                )
        return existing.header, existing.records
    try:
        (out / "faces").mkdir(parents=True, exist_ok=True)
        (out / "masks").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    return new_header(settings), []


def next_number(out: Path, records: list[FaceRecord]) -> int:
    """First free file number; counts files on disk too, so images left by an interrupted run are
    never overwritten by a different face."""
    numbers = [-1]
    for sub in ("faces", "masks"):
        for p in (out / sub).glob("*"):
            m = re.match(r"(\d+)", p.name)
            if m:
                numbers.append(int(m.group(1)))
    for r in records:
        m = re.match(r"\w+/(\d+)", r.file)
        if m:
            numbers.append(int(m.group(1)))
    return max(numbers) + 1
