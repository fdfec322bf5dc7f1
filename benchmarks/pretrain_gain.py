"""Does pretraining pay, and when? `deepfake pretrain` on people outside the pair, then `train --from`
on the pair, against the same pair trained from scratch, measured by `deepfake evaluate`.

    python benchmarks/pretrain_gain.py --work DIR [--arms scratch,pretrain,reuse,identities]
        [--pair d6 d14] [--pool d3 d18 s18] [--reuse-c d3] [--preset quick]
        [--pretrain-minutes 10 30] [--finetune-minutes 1 2 4] [--finetune-resets inter none]
        [--scratch-minutes 1 2 4 8]
        [--reuse-minutes 1 2 4] [--reuse-starts none inter scratch] [--identity-counts 1 2 3] [--identity-minutes 10]
        [--seed 0] [--pretrain-seed S] [--steps-per-minute 820 | --wall] [--table]

Budgets are minutes of `quick` on 2 CPU cores. By default each is turned into steps at
--steps-per-minute (820: `quick` on an unshared 2-core box, benchmarks/RESULTS.md's quality run), so a
run on a shared or faster machine trains what 2 unshared cores would. --wall makes them true wall-clock
budgets instead (`--minutes`), for an unshared machine.

A budget ladder (1, 2, 4, 8 minutes) is one model folder trained further at each rung: a resumed run is
exactly the uninterrupted one, and the presets' schedules count steps, so a rung equals a separate run of
that length. A --seed other than 0 trains folders of its own (`_seed1`), and --pretrain-seed picks the
pretrained model they start from (default: --seed), so fine-tunes of several seeds can share one
pretrain: the seed's noise, measured. Every command is printed before it runs; the rows go to
WORK/results.jsonl (a rerun skips rows already there), and --table prints them as docs/TUNING.md's table.
Where the identities arm ran, --table also fits each pair's growth with the pool's people (a line in
log2(people), its standard error from the seed's noise) and says how many people would reach the goal,
the longest scratch run, at the fitted slope and at the most the noise allows; --plot adds that growth as
its last row of panels.

Arms:
- scratch: the pair from random weights.
- pretrain: pretrain on --pool, then fine-tune the pair from it (--reset inter, or each of
  --finetune-resets) at each --finetune-minutes.
- reuse: A<->B (the scratch arm's last rung), then A<->C with --reset none and --reset inter, against
  A<->C from scratch, at each --reuse-minutes.
- identities: pretrain on the first 1, 2, 3... people of --pool for --identity-minutes, then fine-tune
  the pair for the middle --finetune-minutes budget: how the gain grows with the number of people.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("DEEPFAKE_MEDIA", ROOT.parent / "shared" / "media"))
CLIPS = ("d6", "d14", "d3", "d18", "s18")  # the shared clips of five people
QUICK_STEPS_PER_MINUTE = 820  # `quick`, 2 unshared CPU cores: 3280 steps in 4 minutes (benchmarks/RESULTS.md)

COLUMNS = [("ssim", "masked SSIM", 3), ("sharpness_ratio", "sharpness", 3), ("id_dist_source", "dist. to source", 3),
           ("landmark_error", "landmarks", 3), ("pose_error", "pose (deg)", 2), ("val_loss", "val loss", 3)]


class Study:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.work)
        self.results = self.work / "results.jsonl"
        self.done = {row["key"] for row in read_rows(self.results)}
        self.pretrain_seed = args.seed if args.pretrain_seed is None else args.pretrain_seed

    # ------------------------------------------------------------------------------------------------
    # Commands.

    def run(self, *argv: str) -> None:
        cmd = [sys.executable, "-m", "deepfake", *argv]
        print("$ deepfake " + " ".join(shlex.quote(a) for a in argv), flush=True)
        subprocess.run(cmd, check=True)

    def faceset(self, name: str) -> Path:
        folder = self.work / "facesets" / name
        if not (folder / "faces.jsonl").is_file():
            self.run("extract", str(MEDIA / f"{name}.mp4"), "-o", str(folder), "--size", str(self.args.size),
                     "--no-progress")
        return folder

    def budget(self, minutes: float, before: float) -> list[str]:
        """The limit flags of a rung that ends at `minutes` of training (`before` already trained)."""
        if self.args.wall:
            return ["--minutes", f"{minutes - before:g}"]
        return ["--steps", str(round(minutes * self.args.steps_per_minute))]

    def evaluate(self, key: str, model: Path, a: Path, b: Path, info: dict) -> None:
        report = self.work / "reports" / key
        others = [str(self.faceset(n)) for n in CLIPS if n not in (a.name, b.name)]
        self.run("evaluate", "-m", str(model), "--a", str(a), "--b", str(b), "-o", str(report), "--no-plots",
                 "--distractors", *others)
        summary = json.loads((report / "metrics.json").read_text())["summary"]
        row = {"key": key, **info, "steps": summary.get("steps"), **{k: summary.get(k) for k, _, _ in COLUMNS},
               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with self.results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.done.add(key)

    def ladder(self, name: str, a: Path, b: Path, rungs: list[float], extra: list[str], info: dict,
               train_cmd: str = "train") -> Path:
        """Train model `name` on a/b up each rung of `rungs` (minutes), evaluating at each."""
        name += seed_suffix(self.args.seed)
        info = {**info, "seed": self.args.seed}
        model = self.work / "models" / name
        before = 0.0
        for minutes in sorted(rungs):
            key = f"{name}@{minutes:g}"
            if key not in self.done:
                first = not (model / "config.json").is_file()
                self.run(train_cmd, "--a", str(a), "--b", str(b), "-o", str(model), "--preset", self.args.preset,
                         "--seed", str(self.args.seed), "--no-progress", *self.budget(minutes, before),
                         *(extra if first else []))
                self.evaluate(key, model, a, b, {**info, "minutes": minutes})
            before = minutes
        return model

    def pretrained(self, people: list[str], rungs: list[float]) -> dict[float, Path]:
        """A model pretrained on `people` to each of `rungs` (minutes): one folder per rung, each the
        previous one trained further (copied, then resumed)."""
        out, before, prev = {}, 0.0, None
        for minutes in sorted(rungs):
            model = self.work / "models" / f"pre_{'+'.join(people)}_{minutes:g}min{seed_suffix(self.pretrain_seed)}"
            if not (model / "autoencoder.safetensors").is_file() or not self._reached(model, minutes):
                if prev is not None and not (model / "config.json").is_file():
                    subprocess.run(["cp", "-a", str(prev), str(model)], check=True)
                self.run("pretrain", *(str(self.faceset(p)) for p in people), "-o", str(model), "--preset",
                         self.args.preset, "--seed", str(self.pretrain_seed), "--no-progress",
                         *self.budget(minutes, before))
            out[minutes], before, prev = model, minutes, model
        return out

    def _reached(self, model: Path, minutes: float) -> bool:
        if self.args.wall:
            return True  # a wall budget is spent once; the folder exists
        state = sorted((model / "checkpoints").glob("step_*"))
        return bool(state) and int(state[-1].name[5:]) >= round(minutes * self.args.steps_per_minute)

    # ------------------------------------------------------------------------------------------------
    # Arms.

    def scratch(self) -> Path:
        a, b = (self.faceset(n) for n in self.args.pair)
        return self.ladder(f"scratch_{a.name}_{b.name}", a, b, self.args.scratch_minutes, [],
                           {"arm": "scratch", "pair": f"{a.name}/{b.name}"})

    def pretrain(self) -> None:
        a, b = (self.faceset(n) for n in self.args.pair)
        for pre_min, model in self.pretrained(self.args.pool, self.args.pretrain_minutes).items():
            for reset in self.args.finetune_resets:
                suffix = "" if reset == "inter" else f"_reset_{reset}"
                self.ladder(f"ft_{a.name}_{b.name}_from_{model.name}{suffix}", a, b, self.args.finetune_minutes,
                            ["--from", str(model), "--reset", reset],
                            {"arm": "pretrained", "pair": f"{a.name}/{b.name}", "pool": "+".join(self.args.pool),
                             "pretrain_minutes": pre_min, "reset": reset})

    def identities(self) -> None:
        a, b = (self.faceset(n) for n in self.args.pair)
        rung = sorted(self.args.finetune_minutes)[len(self.args.finetune_minutes) // 2]
        for count in self.args.identity_counts:
            people = self.args.pool[:count]
            model = self.pretrained(people, [self.args.identity_minutes])[self.args.identity_minutes]
            self.ladder(f"ft_{a.name}_{b.name}_from_{model.name}", a, b, [rung], ["--from", str(model), "--reset", "inter"],
                        {"arm": "pretrained", "pair": f"{a.name}/{b.name}", "pool": "+".join(people),
                         "pretrain_minutes": self.args.identity_minutes, "reset": "inter"})

    def reuse(self) -> None:
        ab = self.scratch()
        a, c = self.faceset(self.args.pair[0]), self.faceset(self.args.reuse_c)
        for reset in [r for r in ("none", "inter") if r in self.args.reuse_starts]:
            self.ladder(f"reuse_{a.name}_{c.name}_{reset}", a, c, self.args.reuse_minutes,
                        ["--from", str(ab), "--reset", reset],
                        {"arm": f"reuse ({ab.name}, --reset {reset})", "pair": f"{a.name}/{c.name}", "reset": reset})
        if "scratch" in self.args.reuse_starts:
            self.ladder(f"scratch_{a.name}_{c.name}", a, c, self.args.reuse_minutes,
                        [], {"arm": "scratch", "pair": f"{a.name}/{c.name}"})


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def seed_suffix(seed: int) -> str:
    return f"_seed{seed}" if seed else ""


def start_label(r: dict) -> str:
    if r["arm"] == "pretrained":
        return f"pretrained {r['pretrain_minutes']:g} min on {r['pool']} (--reset {r['reset']})"
    return r["arm"]


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
            cells.setdefault((r["pretrain_minutes"], r["minutes"]), []).append(r)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="facesets, models, reports and results.jsonl go here")
    p.add_argument("--arms", default="scratch,pretrain,reuse,identities", help="comma-separated, run in this order")
    p.add_argument("--pair", nargs=2, default=["d6", "d14"], help="A and B: people the pool does not contain")
    p.add_argument("--pool", nargs="+", default=["d3", "d18", "s18"], help="people to pretrain on")
    p.add_argument("--reuse-c", default="d3", help="C of the reuse arm (A<->B, then A<->C)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--seed", type=int, default=0, help="the seed of every run (not 0: folders of their own)")
    p.add_argument("--pretrain-seed", type=int, help="the pretrained models' seed (default: --seed)")
    p.add_argument("--size", type=int, default=128, help="aligned face size of the extracted facesets")
    p.add_argument("--pretrain-minutes", type=float, nargs="+", default=[10, 30])
    p.add_argument("--finetune-minutes", type=float, nargs="+", default=[1, 2, 4])
    p.add_argument("--finetune-resets", nargs="+", default=["inter"], choices=["inter", "decoders", "none"],
                   help="the pretrained arm's --reset for the fine-tune (DFL's rule for DF: inter)")
    p.add_argument("--scratch-minutes", type=float, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--reuse-minutes", type=float, nargs="+", default=[1, 2, 4])
    p.add_argument("--reuse-starts", nargs="+", default=["none", "inter", "scratch"], choices=["none", "inter", "scratch"],
                   help="the reuse arm's A<->C runs: from A<->B with --reset none / inter, and from scratch")
    p.add_argument("--identity-counts", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--identity-minutes", type=float, default=10)
    p.add_argument("--steps-per-minute", type=float, default=QUICK_STEPS_PER_MINUTE,
                   help="turns each minute budget into steps (default: quick on 2 unshared CPU cores)")
    p.add_argument("--wall", action="store_true", help="true wall-clock budgets (--minutes), for an unshared machine")
    p.add_argument("--table", action="store_true", help="print WORK/results.jsonl as a markdown table and exit")
    p.add_argument("--plot", metavar="PNG", help="also draw WORK/results.jsonl: SSIM and sharpness against the budget")
    args = p.parse_args(argv)
    study = Study(args)
    if args.plot:
        plot(read_rows(study.results), Path(args.plot))
    if args.table:
        rows = read_rows(study.results)
        print(table(rows))
        fit = growth_fit(rows)
        if fit:
            print("\n" + "\n".join(fit))
        return 0
    if not MEDIA.exists():
        print(f"pretrain_gain: shared media not found at {MEDIA} (set DEEPFAKE_MEDIA)", file=sys.stderr)
        return 2
    study.work.mkdir(parents=True, exist_ok=True)
    mode = "wall-clock minutes" if args.wall else f"{args.steps_per_minute:g} steps per minute"
    print(f"pretrain_gain: arms {args.arms}, budgets as {mode}, work in {study.work}", flush=True)
    for arm in [s.strip() for s in args.arms.split(",") if s.strip()]:
        if arm not in ("scratch", "pretrain", "reuse", "identities"):
            print(f"pretrain_gain: unknown arm '{arm}'", file=sys.stderr)
            return 2
        getattr(study, arm)()
    print(table(read_rows(study.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
