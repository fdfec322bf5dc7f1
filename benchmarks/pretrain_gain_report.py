"""The pretraining study's rows, read back (benchmarks/pretrain_gain.py writes them): the table
docs/TUNING.md quotes, the plot, and the growth with the pool's people fitted in log2(people) with the
seed's noise. `python benchmarks/pretrain_gain.py --work DIR --table [--plot PNG]` prints and draws them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COLUMNS = [("ssim", "masked SSIM", 3), ("sharpness_ratio", "sharpness", 3), ("id_dist_source", "dist. to source", 3),
           ("landmark_error", "landmarks", 3), ("pose_error", "pose (deg)", 2), ("val_loss", "val loss", 3)]


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def start_label(r: dict) -> str:
    kept = ", optimizer kept" if r.get("optimizer") == "source" else ""  # rows without the field: fresh
    if r["arm"] == "pretrained":
        return f"pretrained {r['pretrain_minutes']:g} min on {r['pool']} (--reset {r['reset']}{kept})"
    return r["arm"][:-1] + kept + ")" if kept and r["arm"].endswith(")") else r["arm"] + kept


def run_label(r: dict) -> str:
    """The start, and the seed where it is not 0."""
    return start_label(r) + (f", seed {r['seed']}" if r.get("seed") else "")


def plot(rows: list[dict], path: Path) -> None:
    """Masked SSIM and sharpness against the budget: one row of panels per pair, one line per start
    (scratch in black); a run of another seed is drawn hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = sorted({r["pair"] for r in rows})
    growth = pool_growth(rows)
    fig, axes = plt.subplots(len(pairs) + bool(growth), 2, figsize=(13, 4.2 * (len(pairs) + bool(growth))),
                             squeeze=False)
    budgets = sorted({r["minutes"] for r in rows})
    if growth:
        plot_growth(axes[-1], growth)
    for row_axes, pair in zip(axes, pairs):
        lines: dict[str, list[dict]] = {}
        for r in rows:
            if r["pair"] == pair:
                lines.setdefault(start_label(r), []).append(r)
        colours = iter(plt.cm.tab10.colors)
        styles = {name: ("black" if name == "scratch" else next(colours)) for name in sorted(lines)}
        for ax, (key, label) in zip(row_axes, (("ssim", "masked SSIM (held-out faces)"),
                                               ("sharpness_ratio", "sharpness ratio (swap / real face)"))):
            for name, rs in sorted(lines.items()):
                for seed in sorted({r.get("seed", 0) for r in rs}):
                    pts = sorted((r for r in rs if r.get("seed", 0) == seed), key=lambda r: r["minutes"])
                    ax.plot([r["minutes"] for r in pts], [r[key] for r in pts], marker="o", color=styles[name],
                            markerfacecolor=styles[name] if seed == 0 else "none", linestyle="-" if seed == 0 else "",
                            label=name if seed == 0 else f"{name}, seed {seed}")
            ax.set_xscale("log", base=2)
            ax.set_xticks(budgets, [f"{m:g}" for m in budgets])
            ax.set_xlabel("budget: minutes of quick on 2 unshared CPU cores")
            ax.set_ylabel(label)
            ax.set_title(pair)
            ax.grid(alpha=0.3)
        row_axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def pool_growth(rows: list[dict]) -> dict[str, dict]:
    """Per pair, the pretrained runs of one pretrain length and one fine-tune budget whose pools differ
    only in size (the identities arm), with the pair's scratch runs at that budget and at the longest:
    pair -> {"runs": [(people, row)], "scratch": row, "goal": row}. A pair with one size is left out."""
    out = {}
    for pair in sorted({r["pair"] for r in rows}):
        seed0 = [r for r in rows if r["pair"] == pair and not r.get("seed")]
        tried = [r for r in seed0 if r["arm"] == "pretrained" and r["reset"] == "inter"]
        cells: dict[tuple, list[dict]] = {}
        for r in tried:
            cells.setdefault((r["pretrain_minutes"], r["minutes"], r.get("optimizer", "fresh")), []).append(r)
        best = max(cells.values(), key=lambda rs: len({r["pool"] for r in rs}), default=[])
        scratch = sorted((r for r in seed0 if r["arm"] == "scratch"), key=lambda r: r["minutes"])
        if len({r["pool"] for r in best}) < 2 or not scratch:
            continue
        at = [r for r in scratch if r["minutes"] == best[0]["minutes"]]
        out[pair] = {"runs": sorted(((len(r["pool"].split("+")), r) for r in best), key=lambda t: t[0]),
                     "scratch": at[0] if at else None, "goal": scratch[-1]}
    return out


