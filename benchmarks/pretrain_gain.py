"""Does pretraining pay, and when? `deepfake pretrain` on people outside the pair, then `train --from`
on the pair, against the same pair trained from scratch, measured by `deepfake evaluate`.

    python benchmarks/pretrain_gain.py --work DIR [--arms scratch,pretrain,reuse,identities]
        [--pair d6 d14] [--pool d3 d18 s18] [--reuse-c d3] [--preset quick]
        [--pretrain-minutes 10 30] [--finetune-minutes 1 2 4] [--finetune-resets inter none]
        [--scratch-minutes 1 2 4 8]
        [--reuse-minutes 1 2 4] [--reuse-starts none inter scratch] [--identity-counts 1 2 3] [--identity-minutes 10]
        [--optimizer source|fresh] [--seed 0] [--pretrain-seed S] [--steps-per-minute 820 | --wall] [--table]

Budgets are minutes of `quick` on 2 CPU cores. By default each is turned into steps at
--steps-per-minute (820: `quick` on an unshared 2-core box, benchmarks/RESULTS.md's quality run), so a
run on a shared or faster machine trains what 2 unshared cores would. --wall makes them true wall-clock
budgets instead (`--minutes`), for an unshared machine.

A budget ladder (1, 2, 4, 8 minutes) is one model folder trained further at each rung: a resumed run is
exactly the uninterrupted one, and the presets' schedules count steps, so a rung equals a separate run of
that length. A --seed other than 0 trains folders of its own (`_seed1`), and --pretrain-seed picks the
pretrained model they start from (default: --seed), so fine-tunes of several seeds can share one
pretrain: the seed's noise, measured. --optimizer fresh starts every `--from` run with a fresh
optimizer instead of the source's optimizer state (train/reuse.py), by starting from a copy of the
source's weights and config without its checkpoints; those folders and rows keep the plain names, and
the source's state (the default) adds `_carried`. Every command is printed before it runs; the rows go to
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the report beside this file
from pretrain_gain_report import COLUMNS, growth_fit, plot, read_rows, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("DEEPFAKE_MEDIA", ROOT.parent / "shared" / "media"))
CLIPS = ("d6", "d14", "d3", "d18", "s18")  # the shared clips of five people
QUICK_STEPS_PER_MINUTE = 820  # `quick`, 2 unshared CPU cores: 3280 steps in 4 minutes (benchmarks/RESULTS.md)


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

    def source(self, model: Path) -> tuple[Path, str, dict]:
        """What a `--from` run starts from under --optimizer, the suffix of its name and its row's field:
        the model itself (its optimizer state comes along), or for `fresh` a copy of its weights and
        config alone, which train/reuse.py starts with a fresh optimizer."""
        if self.args.optimizer == "source":
            return model, "_carried", {"optimizer": "source"}
        bare = self.work / "models" / f"{model.name}_weights_only"
        weights = "autoencoder.safetensors"
        if not (bare / weights).is_file() or (bare / weights).stat().st_mtime < (model / weights).stat().st_mtime:
            bare.mkdir(parents=True, exist_ok=True)  # new, or the source trained further since (scratch's ladder)
            for name in ("discriminator.safetensors", "config.json", weights):
                if (model / name).is_file():
                    subprocess.run(["cp", "-p", str(model / name), str(bare / name)], check=True)
        return bare, "", {}

    def pretrain(self) -> None:
        a, b = (self.faceset(n) for n in self.args.pair)
        for pre_min, model in self.pretrained(self.args.pool, self.args.pretrain_minutes).items():
            source, opt_suffix, opt_info = self.source(model)
            for reset in self.args.finetune_resets:
                suffix = ("" if reset == "inter" else f"_reset_{reset}") + opt_suffix
                self.ladder(f"ft_{a.name}_{b.name}_from_{model.name}{suffix}", a, b, self.args.finetune_minutes,
                            ["--from", str(source), "--reset", reset],
                            {"arm": "pretrained", "pair": f"{a.name}/{b.name}", "pool": "+".join(self.args.pool),
                             "pretrain_minutes": pre_min, "reset": reset, **opt_info})

    def identities(self) -> None:
        a, b = (self.faceset(n) for n in self.args.pair)
        rung = sorted(self.args.finetune_minutes)[len(self.args.finetune_minutes) // 2]
        for count in self.args.identity_counts:
            people = self.args.pool[:count]
            model = self.pretrained(people, [self.args.identity_minutes])[self.args.identity_minutes]
            source, opt_suffix, opt_info = self.source(model)
            self.ladder(f"ft_{a.name}_{b.name}_from_{model.name}{opt_suffix}", a, b, [rung],
                        ["--from", str(source), "--reset", "inter"],
                        {"arm": "pretrained", "pair": f"{a.name}/{b.name}", "pool": "+".join(people),
                         "pretrain_minutes": self.args.identity_minutes, "reset": "inter", **opt_info})

    def reuse(self) -> None:
        ab = self.scratch()
        a, c = self.faceset(self.args.pair[0]), self.faceset(self.args.reuse_c)
        source, opt_suffix, opt_info = self.source(ab)
        ab_name = ab.name.removesuffix(seed_suffix(self.args.seed))  # the seed has its own field: runs of two seeds pair up
        for reset in [r for r in ("none", "inter") if r in self.args.reuse_starts]:
            self.ladder(f"reuse_{a.name}_{c.name}_{reset}{opt_suffix}", a, c, self.args.reuse_minutes,
                        ["--from", str(source), "--reset", reset],
                        {"arm": f"reuse ({ab_name}, --reset {reset})", "pair": f"{a.name}/{c.name}", "reset": reset,
                         **opt_info})
        if "scratch" in self.args.reuse_starts:
            self.ladder(f"scratch_{a.name}_{c.name}", a, c, self.args.reuse_minutes,
                        [], {"arm": "scratch", "pair": f"{a.name}/{c.name}"})


def seed_suffix(seed: int) -> str:
    return f"_seed{seed}" if seed else ""


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
    p.add_argument("--optimizer", default="source", choices=["source", "fresh"],
                   help="what a --from run's optimizer starts with: the source's state (train's own behaviour) "
                        "or a fresh one")
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
