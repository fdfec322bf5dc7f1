"""Extract's worker side: one task from file to encoded faces, and the processes that run the tasks.

A task runs end to end where it is executed (decode, detect, landmarks, smoothing, alignment, measures,
image encoding), so only small messages and encoded bytes cross to the main process. Identity
embeddings are the exception to "one frame at a time": each process queues its faces' chips across
frames and tasks and embeds them in batches (`embedded`), holding those frames' messages back until
then. Every task ends in one "done" or "error" message: a bad file or a dead worker costs that file
(or the files it held back), never the run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np
import torch

from deepfake.config import ExtractConfig

from deepfake.config_io import to_dict
from deepfake.errors import BadInputError, DeepfakeError
from deepfake.extract.inputs import InputItem, Task, sniff_kind
from deepfake.faceset import FaceRecord
from deepfake.io.images import read_image_scaled
from deepfake.io.video import VideoReader

WARMUP = 8  # frames a segment reads before its start, so smoothing and tracking are settled at the seam
INLINE_BELOW = 90  # frames of work: below this, starting worker processes costs more than it saves
EMBED_QUEUE = 32  # faces whose identity embeddings run as one batch
HOLD_MESSAGES = 64  # frames held back at most while their embeddings wait (their aligned faces stay in memory)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_CHECK_S = 1.0  # a worker blocked on a full result queue checks this often whether its parent lives


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


def _failure(e: BaseException) -> str:
    if isinstance(e, MemoryError):
        return "out of memory while processing"
    return f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def run_task(analyzer, task: Task, cfg: ExtractConfig) -> Iterator[tuple]:
    """Messages for one task: ("faces", task_id, frame, time, faces, source, scale) per frame, whose
    embeddings may still wait in the analyzer's queue (`embedded` turns them into "frame" messages),
    then ("done", task_id, frames_read, warning) or ("error", task_id, path, reason)."""
    item = task.item
    try:
        if item.kind == "unknown":
            item = InputItem(item.path, sniff_kind(item.path), item.order)
        if item.kind == "image":
            rgb, scale = read_image_scaled(item.path)
            faces = analyzer.analyze(rgb, defer_embedding=True)
            yield ("faces", task.task_id, None, None, faces, str(item.path), scale)
            yield ("done", task.task_id, 1, None)
        else:
            yield from _run_video(analyzer, task, item, cfg)
    except BadInputError as e:
        yield ("error", task.task_id, e.path, e.reason)
    except Exception as e:  # a bug or a library failure on one file must not end the whole run
        yield ("error", task.task_id, str(item.path), _failure(e))


def _run_video(analyzer, task: Task, item: InputItem, cfg: ExtractConfig) -> Iterator[tuple]:
    smoother = analyzer.new_smoother()
    warm_from = max(0, task.start - WARMUP * cfg.every)
    frames = 0
    with VideoReader(item.path, every=cfg.every, start=warm_from, stop=task.stop) as reader:
        for index, t, rgb in reader:
            faces = analyzer.analyze(rgb, smoother, t, defer_embedding=True)
            if index < task.start:
                continue  # warm-up: belongs to the previous segment
            frames += 1
            yield ("faces", task.task_id, index, t, faces, str(item.path), 1.0)
        # An early end of stream is judged by the main process over all of a video's segments.
        warning = reader.error if reader.decode_failed else None
    if frames == 0 and task.start == 0:
        raise BadInputError(item.path, f"no frames could be decoded{f' ({reader.error})' if reader.error else ''}")
    yield ("done", task.task_id, frames, warning)


def embedded(analyzer, messages: Iterator[tuple], cfg: ExtractConfig) -> Iterator[tuple]:
    """`run_task` messages, in order, with each "faces" message turned into ("frame", task_id, frame,
    time, payloads) once its embeddings are computed: messages are held back until EMBED_QUEUE faces
    (across frames and tasks) wait for an embedding, so the ResNet sees batches, not single faces."""
    held: list[tuple] = []
    for msg in messages:
        held.append(msg)
        if analyzer.pending_embeddings() >= EMBED_QUEUE or len(held) >= HOLD_MESSAGES:
            yield from _release(analyzer, held, cfg)
            held = []
    yield from _release(analyzer, held, cfg)


def _release(analyzer, held: list[tuple], cfg: ExtractConfig) -> Iterator[tuple]:
    """Embed the queue, then encode the held messages. A failure costs the tasks it touches: one
    "error" each, in place of their remaining messages."""
    try:
        analyzer.flush_embeddings()
        failure = None
    except Exception as e:
        failure = _failure(e)
    failed: set[int] = set()
    for msg in held:
        task_id = msg[1]
        if task_id in failed:
            continue
        if msg[0] != "faces":
            yield msg
            continue
        _, _, frame, t, faces, source, scale = msg
        try:
            if failure is not None and any(f.embedding is None for f in faces):
                raise DeepfakeError(f"identity embeddings {failure}")
            payloads = _payloads(faces, source, frame, t, scale, cfg.image_format)
        except Exception as e:
            failed.add(task_id)
            yield ("error", task_id, source, str(e) if isinstance(e, DeepfakeError) else _failure(e))
            continue
        yield ("frame", task_id, frame, t, payloads)


# ----------------------------------------------------------------------------------------------------
# All tasks: inline or in worker processes.


def _die_with_parent(parent: int) -> None:
    """Make this worker end when the extract process that started it does, even by SIGKILL or the OOM
    killer, which run no cleanup: orphaned, a worker would block forever on a full result queue.

    Linux: the kernel sends SIGKILL when the parent thread that started the worker (the one iterating
    `run_tasks`, alive as long as the pool) dies (PR_SET_PDEATHSIG): at once, even mid-frame, and a
    worker writes no files, so a hard kill loses nothing. The parent may have died before the call,
    hence the check after it. Elsewhere the worker notices at its next message (`_put`, the loop)."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: `_put`'s check remains
    if os.getppid() != parent:
        os._exit(1)


