"""`extract` as a library call: collect inputs, run the workers, file their results into the faceset."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from deepfake.config import ExtractConfig

from deepfake.config_io import save_json
from deepfake.devices import resolve_device
from deepfake.errors import BadInputError, DeepfakeError
from deepfake.extract.inputs import collect_inputs, plan_tasks
from deepfake.extract.workers import run_tasks
from deepfake.extract.writer import image_writer, next_number, prepare_output
from deepfake.faces.hull import MASK_REGIONS
from deepfake.faceset import MANIFEST, FaceRecord, file_fingerprint, write_manifest
from deepfake.faceset.split import frame_order
from deepfake.io.images import read_image_scaled


log = logging.getLogger(__name__)

CONFIG_FILE = "extract_config.json"
CHECKPOINT_S = 30.0  # seconds between manifest saves: what an interrupted run can lose at most


@dataclass
class ExtractSummary:
    frames_read: int = 0
    faces_found: int = 0
    faces_kept: int = 0
    duplicates: int = 0  # faces already in the faceset (appending the same input twice)
    rejected_identity: int = 0  # faces dropped by the --reference filter
    frames_without_face: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, what went wrong) for partial reads
    faceset_size: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        fps = self.frames_read / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"frames read: {self.frames_read} ({fps:.1f} frames/s)",
            f"faces kept: {self.faces_kept} (faceset now holds {self.faceset_size})",
            f"frames without a face: {self.frames_without_face}",
        ]
        if self.duplicates:
            out.append(f"faces already in the faceset (not duplicated): {self.duplicates}")
        if self.rejected_identity:
            out.append(f"faces of other people (identity filter): {self.rejected_identity}")
        for path, what in self.warnings:
            out.append(f"partly read: {path}: {what}")
        out.append(f"files skipped: {len(self.skipped)}")
        out += [f"  {path}: {reason}" for path, reason in self.skipped]
        return out


def reference_embedding(paths: list[str], analyzer) -> np.ndarray:
    """Mean identity embedding of the largest face in each reference image (embedded in one batch)."""
    faces = []
    for p in paths:
        rgb, _ = read_image_scaled(p)
        found = analyzer.analyze(rgb, defer_embedding=True)
        if not found:
            raise BadInputError(p, "reference image has no detectable face")
        faces.append(found[0])
    analyzer.flush_embeddings()
    return np.mean([f.embedding for f in faces], axis=0)


def extract(
    inputs: list[str | Path],
    out: str | Path,
    cfg: ExtractConfig,
    progress: bool = True,  # tqdm bar (frames/s, faces found) on stderr
    on_skip: Callable[[str, str], None] | None = None,  # called once per bad file, as it happens
) -> ExtractSummary:
    """Extract faces from images, folders and videos into the faceset folder `out` (created or appended to)."""
    t0 = time.time()
    out = Path(out)
    if cfg.detector not in ("hog", "cnn"):
        raise DeepfakeError(f"unknown detector '{cfg.detector}' (hog | cnn)")
    if cfg.image_format not in ("png", "jpg"):
        raise DeepfakeError(f"unknown image format '{cfg.image_format}' (png | jpg)")
    if cfg.mask_region not in MASK_REGIONS:
        raise DeepfakeError(f"unknown mask region '{cfg.mask_region}' ({' | '.join(MASK_REGIONS)})")
    resolve_device(cfg.device)  # a bad --device fails here, in one line, not in every worker
    header, records = prepare_output(out, cfg)
    summary = ExtractSummary()

    def skip(path: str, reason: str) -> None:
        summary.skipped.append((path, reason))
        (on_skip or (lambda p, r: log.warning("skipped %s: %s", p, r)))(path, reason)

    items, bad = collect_inputs(inputs, exclude=out)
    for p, r in bad:
        skip(p, r)
    tasks, bad, total = plan_tasks(items, cfg)
    for p, r in bad:
        skip(p, r)

    analyzer = None
    ref = None
    if cfg.reference:
        from deepfake.faces.analyzer import FaceAnalyzer

        analyzer = FaceAnalyzer(cfg)
        ref = reference_embedding(cfg.reference, analyzer)

    fingerprints: dict[int, str] = {}
    for item in items:
        try:
            fingerprints[item.order] = file_fingerprint(item.path)
        except OSError:  # the task reports why the file is unreadable; the key only has to be unique
            fingerprints[item.order] = f"unreadable:{item.path}"
    known = {r.key for r in records}
    number = next_number(out, records)
    new_records: list[tuple[tuple, FaceRecord]] = []
    task_by_id = {t.task_id: t for t in tasks}
    remaining = Counter(t.item.order for t in tasks)  # unfinished tasks per input
    frames_by_item: dict[int, int] = {}

    def warn(path: Path, what: str) -> None:
        summary.warnings.append((str(path), what))
        log.warning("%s: %s", path, what)

    failed_items: set[int] = set()
    writer = image_writer()
    save_json(cfg, out / CONFIG_FILE)
    last_checkpoint = time.time()

    def checkpoint() -> None:
        # In (source, frame) order, an append's frames among the old ones: `--val-split tail` given only
        # a count holds out the manifest's last faces, which must be the end of the clip.
        merged = records + [r for _, r in sorted(new_records, key=lambda kr: kr[0])]
        write_manifest(out, header, [merged[i] for i in frame_order(merged)])

    bar = _progress_bar(total, progress)
    try:
        for msg in run_tasks(tasks, cfg, analyzer):
            kind, task_id = msg[0], msg[1]
            task = task_by_id[task_id]
            if kind == "frame":
                _, _, frame, _, payloads = msg
                summary.frames_read += 1
                summary.faces_found += len(payloads)
                if not payloads:
                    summary.frames_without_face += 1
                for p in payloads:
                    key = (fingerprints[task.item.order], frame, p.record.face_index)
                    if key in known:
                        summary.duplicates += 1
                        continue
                    if ref is not None and float(np.linalg.norm(p.embedding - ref)) > cfg.reference_threshold:
                        summary.rejected_identity += 1
                        continue
                    known.add(key)
                    name = f"{number:06d}"
                    number += 1
                    face_file, mask_file = f"faces/{name}.{cfg.image_format}", f"masks/{name}.png"
                    writer.put((out / face_file, p.face_bytes))
                    writer.put((out / mask_file, p.mask_bytes))
                    record = dataclasses.replace(p.record, file=face_file, mask=mask_file, source_id=key[0])
                    new_records.append(((task.item.order, -1 if frame is None else frame, p.record.face_index), record))
                    summary.faces_kept += 1
                bar.update(1)
                bar.set_postfix(faces=summary.faces_found, kept=summary.faces_kept, refresh=False)
            elif kind == "error":
                _, _, path, reason = msg
                if task.item.order not in failed_items:
                    failed_items.add(task.item.order)
                    skip(path, reason)
            elif kind == "done":
                _, _, frames, warning = msg
                frames_by_item[task.item.order] = frames_by_item.get(task.item.order, 0) + frames
                if warning:
                    warn(task.item.path, warning)
                remaining[task.item.order] -= 1
                item = task.item
                if remaining[item.order] == 0 and item.order not in failed_items and item.expected_frames:
                    got = frames_by_item[item.order]
                    if got < 0.98 * item.expected_frames:
                        warn(item.path, f"read {got} of {item.expected_frames} frames: the stream ended early (truncated?)")
            if time.time() - last_checkpoint > CHECKPOINT_S and new_records:
                writer.close()  # images first, so the manifest never names a file that is not there
                checkpoint()
                writer = image_writer()
                last_checkpoint = time.time()
    finally:
        bar.close()
        writer.close()
        if new_records or not (out / MANIFEST).exists():
            checkpoint()
    summary.faceset_size = len(records) + len(new_records)
    summary.seconds = time.time() - t0
    return summary


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="extract", disable=not enabled, dynamic_ncols=True, smoothing=0.1)
