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

The grid (parse, expand, apply overrides) is in grid.py and the results table in report.py;
this module holds the state file and the driver, and re-exports the names callers use from both.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deepfake.config import SweepConfig, TrainConfig

from deepfake.config_io import to_dict
from deepfake.errors import DeepfakeError
from deepfake.sweep.grid import BASELINE, Variant, apply_overrides, expand_grid, parse_grid, resolve_key
from deepfake.sweep.report import RANK_METRICS, results_markdown, write_results
from deepfake.io.atomic import atomic_write_json

__all__ = [
    "BASELINE", "RANK_METRICS", "STATE_FILE", "SweepResult", "Variant", "apply_overrides",
    "expand_grid", "load_state", "parse_grid", "resolve_base", "resolve_key", "results_markdown", "run_sweep",
    "save_state", "write_results",
]

log = logging.getLogger(__name__)

STATE_FILE = "sweep_state.json"

TrainFn = Callable[[TrainConfig, Any, Any, Path], Any]
EvaluateFn = Callable[[Path, Any, Any, Path], dict]


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
    atomic_write_json(out_dir / STATE_FILE, _json_safe(state))


def _json_safe(obj: Any) -> Any:
    """NaN is not JSON: null, as in evaluate's metrics.json (imported here: evaluate loads the face models)."""
    from deepfake.evaluate.runner import _json_safe as json_safe

    return json_safe(obj)


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
    """Train and evaluate every variant; a failing variant is recorded and the sweep goes on. Ctrl-C or
    SIGTERM during training raises KeyboardInterrupt once train() has saved: the variant stays unfinished
    and the next call resumes it."""
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
    if previous and (_same_config(previous.get("base")) != sweep_doc["base"]
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
            _require_budget(train_fn(vcfg, faceset_a, faceset_b, vdir / "model"), vcfg, cfg)
            train_s = time.perf_counter() - t0
            metrics = evaluate_fn(vdir / "model", faceset_a, faceset_b, vdir / "eval")
            # null for NaN here too, so a fresh table and a resumed one show the same
            entry.update(status="done", train_seconds=train_s, summary=_json_safe(metrics.get("summary", {})),
                         error=None)
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


def _require_budget(result: Any, vcfg: TrainConfig, cfg: SweepConfig) -> None:
    """A variant counts only when it trained the whole budget, or the ranking is unfair. train() returns
    normally on SIGINT/SIGTERM (after saving): that stops the sweep, and the variant, left unfinished,
    resumes from its save on the next run. A trainer that returns no TrainResult is taken at its word."""
    stopped_by = getattr(result, "stopped_by", None)
    if stopped_by is None:
        return
    if getattr(result, "interrupted", False):
        raise KeyboardInterrupt
    reached = stopped_by == "minutes" if cfg.minutes > 0 else result.step >= vcfg.steps
    if not reached:
        budget = f"{cfg.minutes:g} minutes" if cfg.minutes > 0 else f"{vcfg.steps} steps"
        raise DeepfakeError(f"training stopped ({stopped_by}) at step {result.step}, short of the sweep's {budget}")


def _same_config(saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """A saved base config as this version writes it: fields added since it was saved take their
    defaults (which leave training unchanged), so a newer checkout still resumes the sweep."""
    if saved is None:
        return None
    from deepfake.config_io import from_dict

    try:
        return to_dict(from_dict(TrainConfig, saved))
    except Exception:  # noqa: BLE001 - an unreadable saved config simply does not match
        return saved


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
        from deepfake.config_io import load_json

        return load_json(TrainConfig, path)
    from deepfake.models.presets import preset_config

    return preset_config(cfg.base)


def _default_train(cfg: SweepConfig) -> TrainFn:
    def train(train_cfg: TrainConfig, a: Any, b: Any, model_dir: Path) -> Any:
        from deepfake.train import train as train_model
        from deepfake.train.metrics import read_metrics

        if cfg.minutes <= 0:
            return train_model(train_cfg, a, b, model_dir)
        # The time budget is the only limit. wall_s is the run's cumulative training time, so a
        # variant resumed after an interruption gets only what is left of its budget.
        spent = max((r["wall_s"] or 0.0 for r in read_metrics(Path(model_dir) / "metrics.csv")), default=0.0)
        left = max(cfg.minutes - spent / 60.0, 1 / 60)
        return train_model(train_cfg, a, b, model_dir, minutes=left, step_limit=False)

    return train


def _default_evaluate(cfg: SweepConfig) -> EvaluateFn:
    def evaluate(model_dir: Path, a: Any, b: Any, report_dir: Path) -> dict:
        from deepfake.evaluate.runner import evaluate_model

        return evaluate_model(model_dir, a, b, report_dir, cfg.evaluate, plots=False)

    return evaluate
