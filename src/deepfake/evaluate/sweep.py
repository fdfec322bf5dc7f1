"""Architecture sweep: train and evaluate a grid of config variants against a baseline, fairly.

Every variant starts from the same base config, trains for the same budget with the same seed and
data split, and is measured by `deepfake evaluate`. Per-variant status lives in `sweep_state.json`
(written atomically after every change), so a killed sweep resumes where it stopped: finished
variants are not rerun, an interrupted one resumes from its own checkpoint, a failed one is retried.

    SWEEP_DIR/
      sweep.json           the sweep config and grid
      sweep_state.json     status, metrics and error of every variant
      variants/NAME/model  each variant's MODEL_DIR;  variants/NAME/eval  its evaluate report
      results.csv, results.md, quality_vs_cost.png, knob_effects.png
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from deepfake.config import SweepConfig, TrainConfig, replace_path, to_dict
from deepfake.errors import DeepfakeError
from deepfake.io.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

STATE_FILE = "sweep_state.json"
BASELINE = "baseline"

# Summary metrics a sweep can rank by: name -> True when higher is better.
RANK_METRICS: dict[str, bool] = {
    "ssim": True,  # reconstruction SSIM inside the mask, mean of both sides
    "psnr": True,
    "verification": True,  # fraction of swaps verified as the source identity
    "id_dist_source": False,  # swap-to-source identity distance
    "landmark_error": False,
    "pose_error": False,
    "disc_auc": False,  # the model's own discriminator tells swaps from real faces: lower = harder to tell
    "val_loss": False,
    "faces_per_s": True,
    "params": False,
}

# Fields a short key may name without its section; "activation" means the model's, not the discriminator's.
_PREFERRED_SECTION = "model"

TrainFn = Callable[[TrainConfig, Any, Any, Path], Any]
EvaluateFn = Callable[[Path, Any, Any, Path], dict]


# ----------------------------------------------------------------------------------------------------
# The grid.


@dataclass
class Variant:
    name: str  # stable across runs: derived from the overrides, used as folder name and state key
    overrides: dict[str, Any]  # dotted TrainConfig path -> value
    baseline: bool = False


def resolve_key(key: str, base: TrainConfig) -> str:
    """A grid key -> the dotted TrainConfig path. Short keys (`activation`, `gan_weight`) are looked up."""
    key = key.strip()
    if not key:
        raise DeepfakeError("empty key in sweep grid")
    if "." in key:
        replace_path(base, key, _get_path(base, key))  # raises DeepfakeError on an unknown path
        return key
    top = {f.name for f in dataclasses.fields(base)}
    if key in top and not dataclasses.is_dataclass(getattr(base, key)):
        return key
    sections = [f.name for f in dataclasses.fields(base) if dataclasses.is_dataclass(getattr(base, f.name))]
    hits = [s for s in sections if key in {f.name for f in dataclasses.fields(getattr(base, s))}]
    if not hits:
        raise DeepfakeError(f"sweep grid: unknown config field '{key}'")
    if len(hits) > 1 and _PREFERRED_SECTION not in hits:
        raise DeepfakeError(f"sweep grid: '{key}' is ambiguous ({', '.join(h + '.' + key for h in hits)})")
    return f"{_PREFERRED_SECTION if len(hits) > 1 else hits[0]}.{key}"


def _get_path(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cfg) or part not in {f.name for f in dataclasses.fields(cfg)}:
            raise DeepfakeError(f"unknown config field '{dotted}'")
        cfg = getattr(cfg, part)
    return cfg


def _split_values(text: str) -> list[str]:
    """Split `v1,v2` on commas outside brackets, so `[64,128],[32,64]` is two list values."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_grid(spec: str | Path | Iterable[str]) -> dict[str, list[Any]]:
    """A grid from a YAML/JSON file, or from inline `key=v1,v2` strings. Values keep their YAML types.

    A file holds a mapping of key -> list of values (a scalar is a one-value list); nested mappings
    (`model: {activation: [relu, gelu]}`) are flattened to dotted keys.
    """
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    grid: dict[str, list[Any]] = {}
    for item in items:
        text = str(item)
        path = Path(text)
        if "=" not in text or path.suffix.lower() in {".yaml", ".yml", ".json"} and path.is_file():
            grid.update(_read_grid_file(path))
            continue
        key, _, values = text.partition("=")
        parsed = [_parse_value(v, text) for v in _split_values(values)]
        if not parsed:
            raise DeepfakeError(f"sweep grid: no values in '{text}'")
        grid[key.strip()] = parsed
    if not grid:
        raise DeepfakeError("sweep grid is empty")
    return grid


