"""`deepfake live` as a library call: a source, a model, and the outputs, on three threads.

    capture (thread) --newest wins--> landmarks + align (thread) --newest wins--> model + compose + mark
    (caller) -> file (encoder thread), virtual camera, `on_frame`

Every check that can fail does so before the first frame: options, the output file's container and folder,
the model, the source, the virtual camera. A failure after that (a camera that stops) removes the
partial file: only a run that ends normally (the source's end, a --frames/--seconds limit, Ctrl-C) keeps it.
A run that fails also removes the empty folders it made for its outputs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deepfake.config_io import save_json
from deepfake.errors import OutputError
from deepfake.io.atomic import atomic_write_json
from deepfake.config import LiveConfig
from deepfake.live.engine import LiveEngine
from deepfake.live.mailbox import Closed, Latest
from deepfake.live.stats import LiveStats

log = logging.getLogger(__name__)

RESPONSIBLE_USE = ("watermark off: a live stream carries no metadata, so nothing marks these frames as synthetic. "
                   "Tell your viewers, and only swap faces of people who consented.")


@dataclass
class LiveResult:
    stats: LiveStats
    output: Path | None
    stopped: str  # why the run ended: source ended | frame limit | time limit | interrupted

    def line(self) -> str:
        where = f"{self.output}: " if self.output else ""
        return f"{where}{self.stats.line()} ({self.stopped})"


def check_outputs(output: Path | None, stats_path: Path | None) -> None:
    from deepfake.io.video_writer import container_format
    from deepfake.swap.checks import check_writable

    if output is not None:
        container_format(output)
        for path in (output, settings_path(output)):
            if path.is_dir():
                raise OutputError(f"{path}: is a folder (give the file to write)")
        check_writable(output.parent)
    if stats_path is not None:
        if stats_path.suffix.lower() != ".json":
            raise OutputError(f"{stats_path}: --stats writes JSON (use a .json name)")
        if stats_path.is_dir():
            raise OutputError(f"{stats_path}: is a folder (give the file --stats writes)")
        check_writable(stats_path.parent)


def settings_path(output: Path) -> Path:
    """Where the settings of a run recorded to `output` are saved."""
    return output.with_name(output.name + ".live.json")


def _credential(source, model, cfg: LiveConfig, mark, output: Path):
    """The -o file's Content Credentials: a swap into the source file (its ingredient) or a camera."""
    from deepfake.provenance.credentials import Credential, why_unsigned

    reason = why_unsigned(output)
    if reason:
        log.warning("%s", reason)
        return None
    path = Path(source) if isinstance(source, (str, Path)) and Path(source).is_file() else None
    return Credential(source=path, source_type="composite", model=model.fingerprint,
                      invisible_mark=mark or None, description="live face swap",
                      sign_cert=Path(cfg.sign_cert) if cfg.sign_cert else None,
                      sign_key=Path(cfg.sign_key) if cfg.sign_key else None)


def run_live(source, camera: int | None, model_path: str | Path, cfg: LiveConfig,
             output: str | Path | None = None, stats_path: str | Path | None = None, progress: bool = True,
             on_frame: Callable[[np.ndarray], None] | None = None) -> LiveResult:
    """Swap `source` (a SOURCE string, None with `camera`, or an opened source of sources.py) until it ends,
    a limit is reached or Ctrl-C. `on_frame(rgb)` sees every output frame."""
    from deepfake.swap.checks import new_folders_removed_on_failure, validate_config

    output = None if output is None else Path(output)
    stats_path = None if stats_path is None else Path(stats_path)
    validate_config(cfg.swap_config())
    with new_folders_removed_on_failure(*(p.parent for p in (output, stats_path) if p is not None)):
        return _run(source, camera, model_path, cfg, output, stats_path, progress, on_frame)


