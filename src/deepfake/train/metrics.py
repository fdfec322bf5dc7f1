"""What training reports: metrics.csv rows, the over-fitting rule, the progress bar's postfix and
TensorBoard.

The loss sums stay on the device between log boundaries; a row reads them once per `log_every` steps.

The over-fitting rule is defined once, here (`overfit_start`): training warns with it as it runs, and
evaluate marks the same point on its loss plot.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from deepfake import run_folder
from deepfake.run_folder import read_metrics  # noqa: F401  (metrics.csv's one reader, for this folder's users)
from deepfake.train.step import D_TERMS, G_TERMS
from deepfake.train.step_timer import StepTimer

log = logging.getLogger(__name__)

# What is summed on the device each step, in this order; averaged and logged every log_every steps.
TRAIN_KEYS = G_TERMS + D_TERMS + ("skipped",)
# gpu_busy: the share of wall time the device spent in the G and D phases (step_timer.py); data_ms: how
# long per step the model's stream spent on or waited for the data section; peak_mem_gib: CUDA's peak
# allocated memory so far (CUDA only).
METRIC_FIELDS = ("step",) + TRAIN_KEYS + ("val_loss", "val_a", "val_b", "lr", "faces_per_s", "gpu_busy",
                                          "data_ms", "peak_mem_gib", "wall_s")


# ----------------------------------------------------------------------------------------------------
# Over-fitting.

# How far above its minimum validation must stay to count as rising: a few validation faces move a
# loss on a plateau by a few percent from one validation to the next, and that is noise, not over-fitting.
OVERFIT_MARGIN = 0.05


def overfit_start(steps: Sequence[float], train_loss: Sequence[float], val_loss: Sequence[float],
                  patience: int) -> int | None:
    """The index of the validation minimum once the model has over-fitted past it, else None.

    Over-fitted: the `patience` (or more) validations after the minimum all lie above it, the last
    `patience` of them more than OVERFIT_MARGIN (relative) above it, while the training loss at the
    last of them is below its value at the minimum, i.e. more steps made the model better on the faces
    it trains on and worse on faces it has not seen (DFL's "over-trained").
    `train_loss[i]` is the training loss at `steps[i]`; non-finite points are ignored."""
    points = [(s, t, v) for s, t, v in zip(steps, train_loss, val_loss)
              if v is not None and t is not None and math.isfinite(v) and math.isfinite(t)]
    if len(points) < patience + 1:
        return None
    best = min(range(len(points)), key=lambda i: points[i][2])
    after = points[best + 1:]
    v_best = points[best][2]
    if len(after) < max(1, patience) or not all(p[2] > v_best for p in after):
        return None
    if not all(p[2] > v_best + OVERFIT_MARGIN * abs(v_best) for p in after[-max(1, patience):]):
        return None
    if not after[-1][1] < points[best][1]:
        return None
    best_step = points[best][0]
    return next(i for i, s in enumerate(steps) if s == best_step)


class OverfitWatch:
    """`overfit_start` over the validations so far: fires once for each minimum it finds past."""

    def __init__(self, patience: int, history: list[list[float]] | None = None, warned: float | None = None):
        self.patience = max(1, patience)
        self.history = history or []  # [step, train_loss, val_loss], saved in checkpoints
        self.warned = warned  # the step of the minimum last warned about

    def update(self, step: int, train_loss: float, val_loss: float) -> int | None:
        """Record a validation; the step of the validation minimum when this one shows over-fitting
        past it for the first time, else None."""
        if math.isnan(val_loss) or math.isnan(train_loss):
            return None
        self.history.append([step, train_loss, val_loss])
        steps, train, val = zip(*self.history)
        i = overfit_start(steps, train, val, self.patience)
        if i is None or steps[i] == self.warned:
            return None
        self.warned = steps[i]
        return int(steps[i])


# ----------------------------------------------------------------------------------------------------
# metrics.csv.


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    run_folder.write_metrics(path, rows, METRIC_FIELDS)


# ----------------------------------------------------------------------------------------------------
# Log rows.


@dataclass
class LogWindow:
    """What one log boundary took from the loop, for its row (`MetricsLog.write`)."""

    step: int
    on_cycle: bool  # a log_every boundary (its sums and timer marks were reset), not a peek
    lr: float
    count: int  # steps summed
    sums: torch.Tensor  # (len(TRAIN_KEYS),) the means over the window (across ranks), on the device
    faces_per_s: float
    wall_s: float  # the run's wall time at the boundary, earlier sessions included
    window_s: float  # wall time since the last on-cycle boundary
    marks: list  # StepTimer marks of the window's steps
    peak_mem_gib: float | None  # CUDA's peak allocated memory so far; None on the CPU
    val: torch.Tensor | None  # (2,) val_a, val_b when the window validated


class MetricsLog:
    """The rows of one run: written to metrics.csv, checked for over-fitting, shown on the bar and in
    TensorBoard. `main` False (DDP ranks other than 0) keeps the rows but writes and shows nothing."""

    def __init__(self, model_dir: Path, rows: list[dict[str, Any]], watch: OverfitWatch, timer: StepTimer,
                 bar, *, main: bool, gan: bool, cuda: bool, tensorboard: bool):
        self.path = model_dir / "metrics.csv"
        self.rows, self.watch, self.timer, self.bar = rows, watch, timer, bar
        self.main, self.gan, self.cuda = main, gan, cuda
        self.writer = _tensorboard(model_dir) if tensorboard and main else None
        self.warnings: list[int] = []  # steps at which over-fitting was reported
        self.busy_windows: list[float] = []

    def write(self, w: LogWindow) -> dict[str, Any]:
        """The metrics row of a log window: read its sums, timings and validation losses; warn; show."""
        means = w.sums.tolist()
        row: dict[str, Any] = {"step": w.step, **dict(zip(TRAIN_KEYS, means))}
        row["skipped"] = means[-1] * w.count  # a count, not a mean
        row.update(lr=w.lr, faces_per_s=w.faces_per_s, wall_s=w.wall_s, val_loss=None, val_a=None, val_b=None)
        times = self.timer.summarize(w.marks, w.window_s)
        if times is not None:
            row.update(gpu_busy=times.busy, data_ms=times.data_ms)
            if w.on_cycle:
                self.busy_windows.append(times.busy)
        if w.peak_mem_gib is not None:
            row["peak_mem_gib"] = w.peak_mem_gib
        if w.val is not None:
            row["val_a"], row["val_b"] = w.val.tolist()
            row["val_loss"] = row["val_a"] + row["val_b"]
            best = self.watch.update(w.step, row["loss"], row["val_loss"])
            if best is not None:
                self.warnings.append(w.step)
                self._say(f"step {w.step}: validation loss ({row['val_loss']:.4f}) has stayed above its "
                          f"minimum at step {best} for {self.watch.patience}+ validations, the last "
                          f"{self.watch.patience} by over {OVERFIT_MARGIN:.0%}, while training loss fell "
                          f"({row['loss']:.4f}): over-fitting. Add more varied faces, or stop at an earlier checkpoint.", warn=True)
        if row["skipped"]:
            self._say(f"{int(round(row['skipped']))} step(s) skipped for a non-finite loss before step {w.step}")
        self.rows.append(row)
        if w.val is not None and self.main:
            write_metrics(self.path, self.rows)  # live, between checkpoints too
        self._show(row)
        return row

    def save(self) -> None:
        """metrics.csv with every row up to now (a checkpoint's metrics hold every row to its step)."""
        if self.main:
            write_metrics(self.path, self.rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def steady_busy(self) -> float | None:
        """The mean device-busy share; the first window pays for compilation and warm-up and is left out
        when there are others."""
        steady = self.busy_windows[1:] or self.busy_windows
        return sum(steady) / len(steady) if steady else None

    def _say(self, msg: str, warn: bool = False) -> None:
        # Through logging only (the CLI's handler writes above the progress bar), so it shows once.
        if self.main:
            (log.warning if warn else log.info)(msg)

    def _show(self, row: dict[str, Any]) -> None:
        post = {"loss": f"{row['loss']:.4f}", "faces/s": f"{row['faces_per_s']:.0f}"}
        if row.get("gpu_busy") is not None and self.cuda:
            post["busy"] = f"{row['gpu_busy']:.0%}"
        if self.gan:
            post.update(d=f"{row['loss_d']:.3f}", acc=f"{row['d_acc_real']:.2f}/{row['d_acc_fake']:.2f}")
        if row["val_loss"] is not None:
            post["val"] = f"{row['val_loss']:.4f}"
        self.bar.set_postfix(post, refresh=False)
        if self.writer is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    self.writer.add_scalar(k, v, row["step"])


def _tensorboard(model_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(model_dir / "tensorboard"))
