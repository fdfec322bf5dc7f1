"""A faceset's mask kinds, which of them a face cache holds, and what the cache's key must cover.

    FACESET/masks/000000.png            hull: extract's, of the region in the header's settings.mask_region
    FACESET/masks_segmenter/000000.png  segmenter: written by `deepfake mask apply`, noted in
                                        header["masks"]["segmenter"] (model, step, resolution, region)

A hull of another region than the faceset's is drawn from the aligned landmarks, as extract draws its
own, so training on full-face masks needs no re-extraction.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake.errors import DeepfakeError
from deepfake.faces.hull import MASK_REGIONS, hull_mask
from deepfake.faceset import Faceset, FaceRecord

HULL, SEGMENTER = "hull", "segmenter"
MASK_KINDS = (HULL, SEGMENTER)
FOLDERS = {HULL: "masks", SEGMENTER: "masks_segmenter"}


@dataclass(frozen=True)
class MaskSource:
    """The masks a face cache holds: the faceset's files of `kind`, or, for the hull, `redraw`: hulls of
    that region drawn from the landmarks."""

    kind: str = HULL
    redraw: str | None = None


def faceset_region(fs: Faceset) -> str:
    """The region of the faceset's hull files (facesets extracted before --mask-region: whole)."""
    return str(fs.settings.get("mask_region", "whole"))


def mask_file(record: FaceRecord, kind: str) -> str:
    """A face's mask of `kind`, relative to the faceset root: every kind uses the hull file's name."""
    return record.mask if kind == HULL else f"{FOLDERS[kind]}/{Path(record.mask).name}"


def kind_note(fs: Faceset, kind: str) -> dict | None:
    """What `mask apply` recorded about a mask kind, None when the faceset has none of it."""
    note = (fs.header.get("masks") or {}).get(kind)
    return note if isinstance(note, dict) else None


def mask_source(fs: Faceset, kind: str = HULL, region: str | None = None) -> MaskSource:
    """The masks of `kind` (and, for the hull, `region`; None = the faceset's own). One-line
    DeepfakeError when the faceset has no masks of that kind."""
    if kind not in MASK_KINDS:
        raise DeepfakeError(f"mask kind '{kind}': choose from {', '.join(MASK_KINDS)}")
    if region is not None and region not in MASK_REGIONS:
        raise DeepfakeError(f"mask region '{region}': choose from {', '.join(MASK_REGIONS)}")
    if kind == SEGMENTER:
        if kind_note(fs, SEGMENTER) is None:
            raise DeepfakeError(f"{fs.root}: no segmenter masks (run `deepfake mask apply {fs.root} -m MASK_MODEL` "
                                "first, or train with data.mask=hull)")
        return MaskSource(SEGMENTER)
    return MaskSource() if region is None or region == faceset_region(fs) else MaskSource(HULL, region)


def source_key(fs: Faceset, source: MaskSource) -> bytes:
    """What, besides the manifest, makes the cached masks. Nothing for the extracted hulls (so their
    caches outlive `mask apply`), the region of redrawn ones, and for segmenter masks the note of `mask
    apply` and each mask file's size and modification time: one stat per face, nothing read. A missing
    segmenter mask is a one-line DeepfakeError: a face added since `mask apply` would otherwise train
    on no mask."""
    if source.kind == HULL:
        return b"" if source.redraw is None else f"\nhull:{source.redraw}".encode()
    lines = [json.dumps(kind_note(fs, source.kind), sort_keys=True)]
    missing = []
    for rec in fs.records:
        name = mask_file(rec, source.kind)
        try:
            st = os.stat(fs.root / name)
        except OSError:
            missing.append(name)
            continue
        lines.append(f"{name} {st.st_size} {st.st_mtime_ns}")
    if missing:
        raise DeepfakeError(f"{fs.root}: {len(missing)} face(s) have no {source.kind} mask (first: {missing[0]}); "
                            "run `deepfake mask apply` again")
    return ("\n" + source.kind + "\n" + "\n".join(lines)).encode()


def read_mask(root: Path, record: FaceRecord, source: MaskSource, size: int) -> np.ndarray | None:
    """A face's mask, uint8 (S, S) at its aligned size `size`; None when the file is unreadable."""
    if source.redraw is not None:
        lm = np.asarray(record.aligned_landmarks, dtype=np.float64).reshape(68, 2)
        return hull_mask(lm, size, source.redraw)
    return cv2.imread(str(root / mask_file(record, source.kind)), cv2.IMREAD_GRAYSCALE)
