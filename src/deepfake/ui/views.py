"""What the pages show, read from the workspace as the CLI left it: a faceset's counts and flagged
faces, a model's training curves, previews and checkpoints, a report folder as HTML.

Nothing here writes. Changes (extract, clean, train, ...) are jobs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from deepfake.ui import charts, markdown
from deepfake.ui.workspace import Workspace

INFO_PLOTS = ("contact_sheet.png", "pose_histogram.png")


def file_url(ws: Workspace, path: Path) -> str:
    return "/api/file?path=" + quote(ws.rel(path))


# ----------------------------------------------------------------------------------------------------
# Facesets.


def faceset_view(ws: Workspace, name: str, thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts, the info plots (and whether they predate the manifest), and the faces `faceset clean`
    would drop with `thresholds` (its defaults when None)."""
    from deepfake.faceset import MANIFEST, read_faceset

    root = ws.child("facesets", name)
    fs = read_faceset(root)
    recs = fs.records
    manifest_time = (root / MANIFEST).stat().st_mtime
    plots = {}
    stale = not recs
    for plot in INFO_PLOTS:
        p = root / "info" / plot
        if p.is_file():
            plots[plot.removesuffix(".png")] = file_url(ws, p) + f"&v={int(p.stat().st_mtime)}"
            stale = stale or p.stat().st_mtime < manifest_time
        else:
            stale = True
    sources = Counter(Path(r.source).name for r in recs)
    return {
        "name": name, "path": ws.rel(root), "faces": len(recs), "size": fs.size, "coverage": fs.coverage,
        "stills": sum(r.frame is None for r in recs), "video_frames": sum(r.frame is not None for r in recs),
        "sources": dict(sources.most_common(20)), "plots": plots, "info_stale": bool(recs) and stale,
        "flagged": clean_preview(ws, name, thresholds) if recs else {"kept": 0, "dropped": {}, "faces": []},
    }


def clean_preview(ws: Workspace, name: str, thresholds: dict[str, Any] | None) -> dict[str, Any]:
    """`deepfake faceset clean --dry-run`'s answer, face by face: kept count, counts per reason, and
    each face it would drop with its reason and picture."""
    from deepfake.faceset.tools import CleanThresholds, clean_faceset

    root = ws.child("facesets", name)
    th = CleanThresholds() if thresholds is None else CleanThresholds(**thresholds)
    result = clean_faceset(root, th, dry_run=True)
    faces = [{"file": f, "reason": why, "url": file_url(ws, root / f)} for f, why in result.dropped_files]
    return {"kept": result.kept, "dropped": result.dropped, "faces": faces, "lines": result.lines()}


# ----------------------------------------------------------------------------------------------------
# Training.


def ema(values: list[float | None], weight: float) -> list[float | None]:
    """TensorBoard's smoothing: an exponential moving average, debiased so it starts at the data."""
    out, acc, norm = [], 0.0, 0.0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(None)
            continue
        acc, norm = acc * weight + v, norm * weight + 1.0
        out.append(acc / norm)
    return out


def _step_of(name: str) -> int | None:
    m = re.search(r"step_(\d+)", name)
    return int(m[1]) if m else None


