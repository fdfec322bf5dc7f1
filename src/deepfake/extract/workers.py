"""Extract's worker side: one task from file to encoded faces, and the processes that run the tasks.

A task runs end to end where it is executed (decode, detect, landmarks, smoothing, alignment, measures,
image encoding), so only small messages and encoded bytes cross to the main process. Every task ends
in one "done" or "error" message: a bad file or a dead worker costs that file, never the run.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from deepfake.config import ExtractConfig

from deepfake.config_io import to_dict
from deepfake.errors import BadInputError, DeepfakeError
from deepfake.extract.inputs import InputItem, Task, sniff_kind
from deepfake.faceset import FaceRecord
from deepfake.io.images import read_image_scaled
from deepfake.io.video import VideoReader

WARMUP = 8  # frames a segment reads before its start, so smoothing and tracking are settled at the seam
INLINE_BELOW = 90  # frames of work: below this, starting worker processes costs more than it saves


@dataclass
class FacePayload:
    """One face as a worker hands it back: its record (geometry in source pixels) and its images, encoded."""

    record: FaceRecord  # file, mask and source_id empty: the main process names the files and fingerprints sources
    embedding: np.ndarray  # full precision, for the identity filter (the record keeps a rounded copy)
    face_bytes: bytes
    mask_bytes: bytes


# ----------------------------------------------------------------------------------------------------
# One task.


def _encode(image: np.ndarray, fmt: str) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    # PNG level 1: far faster to encode than the default, for slightly larger files.
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode("." + fmt, image, params)
    if not ok:
        raise DeepfakeError(f"could not encode a {fmt} image")
    return buf.tobytes()


def _payloads(faces, source: str, frame, t, scale: float, fmt: str) -> list[FacePayload]:
    out = []
    for k, f in enumerate(faces):
        # Images decoded at reduced size: report geometry in the original file's pixels.
        lm = f.landmarks.astype(np.float64) / scale
        matrix = f.matrix.copy()
        matrix[:, :2] *= scale
        record = FaceRecord(
            file="",
            mask="",
            source=source,
            source_id="",
            frame=frame,
            time=None if t is None else round(t, 4),
            face_index=k,
            bbox=[round(v / scale, 2) for v in f.bbox],
            landmarks=np.round(lm, 2).tolist(),
            aligned_landmarks=np.round(f.aligned_landmarks.astype(np.float64), 2).tolist(),
            matrix=matrix.tolist(),
            size=f.size,
            score=round(f.score, 4),
            blur=round(f.blur, 2),
            pose={k2: round(v, 2) for k2, v in f.pose.items()},
            embedding=np.round(f.embedding.astype(np.float64), 6).tolist(),
        )
        out.append(FacePayload(record, f.embedding, _encode(f.aligned, fmt), _encode(f.mask, "png")))
    return out


def run_task(analyzer, task: Task, cfg: ExtractConfig) -> Iterator[tuple]:
    """Messages for one task: ("frame", task_id, frame, time, payloads) per frame, then
    ("done", task_id, frames_read, warning) or ("error", task_id, path, reason)."""
    item = task.item
    try:
        if item.kind == "unknown":
            item = InputItem(item.path, sniff_kind(item.path), item.order)
        if item.kind == "image":
            rgb, scale = read_image_scaled(item.path)
            payloads = _payloads(analyzer.analyze(rgb), str(item.path), None, None, scale, cfg.image_format)
            yield ("frame", task.task_id, None, None, payloads)
            yield ("done", task.task_id, 1, None)
        else:
            yield from _run_video(analyzer, task, item, cfg)
    except BadInputError as e:
        yield ("error", task.task_id, e.path, e.reason)
    except MemoryError:
        yield ("error", task.task_id, str(item.path), "out of memory while processing")
    except Exception as e:  # a bug or a library failure on one file must not end the whole run
        yield ("error", task.task_id, str(item.path), f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


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
            yield ("frame", task.task_id, index, t, _payloads(faces, str(item.path), index, t, 1.0, cfg.image_format))
        # An early end of stream is judged by the main process over all of a video's segments.
        warning = reader.error if reader.decode_failed else None
    if frames == 0 and task.start == 0:
        raise BadInputError(item.path, f"no frames could be decoded{f' ({reader.error})' if reader.error else ''}")
    yield ("done", task.task_id, frames, warning)


# ----------------------------------------------------------------------------------------------------
# All tasks: inline or in worker processes.


def _worker_main(cfg_dict: dict, tasks: "mp.Queue", results: "mp.Queue") -> None:
    from deepfake.config_io import from_dict
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


def run_tasks(tasks: list[Task], cfg: ExtractConfig, analyzer=None) -> Iterator[tuple]:
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
