"""The training run's own log (MODEL_DIR/metrics.csv): loss curves and what the training cost."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np


def read_training_log(model_dir: Path) -> dict[str, Any]:
    """Loss curves and cost from MODEL_DIR/metrics.csv. Columns are matched by name, tolerantly:
    step, loss/train loss, val_loss, time/elapsed, faces_per_s, gpu_busy, peak_mem_gib."""
    path = model_dir / "metrics.csv"
    out: dict[str, Any] = {"train": ([], []), "val": ([], []), "steps": None, "wall_seconds": None, "faces_per_s": None,
                           "gpu_busy": None, "peak_mem_gib": None, "throughput": ([], [], [])}
    if not path.is_file():
        return out
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return out
    cols = rows[0].keys()

    def pick(*names: str) -> str | None:
        return next((c for n in names for c in cols if c == n), None)

    c_step = pick("step")
    c_loss = pick("loss_g", "g_loss", "loss", "train_loss", "loss_total", "total")
    c_val = pick("val_loss", "loss_val", "val_total", "val")
    c_time = pick("elapsed_s", "elapsed", "wall_s", "time_s", "seconds", "time")
    c_fps = pick("faces_per_s", "faces_s", "faces/s")
    c_busy = pick("gpu_busy", "busy")
    c_mem = pick("peak_mem_gib")

    def num(row: dict[str, str], col: str | None) -> float | None:
        try:
            v = float(row[col]) if col and row.get(col) not in (None, "") else None
        except ValueError:
            return None
        return v if v is None or np.isfinite(v) else None

    for row in rows:
        step = num(row, c_step)
        if step is None:
            continue
        for name, col in (("train", c_loss), ("val", c_val)):
            v = num(row, col)
            if v is not None:
                out[name][0].append(step)
                out[name][1].append(v)
    steps = [num(r, c_step) for r in rows if num(r, c_step) is not None]
    out["steps"] = int(max(steps)) if steps else None
    times = [num(r, c_time) for r in rows if num(r, c_time) is not None]
    out["wall_seconds"] = max(times) if times else None
    fps = [num(r, c_fps) for r in rows if num(r, c_fps) is not None]
    out["faces_per_s"] = float(np.median(fps)) if fps else None
    busy = [num(r, c_busy) for r in rows if num(r, c_busy) is not None]
    out["gpu_busy"] = float(np.median(busy)) if busy else None
    mem = [num(r, c_mem) for r in rows if num(r, c_mem) is not None]
    out["peak_mem_gib"] = max(mem) if mem else None
    for row in rows:  # (steps, faces/s, busy) where the row has both
        step, f, b = num(row, c_step), num(row, c_fps), num(row, c_busy)
        if step is not None and f is not None and b is not None:
            for column, value in zip(out["throughput"], (step, f, b)):
                column.append(value)
    return out
