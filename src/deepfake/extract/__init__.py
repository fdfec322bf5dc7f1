"""`extract`: images and videos -> a faceset folder (aligned faces, masks, manifest).

Work is split into tasks (one per image, a few contiguous segments per video) that worker processes
run end to end: decode, detect, landmarks, smoothing, alignment, measures, PNG encoding. The main
process only files the results: identity filter, de-duplication, a writer thread for the images, and
the manifest, written atomically at the end (and every 30 s, so an interrupted run keeps its work).
Bad inputs are skipped with one line each and listed in the summary.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from deepfake.config import ExtractConfig, save_json, to_dict
from deepfake.errors import BadInputError, DeepfakeError, OutputError
from deepfake.faceset import MANIFEST, FaceRecord, file_fingerprint, new_header, read_faceset, write_manifest
from deepfake.io.atomic import atomic_path
from deepfake.io.images import IMAGE_EXTENSIONS, read_image_scaled
from deepfake.io.video import VIDEO_EXTENSIONS, VideoReader

log = logging.getLogger(__name__)

CONFIG_FILE = "extract_config.json"
MIN_SEGMENT = 60  # frames; shorter videos are not split between workers
WARMUP = 8  # frames a segment reads before its start, so smoothing and tracking are settled at the seam
INLINE_BELOW = 90  # frames of work: below this, starting worker processes (~2 s) costs more than it saves
CHECKPOINT_S = 30.0


# ----------------------------------------------------------------------------------------------------
# Inputs and tasks.


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


@dataclass
class FacePayload:
    """One face as a worker hands it back: geometry in source pixels, images already encoded."""

    frame: int | None
    time: float | None
    face_index: int
    bbox: list[float]
    score: float
    landmarks: list[list[float]]
    aligned_landmarks: list[list[float]]
    matrix: list[list[float]]
    size: int
    blur: float
    pose: dict[str, float]
    embedding: np.ndarray
    face_bytes: bytes
    mask_bytes: bytes


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


# ----------------------------------------------------------------------------------------------------
# Worker side: one task from file to encoded faces.


def _encode(image: np.ndarray, fmt: str) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    # PNG level 1: half the encode time of the default for ~10 % larger files.
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode("." + fmt, image, params)
    if not ok:
        raise DeepfakeError(f"could not encode a {fmt} image")
    return buf.tobytes()


def _payloads(faces, frame, t, scale: float, fmt: str) -> list[FacePayload]:
    out = []
    for k, f in enumerate(faces):
        # Images decoded at reduced size: report geometry in the original file's pixels.
        lm = f.landmarks.astype(np.float64) / scale
        matrix = f.matrix.copy()
        matrix[:, :2] *= scale
        out.append(
            FacePayload(
                frame=frame,
                time=t,
                face_index=k,
                bbox=[round(v / scale, 2) for v in f.bbox],
                score=round(f.score, 4),
                landmarks=np.round(lm, 2).tolist(),
                aligned_landmarks=np.round(f.aligned_landmarks.astype(np.float64), 2).tolist(),
                matrix=matrix.tolist(),
                size=f.size,
                blur=round(f.blur, 2),
                pose={k2: round(v, 2) for k2, v in f.pose.items()},
                embedding=f.embedding,
                face_bytes=_encode(f.aligned, fmt),
                mask_bytes=_encode(f.mask, "png"),
            )
        )
    return out


def run_task(analyzer, task: Task, cfg: ExtractConfig) -> Iterator[tuple]:
    """Messages for one task: ("frame", task_id, frame, time, payloads) per frame, then
    ("done", task_id, frames_read, warning) or ("error", task_id, path, reason)."""
    item = task.item
    try:
        if item.kind == "unknown":
            item = InputItem(item.path, _sniff(item.path), item.order)
        if item.kind == "image":
            rgb, scale = read_image_scaled(item.path)
            faces = analyzer.analyze(rgb)
            yield ("frame", task.task_id, None, None, _payloads(faces, None, None, scale, cfg.image_format))
            yield ("done", task.task_id, 1, None)
        else:
            yield from _run_video(analyzer, task, item, cfg)
    except BadInputError as e:
        yield ("error", task.task_id, e.path, e.reason)
    except MemoryError:
        yield ("error", task.task_id, str(item.path), "out of memory while processing")
    except Exception as e:  # a bug or a library failure on one file must not end the whole run
        yield ("error", task.task_id, str(item.path), f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def _sniff(path: Path) -> str:
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


def _run_video(analyzer, task: Task, item: InputItem, cfg: ExtractConfig) -> Iterator[tuple]:
    smoother = analyzer.new_smoother()
    warm_from = max(0, task.start - WARMUP * cfg.every)
    frames = 0
    with VideoReader(item.path, every=cfg.every, start=warm_from, stop=task.stop) as reader:
        for index, t, rgb in reader:
            faces = analyzer.analyze(rgb, smoother, t)
            if index < task.start:
                continue  # warm-up: belongs to the previous segment
            frames += 1
            yield ("frame", task.task_id, index, t, _payloads(faces, index, t, 1.0, cfg.image_format))
        # An early end of stream is judged by the main process over all of a video's segments.
        warning = reader.error if reader.decode_failed else None
    if frames == 0 and task.start == 0:
        raise BadInputError(item.path, f"no frames could be decoded{f' ({reader.error})' if reader.error else ''}")
    yield ("done", task.task_id, frames, warning)


def _worker_main(cfg_dict: dict, tasks: "mp.Queue", results: "mp.Queue") -> None:
    from deepfake.config import from_dict
    from deepfake.faces.analyzer import FaceAnalyzer

    # Ctrl-C is the main process's to handle (it stops the workers and saves the manifest); a worker
    # catching it would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)  # one process per core; nested threads would only fight over it
    cfg = from_dict(ExtractConfig, cfg_dict)
    analyzer = FaceAnalyzer(cfg)
    while True:
        task = tasks.get()
        if task is None:
            return
        results.put(("start", task.task_id, mp.current_process().pid))
        for msg in run_task(analyzer, task, cfg):
            results.put(msg)


# ----------------------------------------------------------------------------------------------------
# Main side.


class _Writer:
    """Writes image files on a thread: file I/O releases the GIL, so it overlaps the rest."""

    def __init__(self):
        self._q: queue.Queue = queue.Queue(maxsize=256)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            path, data = item
            try:
                with atomic_path(path) as tmp:
                    tmp.write_bytes(data)
            except BaseException as e:  # surfaced by close(); keep draining so put() never blocks forever
                self.error = self.error or e

    def put(self, path: Path, data: bytes) -> None:
        self._q.put((path, data))

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()
        if self.error is not None:
            raise OutputError(f"could not write a face image ({self.error})")


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
        old = existing.settings
        for key in ("size", "coverage"):
            if key in old and old[key] != settings[key]:
                raise OutputError(
                    f"{out}: faceset was extracted with {key}={old[key]}, not {settings[key]}; "
                    f"use --{key} {old[key]} to append, or a new folder"
                )
        return existing.header, existing.records
    try:
        (out / "faces").mkdir(parents=True, exist_ok=True)
        (out / "masks").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    return new_header(settings), []


def _next_number(out: Path, records: list[FaceRecord]) -> int:
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


def reference_embedding(paths: list[str], analyzer) -> np.ndarray:
    """Mean identity embedding of the largest face in each reference image."""
    embeddings = []
    for p in paths:
        rgb, _ = read_image_scaled(p)
        faces = analyzer.analyze(rgb)
        if not faces:
            raise BadInputError(p, "reference image has no detectable face")
        embeddings.append(faces[0].embedding)
    return np.mean(embeddings, axis=0)


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
        except OSError as e:
            fingerprints[item.order] = f"unreadable:{item.path}"
            del e
    known = {r.key for r in records}
    number = _next_number(out, records)
    new_records: list[tuple[tuple, FaceRecord]] = []
    task_by_id = {t.task_id: t for t in tasks}
    remaining = Counter(t.item.order for t in tasks)  # unfinished tasks per input
    frames_by_item: dict[int, int] = {}

    def warn(path: Path, what: str) -> None:
        summary.warnings.append((str(path), what))
        log.warning("%s: %s", path, what)

    failed_items: set[int] = set()
    writer = _Writer()
    save_json(cfg, out / CONFIG_FILE)
    last_checkpoint = time.time()

    def checkpoint() -> None:
        ordered = records + [r for _, r in sorted(new_records, key=lambda kr: kr[0])]
        write_manifest(out, header, ordered)

    bar = _progress_bar(total, progress)
    try:
        for msg in _run_tasks(tasks, cfg, analyzer):
            kind, task_id = msg[0], msg[1]
            task = task_by_id[task_id]
            if kind == "frame":
                _, _, frame, ftime, payloads = msg
                summary.frames_read += 1
                summary.faces_found += len(payloads)
                if not payloads:
                    summary.frames_without_face += 1
                for p in payloads:
                    key = (fingerprints[task.item.order], frame, p.face_index)
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
                    writer.put(out / face_file, p.face_bytes)
                    writer.put(out / mask_file, p.mask_bytes)
                    record = FaceRecord(
                        file=face_file,
                        mask=mask_file,
                        source=str(task.item.path),
                        source_id=key[0],
                        frame=frame,
                        time=None if ftime is None else round(ftime, 4),
                        face_index=p.face_index,
                        bbox=p.bbox,
                        landmarks=p.landmarks,
                        aligned_landmarks=p.aligned_landmarks,
                        matrix=p.matrix,
                        size=p.size,
                        score=p.score,
                        blur=p.blur,
                        pose=p.pose,
                        embedding=np.round(p.embedding.astype(np.float64), 6).tolist(),
                    )
                    new_records.append(((task.item.order, -1 if frame is None else frame, p.face_index), record))
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
                writer = _Writer()
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


def _run_tasks(tasks: list[Task], cfg: ExtractConfig, analyzer=None) -> Iterator[tuple]:
    """Messages from all tasks: in this process for small jobs, else from worker processes."""
    work = sum(1 if t.item.kind != "video" else max(1, ((t.stop or 10**6) - t.start)) for t in tasks)
    if cfg.workers <= 1 or work < INLINE_BELOW or len(tasks) == 0:
        if tasks and analyzer is None:
            from deepfake.faces.analyzer import FaceAnalyzer

            analyzer = FaceAnalyzer(cfg)
        for task in tasks:
            yield from run_task(analyzer, task, cfg)
        return
    yield from _run_pool(tasks, cfg)


def _run_pool(tasks: list[Task], cfg: ExtractConfig) -> Iterator[tuple]:
    # spawn, not fork: the parent may hold threads (tqdm, the writer, torch) that fork would copy
    # in a locked state.
    ctx = mp.get_context("spawn")
    task_q, result_q = ctx.Queue(), ctx.Queue(maxsize=512)
    # Longest tasks first, so no worker is left with a big video at the end.
    for t in sorted(tasks, key=lambda t: -((t.stop or 10**6) - t.start) if t.item.kind == "video" else 0):
        task_q.put(t)
    n = max(1, min(cfg.workers, len(tasks)))
    for _ in range(n):
        task_q.put(None)
    procs = [ctx.Process(target=_worker_main, args=(to_dict(cfg), task_q, result_q), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    running: dict[int, int] = {}  # pid -> task_id
    pending = {t.task_id for t in tasks}
    try:
        while pending:
            try:
                msg = result_q.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                for p in dead:
                    procs.remove(p)
                    task_id = running.pop(p.pid, None)
                    if task_id is not None and task_id in pending:
                        pending.discard(task_id)
                        task = next(t for t in tasks if t.task_id == task_id)
                        yield ("error", task_id, str(task.item.path), f"worker process died (exit code {p.exitcode})")
                    replacement = ctx.Process(target=_worker_main, args=(to_dict(cfg), task_q, result_q), daemon=True)
                    replacement.start()
                    procs.append(replacement)  # it takes the sentinel the dead worker never read
                if not any(p.is_alive() for p in procs) and pending:
                    raise DeepfakeError("all extraction workers exited before finishing")
                continue
            if msg[0] == "start":
                running[msg[2]] = msg[1]
                continue
            if msg[0] in ("done", "error"):
                pending.discard(msg[1])
            yield msg
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
        task_q.close()
        result_q.close()