def plot_growth(row_axes, growth: dict[str, dict]) -> None:
    """Masked SSIM and sharpness against the number of people pretrained on, one line per pair, with
    that pair's scratch run at the same budget (dotted) and its longest scratch run, the goal (dashed)."""
    import matplotlib.pyplot as plt

    colours = dict(zip(growth, plt.cm.Dark2.colors))
    for ax, (key, label) in zip(row_axes, (("ssim", "masked SSIM"), ("sharpness_ratio", "sharpness ratio"))):
        for pair, g in growth.items():
            people = [n for n, _ in g["runs"]]
            first = g["runs"][0][1]
            ax.plot(people, [r[key] for _, r in g["runs"]], marker="o", color=colours[pair],
                    label=f"{pair}: pretrained {first['pretrain_minutes']:g} min, then {first['minutes']:g} min")
            ax.axhline(g["goal"][key], color=colours[pair], linestyle="--", linewidth=1,
                       label=f"{pair}: scratch at {g['goal']['minutes']:g} min (the goal)")
            if g["scratch"]:
                ax.axhline(g["scratch"][key], color=colours[pair], linestyle=":", linewidth=1,
                           label=f"{pair}: scratch at {g['scratch']['minutes']:g} min")
        ax.set_xticks(sorted({n for g in growth.values() for n, _ in g["runs"]}))
        ax.set_xlabel("people in the pretraining pool")
        ax.set_ylabel(label)
        ax.set_title(f"{label} against the pool's size")
        ax.grid(alpha=0.3)
    row_axes[0].legend(fontsize=7)


def seed_noise(rows: list[dict], key: str) -> tuple[float, int]:
    """One run's standard deviation in `key` from the seed alone: runs that differ only in their seed,
    RMS of their differences over sqrt 2. Returns (sigma, number of pairs)."""
    cells: dict[tuple, dict[int, float]] = {}
    for r in rows:
        cells.setdefault((r["pair"], start_label(r), r["minutes"]), {})[r.get("seed", 0)] = r[key]
    diffs = [v[0] - v[1] for v in cells.values() if set(v) == {0, 1}]
    return (float(np.sqrt(np.mean(np.square(diffs)) / 2)) if diffs else float("nan")), len(diffs)


def doublings(gap: float, slope: float, start: float) -> str:
    """How many doublings of the people, from log2(people) = `start`, a line of `slope` needs to rise `gap`."""
    if gap <= 0:
        return "already met"
    if slope <= 0:
        return "never"
    return f"{gap / slope:.1f} doublings ({2 ** (start + gap / slope):.0f} people)"


def growth_fit(rows: list[dict]) -> list[str]:
    """The extrapolation: per pair and metric, a least-squares line in log2(people), its standard error
    from the seed noise, and how many doublings of the pool would reach the goal at the fitted slope and
    at the fitted slope plus two standard errors (the most the noise allows). Empty without a growth."""
    lines, growth = [], pool_growth(rows)
    for key, label, digits in (("ssim", "masked SSIM", 3), ("sharpness_ratio", "sharpness", 3)):
        sigma, n = seed_noise(rows, key)
        for pair, g in growth.items():
            x = np.log2([people for people, _ in g["runs"]])
            y = np.array([r[key] for _, r in g["runs"]])
            sxx = float(np.sum((x - x.mean()) ** 2))
            slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
            se = sigma / np.sqrt(sxx)
            gap = g["goal"][key] - (y.mean() + slope * (x[-1] - x.mean()))
            reach = "; ".join(doublings(gap, rate, x[-1]) + f" at {name}"
                              for rate, name in ((slope, "the fitted slope"), (slope + 2 * se, "slope + 2 SE")))
            lines.append(f"{pair} {label}: {slope:+.{digits}f} ± {se:.{digits}f} per doubling of the pool's people "
                         f"(seed sigma {sigma:.{digits}f} from {n} pairs of runs); the goal is {gap:+.{digits}f} "
                         f"above the line at {2 ** x[-1]:.0f} people: {reach}")
    return lines


def table(rows: list[dict]) -> str:
    """The rows as a markdown table, pair by pair, scratch first."""
    head = ["pair", "start", "budget (min)", "steps"] + [label for _, label, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    order = sorted(rows, key=lambda r: (r["pair"], r["arm"] != "scratch", run_label(r), r["minutes"]))
    for r in order:
        cells = [r["pair"], run_label(r), f"{r['minutes']:g}", str(r["steps"])]
        cells += ["" if r.get(k) is None else f"{r[k]:.{d}f}" for k, _, d in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
