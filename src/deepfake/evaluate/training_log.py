"""The training run's own log (MODEL_DIR/metrics.csv): loss curves and what the training cost. The file is
read by run_folder's one reader; its columns are the ones train/metrics.py writes (METRIC_FIELDS)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.run_folder import read_metrics


def read_training_log(model_dir: Path) -> dict[str, Any]:
    """Loss curves and cost from MODEL_DIR/metrics.csv: the G loss (`loss`) and `val_loss` per step, the
    run's `wall_s`, and the median `faces_per_s` and `gpu_busy`, the largest `peak_mem_gib`."""
    out: dict[str, Any] = {"train": ([], []), "val": ([], []), "steps": None, "wall_seconds": None, "faces_per_s": None,
                           "gpu_busy": None, "peak_mem_gib": None, "throughput": ([], [], [])}
    rows = [r for r in read_metrics(Path(model_dir) / "metrics.csv") if isinstance(r.get("step"), int)]
    if not rows:
        return out

    def num(row: dict[str, Any], col: str) -> float | None:
        v = row.get(col)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    def column(col: str) -> list[float]:
        return [v for r in rows if (v := num(r, col)) is not None]

    for name, col in (("train", "loss"), ("val", "val_loss")):
        for row in rows:
            v = num(row, col)
            if v is not None:
                out[name][0].append(float(row["step"]))
                out[name][1].append(v)
    out["steps"] = max(r["step"] for r in rows)
    wall, fps, busy, mem = column("wall_s"), column("faces_per_s"), column("gpu_busy"), column("peak_mem_gib")
    out["wall_seconds"] = max(wall) if wall else None
    out["faces_per_s"] = float(np.median(fps)) if fps else None
    out["gpu_busy"] = float(np.median(busy)) if busy else None
    out["peak_mem_gib"] = max(mem) if mem else None
    for row in rows:  # (steps, faces/s, busy) where the row has both
        f, b = num(row, "faces_per_s"), num(row, "gpu_busy")
        if f is not None and b is not None:
            for values, value in zip(out["throughput"], (float(row["step"]), f, b)):
                values.append(value)
    return out