def _parse_value(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DeepfakeError(f"sweep grid: cannot parse value '{text}' in '{where}' ({e})") from None


def _read_grid_file(path: Path) -> dict[str, list[Any]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except FileNotFoundError:
        raise DeepfakeError(f"{path}: sweep grid file not found (or write inline key=v1,v2)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DeepfakeError(f"{path}: not a readable YAML/JSON grid ({e})") from None
    if not isinstance(data, dict) or not data:
        raise DeepfakeError(f"{path}: a sweep grid must be a non-empty mapping of field -> list of values")
    return {k: (v if isinstance(v, list) else [v]) for k, v in _flatten(data).items()}


def _coerce_like(old: Any, value: Any, key: str) -> Any:
    """Match the base field's type (YAML gives `1` for a float field, a list for a tuple)."""
    if isinstance(old, bool):
        if not isinstance(value, bool):
            raise DeepfakeError(f"sweep grid: {key} expects true/false, got {value!r}")
        return value
    if isinstance(old, float) and isinstance(value, int):
        return float(value)
    if isinstance(old, tuple) and isinstance(value, list):
        return tuple(value)
    if old is not None and not isinstance(value, type(old)) and not (isinstance(old, float) and isinstance(value, float)):
        raise DeepfakeError(f"sweep grid: {key} expects {type(old).__name__}, got {value!r}")
    return value


def variant_name(overrides: dict[str, Any]) -> str:
    if not overrides:
        return BASELINE
    parts = []
    for k, v in overrides.items():
        v = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        parts.append(f"{k.split('.')[-1]}={v}")
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", "_".join(parts))[:120]


def expand_grid(grid: dict[str, list[Any]], base: TrainConfig) -> list[Variant]:
    """The baseline first, then every combination. A combination equal to the base config is the baseline."""
    keys = [resolve_key(k, base) for k in grid]
    variants = [Variant(BASELINE, {}, baseline=True)]
    seen = {json.dumps(to_dict(base), sort_keys=True)}
    for combo in itertools.product(*grid.values()):
        overrides = {k: _coerce_like(_get_path(base, k), v, k) for k, v in zip(keys, combo)}
        cfg = apply_overrides(base, overrides)
        fingerprint = json.dumps(to_dict(cfg), sort_keys=True)
        if fingerprint in seen:
            continue  # the baseline (or a duplicate) is trained once
        seen.add(fingerprint)
        variants.append(Variant(variant_name(overrides), overrides))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise DeepfakeError("sweep grid: two variants map to the same name; shorten the values")
    return variants


def apply_overrides(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    cfg = base
    for key, value in overrides.items():
        cfg = replace_path(cfg, key, value)
    return _fit_stage_widths(cfg, overrides)


def _fit_stage_widths(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A grid over stage counts carries the per-stage widths along, unless the grid sets them too.

    Fewer stages keep the first widths; more stages continue the pattern (encoder widths double,
    decoder widths halve, never below 16). Without this, `encoder_stages=3,5` would only make
    variants that fail to build.
    """
    m = cfg.model
    enc, dec = list(m.encoder_channels), list(m.decoder_channels)
    if "model.encoder_channels" not in overrides:
        enc = _resize_widths(enc, m.encoder_stages, lambda c: c * 2)
    if "model.decoder_channels" not in overrides:
        dec = _resize_widths(dec, m.decoder_stages, lambda c: max(16, c // 2))
    if (enc, dec) == (m.encoder_channels, m.decoder_channels):
        return cfg
    return replace_path(replace_path(cfg, "model.encoder_channels", enc), "model.decoder_channels", dec)


def _resize_widths(widths: list[int], n: int, next_width) -> list[int]:
    out = list(widths[:n])
    while out and len(out) < n:
        out.append(next_width(out[-1]))
    return out


# ----------------------------------------------------------------------------------------------------
# State: one JSON file, rewritten atomically after every change.


def load_state(out_dir: Path) -> dict[str, Any]:
    path = out_dir / STATE_FILE
    if not path.is_file():
        return {"variants": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeepfakeError(f"{path}: unreadable sweep state ({e}); move it away to start over") from None
    state.setdefault("variants", {})
    return state


def save_state(out_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_json(out_dir / STATE_FILE, state)


# ----------------------------------------------------------------------------------------------------
# The driver.


@dataclass
class SweepResult:
    out_dir: Path
    rows: list[dict[str, Any]]  # one per variant, ranked
    ran: list[str]  # variants trained in this call
    skipped: list[str]  # variants already finished before this call
    failed: list[str]


def run_sweep(
    faceset_a: Any,  # FACESET_A, passed through to train_fn and evaluate_fn
    faceset_b: Any,
    grid: dict[str, list[Any]],  # from parse_grid
    out_dir: str | Path,  # SWEEP_DIR
    cfg: SweepConfig,  # budget, seed, ranking metric
    base: TrainConfig | None = None,  # the config variants start from; default: cfg.base resolved
    train_fn: TrainFn | None = None,  # (train_cfg, a, b, model_dir) -> anything; default deepfake.train.train
    evaluate_fn: EvaluateFn | None = None,  # (model_dir, a, b, report_dir) -> metrics dict
    plots: bool = True,
) -> SweepResult:
    """Train and evaluate every variant; a failing variant is recorded and the sweep goes on."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DeepfakeError(f"{out_dir}: sweep output exists and is not a folder")
    if cfg.rank_by not in RANK_METRICS:
        raise DeepfakeError(f"--rank-by {cfg.rank_by!r}: choose one of {', '.join(RANK_METRICS)}")
    base = resolve_base(cfg) if base is None else base
    base = dataclasses.replace(base, seed=cfg.seed, steps=cfg.steps, device=cfg.device)
    train_fn = train_fn or _default_train(cfg)
    evaluate_fn = evaluate_fn or _default_evaluate(cfg)
    variants = expand_grid(grid, base)

    out_dir.mkdir(parents=True, exist_ok=True)
    state = load_state(out_dir)
    sweep_doc = {"sweep": to_dict(cfg), "base": to_dict(base), "grid": grid}
    previous = state.get("sweep")
    if previous and (previous.get("base") != sweep_doc["base"]
                     or previous.get("sweep", {}).get("minutes") != cfg.minutes):
        raise DeepfakeError(
            f"{out_dir}: holds a sweep with a different base config or budget; use a new folder to compare fairly"
        )
    state["sweep"] = sweep_doc
    atomic_write_json(out_dir / "sweep.json", sweep_doc)

    ran, skipped, failed = [], [], []
    for v in variants:
        entry = state["variants"].get(v.name)
        if entry and entry.get("status") == "done":
            log.info("sweep: %s already finished, not rerun", v.name)
            skipped.append(v.name)
            continue
        vcfg = apply_overrides(base, v.overrides)
        vdir = out_dir / "variants" / v.name
        entry = {"status": "running", "overrides": v.overrides, "baseline": v.baseline, "started": time.time()}
        state["variants"][v.name] = entry
        save_state(out_dir, state)
        log.info("sweep: training %s (%s)", v.name, ", ".join(f"{k}={x}" for k, x in v.overrides.items()) or "base")
        t0 = time.perf_counter()
        try:
            train_fn(vcfg, faceset_a, faceset_b, vdir / "model")
            train_s = time.perf_counter() - t0
            metrics = evaluate_fn(vdir / "model", faceset_a, faceset_b, vdir / "eval")
            entry.update(status="done", train_seconds=train_s, summary=metrics.get("summary", {}), error=None)
        except (KeyboardInterrupt, SystemExit):
            raise  # the entry stays "running": the next run resumes it
        except BaseException as e:  # noqa: BLE001 - any failure of one variant (OOM, NaN, bad config) is data
            entry.update(status="failed", error=f"{type(e).__name__}: {e}".strip()[:500])
            entry["traceback"] = traceback.format_exc(limit=8)
            log.warning("sweep: %s failed: %s", v.name, entry["error"])
            failed.append(v.name)
            _free_accelerator_memory()
        else:
            ran.append(v.name)
        entry["finished"] = time.time()
        save_state(out_dir, state)
        rows = write_results(out_dir, state, variants, cfg.rank_by, plots=plots)

    rows = write_results(out_dir, state, variants, cfg.rank_by, plots=plots)
    return SweepResult(out_dir, rows, ran, skipped, failed)


def _free_accelerator_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort after a failure
        pass


def resolve_base(cfg: SweepConfig) -> TrainConfig:
    """The base config: a preset name or a JSON config file."""
    path = Path(cfg.base)
    if path.suffix.lower() == ".json" or path.is_file():
        from deepfake.config import load_json

        return load_json(TrainConfig, path)
    from deepfake.models.presets import preset_config

    return preset_config(cfg.base)


PROBE_STEPS = 10  # --minutes: steps trained first to measure a variant's speed


def _default_train(cfg: SweepConfig) -> TrainFn:
    def train(train_cfg: TrainConfig, a: Any, b: Any, model_dir: Path) -> Any:
        from deepfake.train import train as train_model

        if cfg.minutes <= 0:
            return train_model(train_cfg, a, b, model_dir)
        # The trainer counts steps, not seconds: measure this variant's speed on a short probe, then
        # give it the steps that fill the rest of the budget (the probe and its start-up count too).
        budget = cfg.minutes * 60.0
        t0 = time.perf_counter()
        probe = train_model(dataclasses.replace(train_cfg, steps=PROBE_STEPS), a, b, model_dir)
        spent = time.perf_counter() - t0
        # wall_s is the run's cumulative training time, so a resumed variant does not get its budget twice.
        wall = next((r.get("wall_s") for r in reversed(probe.metrics) if r.get("wall_s")), None)
        per_step = (wall or spent) / max(1, probe.step)
        extra = int(max(0.0, budget - max(spent, wall or 0.0)) / per_step)
        if extra <= 0:
            return probe
        return train_model(dataclasses.replace(train_cfg, steps=probe.step + extra), a, b, model_dir)

    return train


def _default_evaluate(cfg: SweepConfig) -> EvaluateFn:
    def evaluate(model_dir: Path, a: Any, b: Any, report_dir: Path) -> dict:
        from deepfake.evaluate.runner import evaluate_model

        return evaluate_model(model_dir, a, b, report_dir, cfg.evaluate, plots=False)

    return evaluate


# ----------------------------------------------------------------------------------------------------
# Results.

COLUMNS = [
    "rank", "variant", "baseline", "status", "overrides",
    "ssim", "psnr", "verification", "id_dist_source", "landmark_error", "pose_error", "disc_auc", "val_loss",
    "params", "faces_per_s", "train_seconds", "steps", "error",
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
            overrides=" ".join(f"{k}={_fmt_value(x)}" for k, x in v.overrides.items()) or "(base config)",
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


def _fmt_value(x: Any) -> str:
    return ",".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x)


def _fmt(x: Any) -> str:
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
        from deepfake.evaluate.plots import plot_knob_effects, plot_quality_vs_cost

        done = [r for r in rows if r["status"] == "done"]
        if done:
            plot_quality_vs_cost(done, rank_by, out_dir / "quality_vs_cost.png")
            base = state.get("sweep", {}).get("base", {})
            by_name = {r["variant"]: r for r in done}
            points = []  # (knob, value, metric) for every finished variant and every knob of the grid
            knobs = sorted({k for v in variants for k in v.overrides})
            for v in variants:
                if v.name in by_name:
                    for k in knobs:
                        value = v.overrides[k] if k in v.overrides else _dict_path(base, k)
                        points.append((k, _fmt_value(value), by_name[v.name].get(rank_by)))
            plot_knob_effects(points, rank_by, out_dir / "knob_effects.png")
    return rows


def results_markdown(rows: list[dict[str, Any]], state: dict[str, Any], rank_by: str) -> str:
    sweep = state.get("sweep", {}).get("sweep", {})
    budget = f"{sweep.get('minutes')} minutes" if sweep.get("minutes") else f"{sweep.get('steps')} steps"
    better = "higher" if RANK_METRICS[rank_by] else "lower"
    shown = ["rank", "variant", "status", rank_by] + [
        c for c in ("ssim", "psnr", "verification", "id_dist_source", "landmark_error", "pose_error", "disc_auc",
                    "params", "faces_per_s", "train_seconds") if c != rank_by
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
    ]
    return "\n".join(lines)
