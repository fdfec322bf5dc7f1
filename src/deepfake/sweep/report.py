"""The sweep's results: variants ranked by one metric, written as results.csv, results.md and two plots."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from deepfake.config.choices import RANK_METRICS
from deepfake.sweep.grid import BASELINE, Variant, format_value
from deepfake.io.atomic import atomic_write_text

# The metrics drawn for every variant in variants.png.
PLOTTED = [("ssim", "masked SSIM"), ("verification", "verification"), ("id_dist_source", "distance to source"),
           ("sharpness_ratio", "sharpness ratio (1 = real)"), ("val_loss", "validation loss"), ("steps", "steps")]

COLUMNS = [
    "rank", "variant", "baseline", "status", "overrides",
    "ssim", "psnr", "verification", "retrieval", "id_dist_source", "sharpness_ratio", "landmark_error", "pose_error",
    "disc_auc", "val_loss", "params", "faces_per_s", "train_seconds", "steps", "error",
]


def rank_rows(state: dict[str, Any], variants: list[Variant], rank_by: str) -> list[dict[str, Any]]:
    """Rows for every variant, finished ones ranked by `rank_by` (best first), then the rest."""
    higher = RANK_METRICS[rank_by]
    rows = []
    for v in variants:
        e = state["variants"].get(v.name, {"status": "pending"})
        s = e.get("summary", {}) or {}
        row = {c: "" for c in COLUMNS}
        row.update({k: s[k] for k in COLUMNS if k in s})
        row.update(
            variant=v.name,
            baseline=v.baseline,
            status=e.get("status", "pending"),
            overrides=" ".join(f"{k}={format_value(x)}" for k, x in v.overrides.items()) or "(base config)",
            train_seconds=e.get("train_seconds", ""),
            error=e.get("error") or "",
        )
        rows.append(row)

    def key(row: dict[str, Any]) -> tuple:
        value = row.get(rank_by)
        ok = row["status"] == "done" and isinstance(value, (int, float)) and not math.isnan(value)
        return (0, -value if higher else value) if ok else (1, 0.0)

    rows.sort(key=key)
    for n, row in enumerate(rows, start=1):
        row["rank"] = n if key(row)[0] == 0 else ""
    return rows


def _dict_path(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part, "?") if isinstance(d, dict) else "?"
    return d


def _fmt(x: Any) -> str:
    if x is None:  # a metric that is not finite, or not measured (the state file holds JSON's null)
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else ""
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        return f"{x:.4g}" if abs(x) < 1e4 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def write_results(
    out_dir: Path, state: dict[str, Any], variants: list[Variant], rank_by: str, plots: bool = True
) -> list[dict[str, Any]]:
    rows = rank_rows(state, variants, rank_by)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
    atomic_write_text(out_dir / "results.md", results_markdown(rows, state, rank_by))
    if plots:
        from deepfake.evaluate.plots import plot_knob_effects, plot_quality_vs_cost, plot_variant_metrics

        done = [r for r in rows if r["status"] == "done"]
        if done:
            plot_quality_vs_cost(done, rank_by, out_dir / "quality_vs_cost.png")
            plot_variant_metrics(done, PLOTTED, out_dir / "variants.png")
            base = state.get("sweep", {}).get("base", {})
            by_name = {r["variant"]: r for r in done}
            points = []  # (knob, value, metric) for every finished variant and every knob of the grid
            knobs = sorted({k for v in variants for k in v.overrides})
            for v in variants:
                if v.name in by_name:
                    for k in knobs:
                        value = v.overrides[k] if k in v.overrides else _dict_path(base, k)
                        points.append((k, format_value(value), by_name[v.name].get(rank_by)))
            plot_knob_effects(points, rank_by, out_dir / "knob_effects.png")
    return rows


def results_markdown(rows: list[dict[str, Any]], state: dict[str, Any], rank_by: str) -> str:
    sweep = state.get("sweep", {}).get("sweep", {})
    budget = f"{sweep.get('minutes')} minutes" if sweep.get("minutes") else f"{sweep.get('steps')} steps"
    better = "higher" if RANK_METRICS[rank_by] else "lower"
    shown = ["rank", "variant", "status", rank_by] + [
        c for c in ("ssim", "psnr", "verification", "retrieval", "id_dist_source", "sharpness_ratio", "landmark_error",
                    "pose_error", "disc_auc", "val_loss", "steps", "params", "faces_per_s", "train_seconds") if c != rank_by
    ]
    lines = [
        "# Sweep results",
        "",
        f"Ranked by **{rank_by}** ({better} is better). Every variant trained for the same budget "
        f"({budget}) with seed {sweep.get('seed')} and the same train/validation split, then was measured "
        "by `deepfake evaluate` on held-out faces (see each variant's `variants/NAME/eval/report.md` for "
        "the metric definitions). **Bold** marks the baseline (the base config, unchanged).",
        "",
        "| " + " | ".join(shown) + " | overrides |",
        "|" + "---|" * (len(shown) + 1),
    ]
    for r in rows:
        cells = [_fmt(r[c]) if r[c] != "" else "" for c in shown] + [r["overrides"]]
        if r["baseline"]:
            cells[1] = f"**{cells[1]}**" if r["variant"] == BASELINE else f"**{cells[1]} (baseline)**"
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed variants", ""]
        lines += [f"- `{r['variant']}`: {r['error']}" for r in failed]
    lines += [
        "",
        "`params`: trainable parameters of the autoencoder. `faces_per_s`: training throughput (both "
        "identities), from the run's own log. `train_seconds`: wall time of the training call, including start-up.",
        "",
        "![quality vs cost](quality_vs_cost.png)",
        "",
        "![knob effects](knob_effects.png)",
        "",
        "![every variant, every metric](variants.png)",
        "",
    ]
    return "\n".join(lines)
