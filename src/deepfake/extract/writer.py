"""Extract's output side: the faceset folder checked (or reopened to append to), the numbering of its
files, and a thread that writes the face and mask images."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from deepfake.config import ExtractConfig

from deepfake.config_io import to_dict
from deepfake.errors import DeepfakeError, OutputError
from deepfake.faceset import MANIFEST, FaceRecord, new_header, read_faceset
from deepfake.faceset.tools import REMOVED
from deepfake.io.atomic import atomic_path
from deepfake.io.background import BackgroundWriter

log = logging.getLogger(__name__)


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
    if out.is_dir():
        remove_stale_temps(out)
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
    """First free file number. Counts files on disk, so images left by an interrupted run are never
    overwritten by a different face, and what `faceset clean` moved to removed/, so a later clean
    does not find a new face under a removed face's name."""
    numbers = [-1]
    removed = out / REMOVED
    for folder in (out, removed):
        for sub in ("faces", "masks"):
            for p in (folder / sub).glob("*"):
                m = re.match(r"(\d+)", p.name)
                if m:
                    numbers.append(int(m.group(1)))
    names = [r.file for r in records]
    if (removed / MANIFEST).is_file():
        try:
            names += [r.file for r in read_faceset(removed).records]
        except DeepfakeError as e:  # its files on disk are counted above; the numbering stays safe
            log.warning("%s", e)
    for name in names:
        m = re.match(r"\w+/(\d+)", name)
        if m:
            numbers.append(int(m.group(1)))
    return max(numbers) + 1


# atomic_path's temp names for a face or mask image and for extract's own files in the root.
_TEMP = {"faces": re.compile(r"\.\d+\..+\.tmp\.(png|jpg)$"), "masks": re.compile(r"\.\d+\..+\.tmp\.png$"),
         ".": re.compile(r"\.(faces|extract_config)\..+\.tmp\.(jsonl|json)$")}


def remove_stale_temps(out: Path) -> None:
    """Delete the half-written temp files a killed extract left in `out`: only names of its own making,
    never a finished file."""
    gone = 0
    for sub, pattern in _TEMP.items():
        folder = out / sub
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if pattern.match(p.name) and p.is_file():
                try:
                    p.unlink()
                    gone += 1
                except OSError as e:
                    log.warning("%s: could not remove a stale temp file (%s)", p, e.strerror or e)
    if gone:
        log.info("%s: removed %d temp files an interrupted extract left", out, gone)