def checkpoints_view(model_dir: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The steps whose weights the folder keeps (model_dir.kept_steps: rotated snapshots and the
    never-rotated timeline), the best checkpoint (BEST/, its step from the weights' metadata, its
    validation loss from metrics.csv) and the step of the latest weights."""
    from deepfake.model_dir import AUTOENCODER, BEST, TIMELINE, kept_steps, step_of

    kept = kept_steps(model_dir)
    best = None
    weights = model_dir / BEST / AUTOENCODER
    if weights.is_file():
        step = step_of(weights)
        val = next((r["val_loss"] for r in rows if r["step"] == step and r.get("val_loss") is not None), None)
        best = {"step": step, "val_loss": val, "path": f"{BEST}/"}
    latest = model_dir / AUTOENCODER
    return {
        "checkpoints": list(kept),
        "kept": [{"step": s, "timeline": p.parent.name == TIMELINE} for s, p in kept.items()],
        "best": best, "last_saved": step_of(latest) if latest.is_file() else None,
    }


def _eta(rows: list[dict[str, Any]], target: int | None) -> float | None:
    """Seconds left to `target`, from the recent pace in metrics.csv's wall_s column."""
    timed = [(r["step"], r["wall_s"]) for r in rows if r.get("wall_s") is not None]
    if target is None or len(timed) < 2:
        return None
    (s0, w0), (s1, w1) = timed[max(0, len(timed) - 6)], timed[-1]
    if s1 <= s0 or w1 <= w0:
        return None
    return max(0.0, (target - s1) * (w1 - w0) / (s1 - s0))


def training_view(ws: Workspace, name: str, skip: int = 0, smooth: float = 0.6,
                  target: int | None = None) -> dict[str, Any]:
    """Everything the Train page draws for MODEL_DIR: loss per side with validation and the
    over-fitting point (training's own rule), faces/s and device busy, ETA, previews, checkpoints."""
    from deepfake.evaluate.plots import overfit_step
    from deepfake.errors import DeepfakeError
    from deepfake.model_dir import DISCRIMINATOR, read_config
    from deepfake.train.metrics import read_metrics

    model_dir = ws.child("models", name)
    try:
        config = dataclasses.asdict(read_config(model_dir))
    except DeepfakeError:  # not written yet (a queued run), or a folder this version cannot read
        config = {}
    metrics = ws.file_in(model_dir, "metrics.csv")  # a link out of the workspace reads as no metrics
    rows = read_metrics(metrics) if metrics is not None else []
    kept = checkpoints_view(model_dir, rows)
    best = (kept["best"] or {}).get("step")
    target = target or config.get("steps")
    val = [r for r in rows if r.get("val_loss") is not None]
    over = overfit_step({"train": ([r["step"] for r in rows], [r["loss"] for r in rows]),
                         "val": ([r["step"] for r in val], [r["val_loss"] for r in val])},
                        int(config.get("overfit_patience", 3)))
    shown = [r for r in rows if r["step"] > skip]
    shown_val = [r for r in val if r["step"] > skip]
    steps = [r["step"] for r in shown]
    vsteps = [r["step"] for r in shown_val]
    loss = charts.Chart([
        charts.Series("A train", steps, ema([r.get("loss_a") for r in shown], smooth), charts.PALETTE[0]),
        charts.Series("B train", steps, ema([r.get("loss_b") for r in shown], smooth), charts.PALETTE[1]),
        charts.Series("A val", vsteps, [r.get("val_a") for r in shown_val], charts.PALETTE[0], dots=True, dashed=True),
        charts.Series("B val", vsteps, [r.get("val_b") for r in shown_val], charts.PALETTE[1], dots=True, dashed=True),
    ], y_label="loss", title="loss per side (train smoothed, validation dashed)",
        markers=[m for m in (charts.Marker(over, f"over-fitting from step {over}") if over is not None else None,
                             charts.Marker(best, f"best {best}", "#2e7d4f") if best is not None else None)
                 if m is not None and m.x > skip])
    speed = charts.Chart([charts.Series("faces/s", steps, [r.get("faces_per_s") for r in shown], charts.PALETTE[2])],
                         y_label="faces/s", title="throughput", y_min=0)
    busy = charts.Chart([charts.Series("device busy %", steps,
                                       [None if r.get("gpu_busy") is None else 100 * r["gpu_busy"] for r in shown],
                                       charts.PALETTE[4])], y_label="%", title="device busy", y_min=0, y_max=100)
    previews = sorted(((_step_of(p.name), p) for p in (model_dir / "previews").glob("step_*.png")),
                      key=lambda sp: sp[0] or 0)
    last = rows[-1] if rows else {}
    return {
        "name": name, "path": ws.rel(model_dir), "preset": config.get("preset"), "config_steps": config.get("steps"),
        "pool": [Path(f).name for f in config.get("data", {}).get("pool", [])],  # a pretraining run's facesets
        "batch": config.get("batch"), "device": config.get("device"), "target": target,
        "step": last.get("step", 0), "loss": last.get("loss"), "val_loss": val[-1]["val_loss"] if val else None,
        "faces_per_s": last.get("faces_per_s"), "gpu_busy": last.get("gpu_busy"), "wall_s": last.get("wall_s"),
        "eta_s": _eta(rows, target), "overfit_step": over, "rows": len(rows),
        "charts": {"loss": charts.render(loss, 900, 300), "speed": charts.render(speed, 440, 170),
                   "busy": charts.render(busy, 440, 170)},
        "previews": [{"step": s, "url": file_url(ws, p) + f"&v={int(p.stat().st_mtime)}"} for s, p in previews],
        **kept, "keep_every": config.get("keep_every"),
        "discriminator": (model_dir / DISCRIMINATOR).is_file(),
    }


# ----------------------------------------------------------------------------------------------------
# Reports.


def report_view(ws: Workspace, rel: str) -> dict[str, Any]:
    """An evaluate (report.md, metrics.json), sweep (results.md, results.csv) or evaluate --timeline
    (timeline.png, timeline.json, timeline.md) folder: the Markdown as HTML with its plots, the sweep's ranked rows,
    the timeline picture with its marked steps."""
    from deepfake.ui.workspace import NotFoundError, report_kind

    folder = ws.resolve(rel, "outputs")
    kind = report_kind(folder) if folder.is_dir() else None
    if kind is None:
        raise NotFoundError(f"{rel}: no report.md, results.md or timeline.png (not an evaluate or sweep output)")

    def image_url(src: str) -> str | None:
        try:
            return file_url(ws, ws.resolve(f"{ws.rel(folder)}/{src}", "outputs"))
        except Exception:  # noqa: BLE001 - a plot that is missing or points outside shows as its alt text
            return None

    out: dict[str, Any] = {"path": ws.rel(folder), "kind": kind, "html": ""}

    def text(name: str) -> str | None:  # every file through the workspace: a link out of it reads as missing
        p = ws.file_in(folder, name)
        return None if p is None else p.read_text(encoding="utf-8", errors="replace")

    md = text("report.md") or text("results.md")
    if md is not None:
        out["html"] = markdown.to_html(md, image_url)
    summary = _json(text("metrics.json"))
    if isinstance(summary, dict):
        out["summary"] = summary.get("summary")
    picture = ws.file_in(folder, "timeline.png")
    if picture is not None:
        info = _json(text("timeline.json"))
        info = info if isinstance(info, dict) else {}
        out["timeline"] = {"url": file_url(ws, picture) + f"&v={int(picture.stat().st_mtime)}",
                           "steps": info.get("steps", []), "marks": info.get("marks", {})}
        timeline_md = text("timeline.md")
        if not out["html"] and timeline_md:  # the marks and rules; the page shows the picture
            lines = (l for l in timeline_md.splitlines() if not l.startswith("!["))
            out["html"] = markdown.to_html("\n".join(lines), image_url)
    ranked = text("results.csv")
    if ranked is not None:
        out["ranked"] = list(csv.DictReader(io.StringIO(ranked, newline="")))
    return out


def _json(text: str | None) -> Any:
    try:
        return None if text is None else json.loads(text)
    except (ValueError, RecursionError):
        return None
