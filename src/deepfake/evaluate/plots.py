"""Plots for evaluate and sweep reports (matplotlib, Agg backend; every file written atomically)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deepfake.io.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------
# Training curves.


def overfit_step(curves: dict[str, Any], patience: int = 3) -> int | None:
    """The step where over-fitting starts, by training's own rule (train.metrics.overfit_start), from
    `curves` {"train": (steps, loss), "val": (steps, loss)}; the training loss is read at each
    validation step (interpolated between its logged rows)."""
    from deepfake.train.metrics import overfit_start

    if "val" not in curves or not len(curves["val"][0]) or "train" not in curves or not len(curves["train"][0]):
        return None
    steps, val = (np.asarray(x, dtype=np.float64) for x in curves["val"])
    train_steps, train = (np.asarray(x, dtype=np.float64) for x in curves["train"])
    i = overfit_start(steps.tolist(), np.interp(steps, train_steps, train).tolist(), val.tolist(), patience)
    return None if i is None else int(steps[i])


def plot_loss_curves(curves: dict[str, Any], path: Path, patience: int = 3) -> int | None:
    """Training and validation loss against step; the over-fitting point (`overfit_step`), if any, is
    marked. `curves`: {"train": (steps, loss), "val": (steps, loss)}. Returns the over-fitting step or None.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    marked = overfit_step(curves, patience)
    for name, style in (("train", "-"), ("val", "o-")):
        if name in curves and len(curves[name][0]):
            steps, loss = curves[name]
            ax.plot(steps, loss, style, label=f"{name} loss", markersize=3)
    if marked is not None:
        steps, loss = curves["val"]
        i = list(steps).index(marked)
        ax.axvline(marked, color="red", linestyle="--", alpha=0.7)
        ax.plot([steps[i]], [loss[i]], "r*", markersize=14, label=f"over-fitting starts (step {marked})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
    return marked


def plot_throughput(series, path: Path) -> bool:
    """Faces/s and the device-busy fraction against step, from metrics.csv. `series` = (steps, faces/s,
    busy). Returns False (and writes nothing) when the log has no such columns (older runs)."""
    steps, fps, busy = series
    if not len(steps):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, fps, "-", color="tab:blue", label="faces/s")
    ax.set_xlabel("step")
    ax.set_ylabel("faces/s", color="tab:blue")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    right = ax.twinx()
    right.plot(steps, busy, "-", color="tab:orange", label="device busy")
    right.axhline(0.95, color="tab:orange", linestyle=":", alpha=0.6, label="95 % busy")
    right.set_ylabel("device busy (G+D time / wall time)", color="tab:orange")
    right.set_ylim(0, 1.05)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower right")
    ax.set_title("Training throughput and device busy fraction")
    _save(fig, path)
    return True


# ----------------------------------------------------------------------------------------------------
# Metric bars and swap grid.


