"""Under- against over-training, as a picture: the same held-out faces swapped at every kept step.

DeepFaceLab's users judge it by eye from two results side by side ("the left under-trained, the right
better but over-trained"). Here the columns are every step whose weights the model folder keeps
(`train --keep-every N`, plus the snapshots), the rows are held-out faces, and under the faces are the
training and validation losses. Three columns are marked, by rules on the validation curve:

- **best**: the kept step nearest the validation minimum.
- **under-trained**: the last kept step before best whose validation loss still has more than a quarter
  of the improvement to best ahead of it: val(s) > val_best + 0.25 (val_first - val_best).
- **over-trained**: the first kept step after best where training's over-fitting rule holds
  (train.metrics.overfit_start): the validations from best up to it all lie above the minimum, at least
  `patience` of them, the last `patience` by more than OVERFIT_MARGIN (5 %), while the training loss
  there is below its value at best.

    result = timeline("models/ab", "facesets/a", "facesets/b", "reports/ab", EvaluateConfig())
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepfake.config import EvaluateConfig
from deepfake.errors import DeepfakeError
from deepfake.evaluate.runner import DIRECTIONS, as_faceset, held_out_faces, run_autoencoder
from deepfake.evaluate.trained_on import check_trained_on
from deepfake.io.atomic import atomic_path, atomic_write_json, atomic_write_text
from deepfake.model_dir import kept_steps, load_model_dir
from deepfake.train.metrics import OVERFIT_MARGIN, overfit_start, read_metrics

UNDER_FRACTION = 0.25  # under-trained: more than this share of the improvement to best still to come
FACES = 4  # rows of the picture by default


def validations(rows: list[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """(step, training loss, validation loss) of the rows the rules read."""
    return [(r["step"], r["loss"], r["val_loss"]) for r in rows
            if r.get("val_loss") is not None and np.isfinite(r["val_loss"]) and r.get("loss") is not None]


def marks(steps: list[int], rows: list[dict[str, Any]], patience: int = 3) -> dict[str, int | None]:
    """The best, under-trained and over-trained kept steps (None when a rule finds none) from the
    metrics rows (`step`, `loss`, `val_loss`), by the rules in the module docstring."""
    val = validations(rows)
    if not steps or not val:
        return {"best": None, "under": None, "over": None}
    v_steps = np.array([s for s, _, _ in val], dtype=np.float64)
    v_loss = np.array([v for _, _, v in val])
    t_loss = np.array([t for _, t, _ in val])

    def at(step: int, series: np.ndarray) -> float:  # the series at the validation nearest `step`
        return float(series[int(np.argmin(np.abs(v_steps - step)))])

    best_step = int(v_steps[int(np.argmin(v_loss))])
    best = min(steps, key=lambda s: abs(s - best_step))
    v_best, v_first = float(v_loss.min()), at(steps[0], v_loss)
    under = None
    for s in steps:
        if s < best and at(s, v_loss) > v_best + UNDER_FRACTION * (v_first - v_best):
            under = s
    over = None
    for s in steps:
        if s <= best:
            continue
        upto = v_steps <= s
        if overfit_start(v_steps[upto].tolist(), t_loss[upto].tolist(), v_loss[upto].tolist(), patience) is not None:
            over = s
            break
    return {"best": best, "under": under, "over": over}


def timeline(
    model_dir,  # MODEL_DIR with kept steps (train --keep-every N)
    faceset_a,  # the facesets it was trained on: their held-out faces are swapped
    faceset_b,
    out_dir,  # where timeline.png and timeline.json go
    cfg: EvaluateConfig,
    *,
    direction: str = "a2b",  # a2b: A's face onto B's held-out faces
    faces: int = FACES,  # rows: held-out faces of the target side (0: all of them)
    max_columns: int = 12,  # kept steps shown, spread evenly over the run (best and the marks always)
) -> dict[str, Any]:
    from deepfake.devices import resolve_device

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if direction not in DIRECTIONS:
        raise DeepfakeError(f"direction '{direction}': choose {' or '.join(DIRECTIONS)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise DeepfakeError(f"{out_dir}: timeline output exists and is not a folder")
    # Every kept step is a column and only A and B are swapped: a checkpoint or a gallery would be ignored.
    if str(cfg.checkpoint) != "last":
        raise DeepfakeError(f"--timeline draws every kept step: leave out --checkpoint {cfg.checkpoint}")
    if cfg.distractors:
        raise DeepfakeError("--timeline measures no retrieval: leave out --distractors")
    kept = kept_steps(model_dir)
    if len(kept) < 2:
        raise DeepfakeError(f"{model_dir}: a timeline needs at least two kept steps (train with --keep-every N)")
    device = resolve_device(cfg.device)
    first = load_model_dir(model_dir, str(device))
    tcfg = first.config
    rows = read_metrics(model_dir / "metrics.csv")
    marked = marks(list(kept), rows, tcfg.overfit_patience)
    columns = _spread(list(kept), max_columns, [s for s in marked.values() if s is not None])
    source, target = DIRECTIONS[direction]
    sets = {"a": as_faceset(faceset_a), "b": as_faceset(faceset_b)}
    check_trained_on(model_dir, tcfg, first.identities, sets)
    held = held_out_faces(sets[target], tcfg.model.resolution, tcfg.val_fraction, tcfg.seed, target, faces,
                          tcfg.val_split)
    swaps = {}
    for step in columns:
        model = load_model_dir(model_dir, str(device), checkpoint=step)
        swaps[step] = run_autoencoder(model.autoencoder, held.images, source, True, cfg.batch, device)[0]  # (N, R, R, 3)
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = out_dir / "timeline.png"
    _draw(picture, held.images, columns, swaps, rows, marked, direction)
    result = {"direction": direction, "faces": len(held.images), "steps": columns, "kept_steps": list(kept),
              "marks": marked,
              "rules": {"under_fraction": UNDER_FRACTION, "patience": tcfg.overfit_patience, "margin": OVERFIT_MARGIN}, "picture": picture.name}
    atomic_write_json(out_dir / "timeline.json", result)
    atomic_write_text(out_dir / "timeline.md", timeline_markdown(result, model_dir, rows))
    return result


def timeline_markdown(result: dict[str, Any], model_dir: Path, rows: list[dict[str, Any]]) -> str:
    """The picture, what was marked with the losses there, and each rule in words. Each mark shows the
    validation its rule judged: best the minimum itself, the others the validation nearest their step."""
    val = validations(rows)
    lowest = min(val, key=lambda v: v[2]) if val else None  # the first minimum, as marks() takes it

    def losses(step: int | None, at_minimum: bool = False) -> str:
        if step is None:
            return "none: no kept step meets the rule"
        if at_minimum or not val:
            near = lowest
        else:
            near = min(val, key=lambda v: abs(v[0] - step))  # a tie goes to the earlier, as in marks()
        return f"step {step}" + (f" (training loss {near[1]:.4g}, validation {near[2]:.4g} at step {near[0]})"
                                 if near else "")

    m, rules = result["marks"], result["rules"]
    return "\n".join([
        f"# Timeline of `{model_dir}`", "",
        f"Swaps ({result['direction']}) of the same held-out faces at {len(result['steps'])} of the "
        f"{len(result['kept_steps'])} kept steps, with the training and validation losses under them.", "",
        f"![timeline]({result['picture']})", "",
        f"- **under-trained**: {losses(m['under'])}",
        f"- **best**: {losses(m['best'], at_minimum=True)}",
        f"- **over-trained**: {losses(m['over'])}", "",
        "The rules:", "",
        "- **best**: the kept step nearest the validation minimum.",
        f"- **under-trained**: the last kept step before best whose validation loss still has more than "
        f"{rules['under_fraction']:.0%} of the improvement to best ahead of it.",
        f"- **over-trained**: the first kept step after best where the validations since best all lie above "
        f"the minimum, at least {rules['patience']} of them, the last {rules['patience']} by more than "
        f"{rules['margin']:.0%}, while the training loss there is below its value at best (training's own "
        "over-fitting warning).", "",
        "Validation scores the faces training held out (`val_split` and `val_fraction` in the model's "
        "config.json); from a video, `val_split: tail` holds out each faceset's last faces (the end of its clip), which shows "
        "over-training that neighbouring frames would hide.", ""])


def _spread(steps: list[int], n: int, must: list[int]) -> list[int]:
    """At most `n` of `steps`, evenly spread, always including `must` and the last step."""
    if len(steps) <= n:
        return steps
    idx = np.linspace(0, len(steps) - 1, max(2, n - len(must))).round().astype(int)
    return sorted(set(steps[i] for i in idx) | set(must) | {steps[-1]})


def _draw(path: Path, real: np.ndarray, columns: list[int], swaps: dict[int, np.ndarray], rows: list[dict[str, Any]],
          marked: dict[str, int | None], direction: str) -> None:
    from deepfake.evaluate.plots import _pyplot

    plt = _pyplot()
    n = real.shape[0]
    fig = plt.figure(figsize=(1.3 * (len(columns) + 1), 1.3 * n + 2.6))
    grid = fig.add_gridspec(n + 2, len(columns) + 1, height_ratios=[1] * n + [0.25, 2.0])
    labels = {marked["under"]: "under-trained", marked["best"]: "best", marked["over"]: "over-trained"}
    colours = {"under-trained": "tab:orange", "best": "tab:green", "over-trained": "tab:red"}
    for r in range(n):
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(real[r])
        ax.set_axis_off()
        if r == 0:
            ax.set_title("real", fontsize=8)
        for c, step in enumerate(columns):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.imshow(swaps[step][r])
            ax.set_xticks([])
            ax.set_yticks([])
            label = labels.get(step)
            for spine in ax.spines.values():
                spine.set_visible(label is not None)
                spine.set_color(colours.get(label, "black"))
                spine.set_linewidth(3)
            if r == 0:
                ax.set_title(f"{step}" + (f"\n{label}" if label else ""), fontsize=8, color=colours.get(label, "black"))
    ax = fig.add_subplot(grid[n + 1, :])
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train), label="training loss (left)", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    handles = ax.get_legend_handles_labels()
    if val:
        # Validation on an axis of its own, scaled from the first kept step on: a rise of a few percent
        # past best is what marks over-training, and on the training loss's scale it would look flat.
        v_ax = ax.twinx()
        v_ax.plot(*zip(*val), "o-", color="tab:orange", label="validation loss (right)", ms=3)
        shown = [v for s, v in val if s >= columns[0]] or [v for _, v in val]
        pad = 0.05 * (max(shown) - min(shown) or abs(max(shown)) or 1.0)
        v_ax.set_ylim(min(shown) - pad, max(shown) + pad)
        v_ax.set_ylabel("validation loss")
        handles = [a + b for a, b in zip(handles, v_ax.get_legend_handles_labels())]
    for step, label in labels.items():
        if step is not None:
            line = ax.axvline(step, color=colours[label], ls="--", lw=1.5)
            handles[0].append(line)
            handles[1].append(f"{label} (step {step})")
    ax.legend(*handles, fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    fig.suptitle(f"Swaps ({direction}) of the same held-out faces at each kept step", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