def _run(source, camera: int | None, model_path: str | Path, cfg: LiveConfig, output: Path | None,
         stats_path: Path | None, progress: bool, on_frame: Callable[[np.ndarray], None] | None) -> LiveResult:
    from deepfake.live.model import open_live_model
    from deepfake.live.sinks import FileSink, VirtualCamera
    from deepfake.live.sources import open_source
    from deepfake.provenance.credentials import signed_output
    from deepfake.provenance.label import make_record

    check_outputs(output, stats_path)
    # `cfg` as the model runs it: an exported file's own direction and checkpoint, recorded below.
    model, cfg = open_live_model(model_path, cfg)
    src = source if hasattr(source, "frames") else open_source(source, camera)
    stats = LiveStats()
    try:
        engine = LiveEngine(model, cfg, stats.stages)
        info = src.info
        with contextlib.ExitStack() as stack:
            outputs: list[Callable] = []  # each called with (index, rgb, face)
            if cfg.virtual_camera:
                cam = VirtualCamera(info.width, info.height, info.fps)
                stack.callback(cam.close)
                log.info("virtual camera: %s", cam.name)
                outputs.append(lambda i, rgb, face: cam.write(rgb))
            if output is not None:
                from deepfake.provenance.watermark import payload_hex

                mark = payload_hex(engine.payload) if engine.payload is not None else False
                record = make_record(model.name, model_step=model.step, direction=cfg.direction, source=info.name,
                                     live=True, invisible_mark=mark)
                # Signed Content Credentials: the file is written under a staging name and signed onto
                # `output` in one rename when the sink closes (entered first, so it exits last).
                target = stack.enter_context(signed_output(output, _credential(source, model, cfg, mark, output)))
                sink = stack.enter_context(FileSink(target, info.fps, info.width, info.height, record, cfg.crf,
                                                    cfg.preset))
                from deepfake.io.background import BackgroundWriter

                # The invisible mark is embedded here, on the encoder's thread: the file gets it without the
                # live outputs waiting for it.
                encode = BackgroundWriter(lambda item: sink.write(item[0], engine.mark_invisibly(item[1], item[2])),
                                          depth=4, name="live-encode")
                stack.callback(encode.close)  # runs before the sink closes: everything put is written
                outputs.append(lambda i, rgb, face: encode.put((i, rgb.copy(), face)))  # marked in place
            if on_frame is not None:
                outputs.append(lambda i, rgb, face: on_frame(rgb))
            # Numpy's BLAS on one thread per caller: with capture, landmarks, model and encoder already on
            # their own threads, BLAS's worker threads only spin against them (measured on the 2-core box
            # under load: the invisible mark's two small products took 32 ms a face, 1.5 ms on one thread).
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                stopped = _loop(src, engine, cfg, stats, outputs, progress)
        stats.end = stats.end or time.perf_counter()
    finally:
        src.close()
    if output is not None:
        save_json(cfg, settings_path(output))
    if stats_path is not None:
        atomic_write_json(stats_path, stats.as_dict())
    return LiveResult(stats, output, stopped)


def _loop(src, engine: LiveEngine, cfg: LiveConfig, stats: LiveStats, outputs, progress: bool) -> str:
    from tqdm import tqdm

    stop = threading.Event()
    captured, analyzed = Latest(), Latest()
    why = {"stopped": "source ended"}

    def capture():
        try:
            for item in src.frames(stop):
                stats.frames_in += 1
                captured.put(item)
                if cfg.frames and stats.frames_in >= cfg.frames:
                    why["stopped"] = "frame limit"
                    break
                if cfg.seconds and time.perf_counter() - stats.start >= cfg.seconds:
                    why["stopped"] = "time limit"
                    break
            captured.close()
        except BaseException as e:  # handed to the caller through the mailboxes
            captured.close(e)

    def analysis():
        try:
            while True:
                try:
                    index, t, rgb = captured.take(0.2)
                except TimeoutError:
                    if stop.is_set():
                        return
                    continue
                except Closed:
                    analyzed.close(captured.error)
                    return
                analyzed.put((index, t, rgb, engine.analyze(rgb)))
        except BaseException as e:
            analyzed.close(e)

    threads = [threading.Thread(target=capture, name="live-capture", daemon=True),
               threading.Thread(target=analysis, name="live-landmarks", daemon=True)]
    stats.start = time.perf_counter()
    for t in threads:
        t.start()
    bar = tqdm(desc="live", unit="frame", disable=not progress)
    try:
        while True:
            try:
                index, t0, rgb, face = analyzed.take(0.2)
            except TimeoutError:
                continue
            except Closed:
                if analyzed.error is not None:
                    raise analyzed.error from None
                break
            out = engine.render(rgb, face)
            with stats.stages.stage("output"):
                for write in outputs:
                    write(index, out, face)
            stats.latency_ms.append((time.perf_counter() - t0) * 1000.0)
            stats.frames_out += 1
            stats.frames_swapped += face is not None
            stats.dropped = captured.dropped + analyzed.dropped
            bar.update(1)
    except KeyboardInterrupt:
        why["stopped"] = "interrupted"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        bar.close()
        stats.end = time.perf_counter()
        # Every source frame that never reached the outputs was dropped, by a mailbox or left in one at the end.
        stats.dropped = stats.frames_in - stats.frames_out
    return why["stopped"]