def plot_metric_bars(groups: dict[str, dict[str, float]], path: Path) -> None:
    """One panel per metric, one bar per side/direction. `groups`: metric -> {label: value}."""
    plt = _pyplot()
    groups = {k: v for k, v in groups.items() if v}
    n = max(1, len(groups))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (metric, values) in zip(axes.ravel(), groups.items()):
        labels = list(values)
        heights = [values[k] if values[k] is not None and np.isfinite(values[k]) else 0.0 for k in labels]
        ax.bar(labels, heights, color=["tab:blue", "tab:orange", "tab:green", "tab:red"][: len(labels)])
        for x, h in enumerate(heights):
            ax.text(x, h, f"{h:.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    for ax in axes.ravel()[len(groups):]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)


def save_swap_grid(rows: Sequence[tuple[str, Sequence[np.ndarray]]], path: Path) -> None:
    """A labelled image grid: one row per (label, list of uint8 RGB images of equal size)."""
    from PIL import Image, ImageDraw

    rows = [(label, list(images)) for label, images in rows if len(images)]
    if not rows:
        return
    size = rows[0][1][0].shape[0]
    label_w = 110
    cols = max(len(images) for _, images in rows)
    canvas = Image.new("RGB", (label_w + cols * size, len(rows) * size), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        draw.text((4, r * size + size // 2 - 6), label, fill=(0, 0, 0))
        for c, img in enumerate(images):
            canvas.paste(Image.fromarray(np.ascontiguousarray(img)), (label_w + c * size, r * size))
    with atomic_path(path) as tmp:
        canvas.save(tmp)


# ----------------------------------------------------------------------------------------------------
# Sweep plots.


def plot_quality_vs_cost(rows: Sequence[dict[str, Any]], metric: str, path: Path) -> None:
    """Quality (the ranking metric) against cost (parameters and training throughput)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, cost, xlabel in (
        (axes[0], "params", "autoencoder parameters"),
        (axes[1], "train_seconds", "training wall time (s)"),
    ):
        for r in rows:
            x, y = r.get(cost), r.get(metric)
            if not isinstance(x, (int, float)) or not isinstance(y, (int, float)) or not np.isfinite(y):
                continue
            ax.scatter([x], [y], marker="*" if r.get("baseline") else "o", s=120 if r.get("baseline") else 40)
            tag = " (baseline)" if r.get("baseline") and r["variant"] != "baseline" else ""
            ax.annotate(r["variant"] + tag, (x, y), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Quality ({metric}) against cost")
    fig.tight_layout()
    _save(fig, path)


def plot_knob_effects(points: Sequence[tuple[str, str, Any]], metric: str, path: Path) -> None:
    """Each knob's effect: the mean metric of the variants that share each value of that knob.

    `points`: (knob, value label, metric value) for every finished variant and every knob.
    """
    plt = _pyplot()
    by_knob: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for knob, value, y in points:
        if isinstance(y, (int, float)) and np.isfinite(y):
            by_knob[knob][value].append(float(y))
    n = max(1, len(by_knob))
    cols = min(n, 5)  # a one-at-a-time grid has a knob per variant: wrap them into rows
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.5 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (knob, values) in zip(axes.ravel(), sorted(by_knob.items())):
        labels = list(values)
        means = [float(np.mean(values[k])) for k in labels]
        # Markers, not bars: sweep differences are often small, and bars from zero would hide them.
        ax.plot(range(len(labels)), means, "o-", color="tab:blue", markersize=8, label="mean")
        for x, k in enumerate(labels):
            ax.scatter([x] * len(values[k]), values[k], color="black", s=12, zorder=3)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.grid(alpha=0.3)
        ax.set_title(knob, fontsize=10)
        ax.set_ylabel(f"mean {metric}")
        ax.tick_params(axis="x", labelsize=8, rotation=20)
    fig.tight_layout()
    _save(fig, path)


def plot_variant_metrics(rows: Sequence[dict[str, Any]], metrics: Sequence[tuple[str, str]], path: Path) -> None:
    """Every finished variant's value of each metric, one panel a metric, with the baseline's value as a
    vertical line: the picture of a one-at-a-time study. `rows` are ranked result rows (best first);
    `metrics` are (key, label) pairs."""
    plt = _pyplot()
    names = [r["variant"] for r in rows]
    base = next((r for r in rows if r.get("baseline")), None)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.32 * len(names) + 1.4),
                             sharey=True, squeeze=False)
    for ax, (key, label) in zip(axes.ravel(), metrics):
        values = [float(r[key]) if isinstance(r.get(key), (int, float)) else np.nan for r in rows]
        colours = ["tab:green" if r.get("baseline") else "tab:blue" for r in rows]
        ax.barh(range(len(names)), values, color=colours, height=0.6)
        if base is not None and isinstance(base.get(key), (int, float)):
            ax.axvline(float(base[key]), color="black", lw=0.8, ls="--")
        finite = [v for v in values if np.isfinite(v)]
        if finite:  # zoom in: the differences are small against the values
            lo, hi = min(finite), max(finite)
            pad = (hi - lo) * 0.15 or abs(hi) * 0.05 or 0.05
            ax.set_xlim(lo - pad, hi + pad)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_yticks(range(len(names)), names)
    axes[0, 0].invert_yaxis()
    fig.tight_layout()
    _save(fig, path)