def _put(results: "mp.Queue", msg: tuple, parent: int) -> None:
    """Put a message, giving up (ending the process) once the parent is gone: nobody reads the queue."""
    while True:
        try:
            results.put(msg, timeout=PARENT_CHECK_S)
            return
        except queue.Full:
            if os.getppid() != parent:
                os._exit(1)


def _worker_main(cfg_dict: dict, tasks: "mp.Queue", results: "mp.Queue", parent: int) -> None:
    _die_with_parent(parent)
    from deepfake.config_io import from_dict
    from deepfake.faces.analyzer import FaceAnalyzer

    # Ctrl-C is the main process's to handle (it stops the workers and saves the manifest); a worker
    # catching it would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One process per core; nested threads would only fight over it.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    cfg = from_dict(ExtractConfig, cfg_dict)
    analyzer = FaceAnalyzer(cfg)

    def messages() -> Iterator[tuple]:
        while True:
            task = tasks.get()
            if task is None:
                return
            _put(results, ("start", task.task_id, mp.current_process().pid), parent)
            yield from run_task(analyzer, task, cfg)

    for msg in embedded(analyzer, messages(), cfg):
        if os.getppid() != parent:  # the parent died while this worker computed: its work is lost anyway
            os._exit(1)
        _put(results, msg, parent)


def run_tasks(tasks: list[Task], cfg: ExtractConfig, analyzer=None) -> Iterator[tuple]:
    """Messages from all tasks: in this process for small jobs, else from worker processes."""
    work = sum(1 if t.item.kind != "video" else max(1, ((t.stop or 10**6) - t.start)) for t in tasks)
    if cfg.workers <= 1 or work < INLINE_BELOW or len(tasks) == 0:
        if tasks and analyzer is None:
            from deepfake.faces.analyzer import FaceAnalyzer

            analyzer = FaceAnalyzer(cfg)
        yield from embedded(analyzer, (m for task in tasks for m in run_task(analyzer, task, cfg)), cfg)
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
    args = (to_dict(cfg), task_q, result_q, os.getpid())
    procs = [ctx.Process(target=_worker_main, args=args, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    # pid -> its started, unfinished tasks: several, since a worker holds messages back for batching.
    running: dict[int, set[int]] = {}
    pending = {t.task_id for t in tasks}
    try:
        while pending:
            try:
                msg = result_q.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                for p in dead:
                    procs.remove(p)
                    for task_id in sorted(running.pop(p.pid, set()) & pending):
                        pending.discard(task_id)
                        task = next(t for t in tasks if t.task_id == task_id)
                        yield ("error", task_id, str(task.item.path), f"worker process died (exit code {p.exitcode})")
                    replacement = ctx.Process(target=_worker_main, args=args, daemon=True)
                    replacement.start()
                    procs.append(replacement)  # it takes the sentinel the dead worker never read
                if not any(p.is_alive() for p in procs) and pending:
                    raise DeepfakeError("all extraction workers exited before finishing")
                continue
            if msg[0] == "start":
                running.setdefault(msg[2], set()).add(msg[1])
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
