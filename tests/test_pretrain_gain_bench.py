"""The pretraining study's extrapolation (benchmarks/pretrain_gain_report.py): the growth with the pool's people,
fitted in log2(people) with the seed's noise, is the arithmetic docs/TUNING.md quotes, so it is checked on
rows whose answer is known. The training itself is tests/test_pretrain.py's."""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time

import pytest
from conftest import ROOT


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load("pretrain_gain_report")


@pytest.fixture(scope="module")
def study_module():
    return load("pretrain_gain")


def row(pair, arm, minutes, ssim, sharp, seed=0, pool=None, pretrain_minutes=10.0):
    r = {"key": f"{pair}-{arm}-{pool}-{minutes}-{seed}", "pair": pair, "arm": arm, "minutes": minutes, "seed": seed,
         "steps": int(minutes * 820), "ssim": ssim, "sharpness_ratio": sharp, "id_dist_source": 0.4,
         "landmark_error": 0.05, "pose_error": 2.0, "val_loss": 0.4}
    if arm == "pretrained":
        r |= {"pool": pool, "pretrain_minutes": pretrain_minutes, "reset": "inter"}
    return r


def study_rows(slope_ssim=0.01, slope_sharp=-0.02):
    """One pair: scratch at 2 and 8 minutes (the goal: SSIM 0.93, sharpness 0.40), 10-minute pretrains on
    1, 2 and 4 people, each exactly on a line in log2(people), and two seed pairs whose SSIM differ by
    0.004 and 0.002 and whose sharpness by 0.02 and 0.04."""
    rows = [row("a/b", "scratch", 2, 0.88, 0.30), row("a/b", "scratch", 8, 0.93, 0.40),
            row("a/b", "scratch", 8, 0.926, 0.42, seed=1)]
    pools = ["c", "c+d", "c+d+e+f"]
    for pool in pools:
        x = math.log2(len(pool.split("+")))
        rows.append(row("a/b", "pretrained", 2, 0.90 + slope_ssim * x, 0.35 + slope_sharp * x, pool=pool))
    rows.append(row("a/b", "pretrained", 2, 0.90 - 0.002, 0.35 + 0.04, seed=1, pool="c"))
    return rows


def test_seed_noise_is_the_rms_of_seed_pairs_over_root_two(bench):
    sigma, n = bench.seed_noise(study_rows(), "ssim")
    assert n == 2
    assert sigma == pytest.approx(math.sqrt((0.004 ** 2 + 0.002 ** 2) / 2 / 2))


def test_growth_fit_recovers_the_slope_and_the_people_needed(bench):
    rows = study_rows(slope_ssim=0.01, slope_sharp=-0.02)
    growth = bench.pool_growth(rows)
    assert [people for people, _ in growth["a/b"]["runs"]] == [1, 2, 4]
    assert growth["a/b"]["goal"]["minutes"] == 8 and growth["a/b"]["scratch"]["minutes"] == 2
    ssim_line, sharp_line = bench.growth_fit(rows)
    # SSIM: 0.92 at 4 people, +0.01 per doubling, goal 0.93: one doubling, 8 people.
    assert "+0.010 ± " in ssim_line and "the goal is +0.010 above the line at 4 people" in ssim_line
    assert "1.0 doublings (8 people) at the fitted slope" in ssim_line
    # Sharpness falls with the pool: never at the fitted slope; the noise allows a little rise.
    assert "-0.020 ± " in sharp_line and "never at the fitted slope" in sharp_line


def test_a_pool_of_one_size_has_no_growth_to_fit(bench):
    rows = [r for r in study_rows() if r.get("pool") in (None, "c")]
    assert bench.pool_growth(rows) == {}
    assert bench.growth_fit(rows) == []


def test_table_and_plot_show_every_run(bench, tmp_path):
    rows = study_rows()
    text = bench.table(rows)
    assert text.count("\n") == 2 + len(rows) - 1
    assert "pretrained 10 min on c+d+e+f (--reset inter)" in text and "scratch, seed 1" in text
    png = tmp_path / "gain.png"
    bench.plot(rows, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rows_with_the_optimizer_kept_are_labelled_and_stay_out_of_the_growth(bench):
    rows = study_rows()
    kept = dict(row("a/b", "pretrained", 2, 0.99, 0.99, pool="c+d"), optimizer="source", key="kept")
    text = bench.table(rows + [kept])
    assert "pretrained 10 min on c+d (--reset inter, optimizer kept)" in text
    assert bench.growth_fit(rows + [kept]) == bench.growth_fit(rows)  # a fresh-optimizer cell, unchanged


def test_a_fresh_optimizer_start_is_the_weights_and_config_without_checkpoints(tmp_path, study_module):
    """--optimizer fresh starts `train --from` from a copy without checkpoints/, which train/reuse.py
    starts with a fresh optimizer (tests/test_pretrain.py checks that side)."""
    model = tmp_path / "models" / "pre_c_10min"
    (model / "checkpoints" / "step_000010").mkdir(parents=True)
    for name in ("config.json", "autoencoder.safetensors", "checkpoints/step_000010/optimizer_g.json"):
        (model / name).write_text(name)
    args = argparse.Namespace(work=str(tmp_path), optimizer="fresh", seed=0, pretrain_seed=None)
    source, suffix, info = study_module.Study(args).source(model)
    assert (suffix, info) == ("", {}) and source != model
    assert sorted(p.name for p in source.iterdir()) == ["autoencoder.safetensors", "config.json"]
    assert (source / "config.json").read_text() == "config.json"
    (model / "autoencoder.safetensors").write_text("trained further")  # scratch's ladder, a rung later
    os.utime(model / "autoencoder.safetensors", (time.time() + 5, time.time() + 5))
    assert study_module.Study(args).source(model)[0] == source
    assert (source / "autoencoder.safetensors").read_text() == "trained further"
    args.optimizer = "source"
    assert study_module.Study(args).source(model) == (model, "_carried", {"optimizer": "source"})


def test_reuse_rows_of_two_seeds_share_their_start_and_pair_up_as_seed_noise(tmp_path, bench, study_module):
    """The reuse arm's source is a folder of its own per seed (`scratch_a_b_seed1`); its rows name the
    start without the seed, so the two seeds' runs are one line of the plot and one pair of the noise."""
    rows = []
    for seed in (0, 1):
        args = argparse.Namespace(work=str(tmp_path), optimizer="source", seed=seed, pretrain_seed=None,
                                  pair=["a", "b"], reuse_c="c", reuse_minutes=[2], reuse_starts=["inter"])
        study = study_module.Study(args)
        study.faceset = lambda name: tmp_path / "facesets" / name
        study.scratch = lambda seed=seed: tmp_path / "models" / ("scratch_a_b" + study_module.seed_suffix(seed))
        study.ladder = lambda name, a, c, rungs, extra, info, seed=seed: rows.append(
            row("a/c", info["arm"], rungs[0], 0.9 + 0.002 * seed, 0.4, seed=seed) | {"optimizer": info["optimizer"]})
        study.reuse()
    assert rows[0]["arm"] == rows[1]["arm"] == "reuse (scratch_a_b, --reset inter)"
    assert bench.seed_noise(rows, "ssim") == (pytest.approx(0.002 / 2 ** 0.5), 1)
