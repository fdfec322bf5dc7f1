"""What every training loop does with its folder and its clock, written once: `train`, `mask train` (the
segmenter) and `discriminator` (D alone) use it.

- stop_signals: Ctrl-C and SIGTERM as a clean stop (save, then exit);
- RunBar: the progress bar, in steps against the step limit, or in seconds against the time budget when
  only --minutes limits the run;
- write_metrics / read_metrics: the folder's metrics.csv, one writer and one reader;
- snapshots: checkpoints/step_XXXXXX/ written into a hidden folder and renamed in one step, the newest
  `keep` kept, the newest readable one found for resume; optimizer states as safetensors + JSON.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch

from deepfake.errors import ModelDirError
from deepfake.io.atomic import atomic_path, atomic_write_json, atomic_write_text, fsync_path
from deepfake.model_dir import SNAPSHOTS, list_snapshots, load_tensors, save_tensors

log = logging.getLogger(__name__)

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------
# Signals.

@contextlib.contextmanager
def stop_signals() -> Iterator[dict[str, str | None]]:
    """SIGINT (Ctrl-C) and SIGTERM (`kill`, `docker stop`, systemd, SLURM) set state["stop"] to the
    signal's name; the loop checks it after each step, saves and exits. A second signal aborts at once:
    snapshots are written atomically, so the last complete one stays intact. Off the main thread
    (signals can only be handled there) the flag simply never changes."""
    state: dict[str, str | None] = {"stop": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if state["stop"] is not None:
            log.warning("%s again: exiting without saving; the last complete checkpoint is kept", name)
            raise KeyboardInterrupt
        state["stop"] = name
        log.warning("%s: saving after this step (send it again to exit without saving)", name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------------------------------
# The progress bar.


class RunBar:
    """The loop's bar. With a step limit it counts steps; when only a time budget limits the run it counts
    the budget's seconds (the step in its description), so its ETA is the budget's end, not a guess at a
    step count nothing sets. `advance(step)` after each step; everything else is tqdm's."""

    def __init__(self, start: int, end: int | None, minutes: float | None, enabled: bool):
        from tqdm import tqdm

        self.by_time = end is None and bool(minutes)
        if self.by_time:
            self.bar = tqdm(total=round(60 * minutes), desc=f"step {start}", unit="s", disable=not enabled,
                            dynamic_ncols=True)
        else:
            self.bar = tqdm(total=end, initial=start, unit="step", disable=not enabled, dynamic_ncols=True)
        self.t0 = time.perf_counter()

    def advance(self, step: int) -> None:
        if not self.by_time:
            self.bar.update(1)
            return
        self.bar.set_description_str(f"step {step}", refresh=False)
        spent = min(int(time.perf_counter() - self.t0), self.bar.total)
        if spent > self.bar.n:
            self.bar.update(spent - self.bar.n)

    def __getattr__(self, name: str) -> Any:  # set_postfix, write, close: the tqdm bar's own
        return getattr(self.bar, name)


# ----------------------------------------------------------------------------------------------------
# metrics.csv.


def write_metrics(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """The rows as CSV with the given columns (others left out), floats to 6 significant digits."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """metrics.csv as dicts: `step` an int, numbers floats, empty cells None, text (a phase) as it is;
    [] when the file is missing or unreadable (it is a log, not state)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row: dict[str, Any] = {}
        for k, v in raw.items():
            if v in ("", None):
                row[k] = None
                continue
            try:
                row[k] = int(v) if k == "step" else float(v)
            except ValueError:
                row[k] = v
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------
# Snapshots.


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and the JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, slots in state_dict["state"].items():
        plain[str(pid)] = {}
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value
            else:
                plain[str(pid)][name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain": plain}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(slots) for pid, slots in meta["plain"].items()}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


@contextlib.contextmanager
def snapshot_folder(model_dir: str | Path, step: int) -> Iterator[Path]:
    """A hidden temp folder to write the snapshot of `step` into. On a clean exit it is fsynced and
    renamed to checkpoints/step_XXXXXX in one step (replacing a snapshot of the same step), so a
    `step_*` folder is always complete; on an error it is removed. Used by `train` and `mask train`."""
    root = Path(model_dir) / SNAPSHOTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_path(tmp)
        if final.exists():  # the same step saved again (e.g. Ctrl-C right after a resume)
            _discard(final)
        os.rename(tmp, final)
        fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_optimizer(folder: Path, name: str, state_dict: dict[str, Any]) -> None:
    """An optimizer's state_dict as NAME.safetensors (its tensors) and NAME.json (the rest)."""
    tensors, plain = flatten_optimizer(state_dict)
    save_tensors(folder / f"{name}.safetensors", tensors)
    atomic_write_json(folder / f"{name}.json", plain)


def load_optimizer(folder: Path, name: str, device: str = "cpu") -> dict[str, Any]:
    meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    return unflatten_optimizer(load_tensors(folder / f"{name}.safetensors", device), meta)


def publish(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(src, tmp)


def _discard(folder: Path) -> None:
    # Rename first (atomic), so a kill during the slow delete leaves no half-deleted step_* folder.
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def rotate_snapshots(model_dir: str | Path, keep: int) -> None:
    """Drop leftovers of killed saves, then all but the newest `keep` (at least one) snapshots."""
    root = Path(model_dir) / SNAPSHOTS
    for stale in list(root.glob(".tmp-*")) + list(root.glob(".trash-*")):
        shutil.rmtree(stale, ignore_errors=True)
    snaps = list_snapshots(model_dir)
    for old in snaps[: max(0, len(snaps) - max(1, keep))]:
        _discard(old)


def newest_readable(model_dir: str | Path, load: Callable[[Path], T]) -> T | None:
    """`load` of the newest snapshot folder it can read, or None when there is none."""
    for folder in reversed(list_snapshots(model_dir)):
        try:
            return load(folder)
        except (ModelDirError, OSError, ValueError, KeyError):
            continue  # damaged by something other than us (the rename makes ours complete); try older
    return None
