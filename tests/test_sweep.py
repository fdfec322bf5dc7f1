"""Sweep: grid parsing, resume and failure handling (fake trainer), and a real tiny-preset sweep."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import ROOT
from deepfake.config import SweepConfig, TrainConfig
from deepfake.errors import DeepfakeError
from deepfake.sweep.run import expand_grid, load_state, parse_grid, resolve_key, run_sweep


def test_parse_inline_grid_types_values_by_their_field():
    grid = parse_grid(["activation=relu,gelu", "model.encoder_channels=[32,64],[16,32]", "gan_weight=0,0.1",
                       "flip=on,off", "betas=[0.5,0.99]"], TrainConfig())
    assert grid == {
        "model.activation": ["relu", "gelu"],
        "model.encoder_channels": [[32, 64], [16, 32]],
        "loss.gan_weight": [0.0, 0.1],
        "augment.flip": [True, False],
        "betas": [(0.5, 0.99)],
    }
    assert all(type(v) is float for v in grid["loss.gan_weight"])  # the field is a float: 0 is 0.0


def test_parse_grid_file_yaml_and_json(tmp_path):
    y = tmp_path / "grid.yaml"
    y.write_text("model:\n  activation: [relu, silu]\n  latent_dims: [64, 128]\nloss.gan_weight: 0.1\n")
    assert parse_grid(y, TrainConfig()) == {"model.activation": ["relu", "silu"], "model.latent_dims": [64, 128],
                                          "loss.gan_weight": [0.1]}
    j = tmp_path / "grid.json"
    j.write_text(json.dumps({"norm": ["none", "batch"]}))
    assert parse_grid(str(j), TrainConfig()) == {"model.norm": ["none", "batch"]}  # the model's, as for activation
    with pytest.raises(DeepfakeError, match="not found"):
        parse_grid(tmp_path / "missing.yaml", TrainConfig())
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(DeepfakeError, match="mapping"):
        parse_grid(bad, TrainConfig())


def test_short_keys_resolve_and_unknown_keys_are_errors():
    base = TrainConfig()
    assert resolve_key("activation", base) == "model.activation"  # the model's, not the discriminator's
    assert resolve_key("gan_weight", base) == "loss.gan_weight"
    assert resolve_key("resolution", base) == "model.resolution"
    assert resolve_key("lr", base) == "lr"
    with pytest.raises(DeepfakeError, match="unknown"):
        resolve_key("activaton", base)
    with pytest.raises(DeepfakeError, match="unknown"):
        resolve_key("model.nope", base)


def test_expand_grid_puts_baseline_first_and_dedupes_it():
    base = TrainConfig()  # activation leaky_relu
    variants = expand_grid({"activation": ["leaky_relu", "relu", "gelu"], "gan_weight": [0]}, base)
    assert [v.name for v in variants] == ["baseline", "activation=relu_gan_weight=0.0",
                                          "activation=gelu_gan_weight=0.0"]
    assert variants[0].baseline and not variants[1].baseline
    assert variants[1].overrides == {"model.activation": "relu", "loss.gan_weight": 0.0}  # int -> float field
    with pytest.raises(DeepfakeError, match=r"sweep grid: model.latent_dims: expected int .*got 'big'"):
        expand_grid({"latent_dims": ["big"]}, base)  # a typed (YAML) value of the wrong type


def test_stage_counts_carry_their_widths_so_every_variant_builds():
    from deepfake.models import build_autoencoder
    from deepfake.models.presets import preset_config
    from deepfake.sweep.run import apply_overrides

    base = preset_config("tiny")
    grid = {"encoder_stages": [base.model.encoder_stages - 1, base.model.encoder_stages + 1],
            "decoder_stages": [base.model.decoder_stages]}
    variants = expand_grid(grid, base)
    assert len(variants) == 3
    for v in variants[1:]:
        m = apply_overrides(base, v.overrides).model
        assert len(m.encoder_channels) == m.encoder_stages
        keep = min(m.encoder_stages, base.model.encoder_stages)
        assert m.encoder_channels[:keep] == base.model.encoder_channels[:keep]  # the shared stages keep their widths
        net = build_autoencoder(m)  # builds: the widths followed the stage count
        assert sum(p.numel() for p in net.parameters()) > 0
    deeper = apply_overrides(base, {"model.encoder_stages": base.model.encoder_stages + 1}).model
    assert deeper.encoder_channels[-1] == 2 * base.model.encoder_channels[-1]
    # An explicit width list in the grid wins (and a mismatch is then a real, reported error).
    explicit = apply_overrides(base, {"model.encoder_stages": 2, "model.encoder_channels": [8, 16, 32]}).model
    assert explicit.encoder_channels == [8, 16, 32]


class FakeTrainer:
    """Records calls; fails for chosen activations, the way a real OOM would surface."""

    def __init__(self, fail=()):
        self.calls, self.fail = [], set(fail)

    def train(self, cfg, a, b, model_dir):
        self.calls.append(cfg.model.activation)
        if cfg.model.activation in self.fail:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        model_dir.mkdir(parents=True)
        (model_dir / "act.txt").write_text(cfg.model.activation)

    def evaluate(self, model_dir, a, b, report_dir):
        act = (model_dir / "act.txt").read_text()
        return {"summary": {"ssim": {"relu": 0.5, "gelu": 0.7, "leaky_relu": 0.6, "silu": 0.1}[act], "params": 10}}


def test_failed_variant_is_recorded_and_sweep_resumes(tmp_path):
    grid = {"activation": ["relu", "gelu", "silu"]}
    cfg = SweepConfig(steps=3)
    fake = FakeTrainer(fail={"silu"})
    res = run_sweep("A", "B", grid, tmp_path, cfg, base=TrainConfig(), train_fn=fake.train,
                    evaluate_fn=fake.evaluate, plots=True)
    assert (tmp_path / "quality_vs_cost.png").stat().st_size > 0 and (tmp_path / "knob_effects.png").is_file()
    assert fake.calls == ["leaky_relu", "relu", "gelu", "silu"]
    assert res.failed == ["activation=silu"]
    assert [r["variant"] for r in res.rows] == ["activation=gelu", "baseline", "activation=relu", "activation=silu"]
    assert [r["rank"] for r in res.rows] == [1, 2, 3, ""]
    state = load_state(tmp_path)
    assert state["variants"]["activation=silu"]["status"] == "failed"
    assert "out of memory" in state["variants"]["activation=silu"]["error"]
    md = (tmp_path / "results.md").read_text()
    assert "| 2 | **baseline** |" in md and "Failed variants" in md

    # Resume: finished variants are not rerun; the failed one is retried.
    fake2 = FakeTrainer()
    res2 = run_sweep("A", "B", grid, tmp_path, cfg, base=TrainConfig(), train_fn=fake2.train,
                     evaluate_fn=fake2.evaluate, plots=False)
    assert fake2.calls == ["silu"]
    assert sorted(res2.skipped) == ["activation=gelu", "activation=relu", "baseline"]
    assert res2.rows[-1]["variant"] == "activation=silu" and res2.rows[-1]["status"] == "done"

    # A different budget in the same folder would not be a fair comparison.
    with pytest.raises(DeepfakeError, match="different base"):
        run_sweep("A", "B", grid, tmp_path, SweepConfig(steps=4), base=TrainConfig(), train_fn=fake2.train,
                  evaluate_fn=fake2.evaluate, plots=False)


def test_interrupted_variant_is_resumed(tmp_path):
    grid = {"activation": ["relu"]}
    calls = []

    def interrupted(cfg, a, b, model_dir):
        calls.append(cfg.model.activation)
        if cfg.model.activation == "relu":
            raise KeyboardInterrupt

    fake = FakeTrainer()
    with pytest.raises(KeyboardInterrupt):
        run_sweep("A", "B", grid, tmp_path, SweepConfig(), base=TrainConfig(),
                  train_fn=lambda *a: (fake.train(*a), interrupted(*a)), evaluate_fn=fake.evaluate, plots=False)
    assert load_state(tmp_path)["variants"]["activation=relu"]["status"] == "running"
    fake2 = FakeTrainer()
    # The interrupted variant's folder exists; the real trainer resumes from its checkpoint there.
    import shutil

    shutil.rmtree(tmp_path / "variants" / "activation=relu" / "model")
    res = run_sweep("A", "B", grid, tmp_path, SweepConfig(), base=TrainConfig(), train_fn=fake2.train,
                    evaluate_fn=fake2.evaluate, plots=False)
    assert fake2.calls == ["relu"] and res.skipped == ["baseline"]


def test_real_tiny_sweep_over_two_activations_ranks_and_resumes(faceset_a, faceset_b, tmp_path):
    """The real trainer and evaluator: two activations of the tiny preset, a few steps each, on CPU."""
    from dataclasses import replace

    from deepfake.config import EvaluateConfig
    from deepfake.models.presets import preset_config
    from deepfake.train import train

    base = replace(preset_config("tiny"), val_every=4, save_every=1000, preview_every=1000, log_every=2)
    cfg = SweepConfig(base="tiny", steps=8, rank_by="ssim", device="cpu",
                      evaluate=EvaluateConfig(max_faces=2, device="cpu"))
    grid = parse_grid(["activation=leaky_relu,relu"], base)  # leaky_relu is the preset's own: the baseline
    calls = []

    def counting_train(c, a, b, model_dir):
        calls.append(c.model.activation)
        return train(c, a, b, model_dir, progress=False)

    res = run_sweep(faceset_a, faceset_b, grid, tmp_path, cfg, base=base, train_fn=counting_train)
    assert calls == ["leaky_relu", "relu"] and not res.failed
    rows = res.rows
    assert [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["ssim"] >= rows[1]["ssim"] and all(0 < r["ssim"] < 1 for r in rows)
    assert all(r["params"] > 0 and r["faces_per_s"] > 0 and r["steps"] == 8 for r in rows)
    assert {r["variant"] for r in rows if r["baseline"]} == {"baseline"}
    with open(tmp_path / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2
    md = (tmp_path / "results.md").read_text()
    assert "**baseline**" in md and "Ranked by **ssim**" in md
    assert (tmp_path / "variants" / "activation=relu" / "model" / "config.json").is_file()
    assert (tmp_path / "quality_vs_cost.png").is_file() and (tmp_path / "knob_effects.png").is_file()
    print("\n" + md.split("\n\n")[2])

    # Resume: nothing is retrained, the table is the same.
    res2 = run_sweep(faceset_a, faceset_b, grid, tmp_path, cfg, base=base, train_fn=counting_train)
    assert calls == ["leaky_relu", "relu"]
    assert sorted(res2.skipped) == ["activation=relu", "baseline"] and not res2.ran
    assert [r["variant"] for r in res2.rows] == [r["variant"] for r in rows]


def test_minutes_budget_is_the_only_limit_and_a_resume_gets_what_is_left(monkeypatch, tmp_path):
    import deepfake.train
    from deepfake.sweep.run import _default_train
    from deepfake.train.metrics import write_metrics

    calls = []

    def fake_train(cfg, a, b, model_dir, **kw):
        calls.append(kw)

    monkeypatch.setattr(deepfake.train, "train", fake_train)
    train = _default_train(SweepConfig(minutes=2))
    train(TrainConfig(steps=5), "A", "B", tmp_path)
    assert calls == [{"minutes": 2, "step_limit": False}]
    write_metrics(tmp_path / "metrics.csv", [{"step": 10, "wall_s": 30.0}])  # half a minute already spent
    calls.clear()
    train(TrainConfig(steps=5), "A", "B", tmp_path)
    assert calls == [{"minutes": 1.5, "step_limit": False}]
    calls.clear()
    train = _default_train(SweepConfig(steps=7))
    train(TrainConfig(steps=7), "A", "B", tmp_path)
    assert calls == [{}]


def test_one_at_a_time_grid_and_bundles(tmp_path):
    """A tuning study's grid: every value of every key is a variant of its own against the baseline,
    and a bundle sets several keys in one variant; the checked-in study grid expands and builds."""
    from deepfake.sweep.run import apply_overrides
    from deepfake.models import build_autoencoder, preset_config

    base = preset_config("tiny")
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("one_at_a_time: true\nmodel: {activation: [relu, gelu]}\nlr_dropout: [0.3]\n"
                         "bundles:\n  - {augment.warp_until_step: 10, loss.gan_weight: 0.1}\n")
    variants = expand_grid(parse_grid(grid_file, base), base)
    assert [v.overrides for v in variants] == [
        {}, {"model.activation": "relu"}, {"model.activation": "gelu"}, {"lr_dropout": 0.3},
        {"augment.warp_until_step": 10, "loss.gan_weight": 0.1}]
    study = expand_grid(parse_grid(ROOT / "studies" / "baseline.yaml", base), base)
    assert len(study) > 15 and study[0].baseline
    for v in study:
        build_autoencoder(apply_overrides(base, v.overrides).model)  # every variant is a model that builds


def test_a_sweep_saved_before_a_config_field_existed_still_resumes(tmp_path):
    grid = {"activation": ["relu"]}
    fake = FakeTrainer()
    run_sweep("A", "B", grid, tmp_path, SweepConfig(steps=3), base=TrainConfig(), train_fn=fake.train,
              evaluate_fn=fake.evaluate, plots=True)
    assert (tmp_path / "variants.png").stat().st_size > 0
    state_file = tmp_path / "sweep_state.json"
    state = json.loads(state_file.read_text())
    del state["sweep"]["base"]["data"]["mask"]  # as an older checkout wrote it
    state_file.write_text(json.dumps(state))
    fake2 = FakeTrainer()
    res = run_sweep("A", "B", grid, tmp_path, SweepConfig(steps=3), base=TrainConfig(), train_fn=fake2.train,
                    evaluate_fn=fake2.evaluate, plots=False)
    assert fake2.calls == [] and sorted(res.skipped) == ["activation=relu", "baseline"]
    # A saved value that differs from today's is still a different sweep.
    state["sweep"]["base"]["lr"] = 1.0
    state_file.write_text(json.dumps(state))
    with pytest.raises(DeepfakeError, match="different base"):
        run_sweep("A", "B", grid, tmp_path, SweepConfig(steps=3), base=TrainConfig(), train_fn=fake2.train,
                  evaluate_fn=fake2.evaluate, plots=False)


def test_ctrl_c_stops_the_sweep_and_the_variant_resumes_to_the_full_budget(faceset_a, faceset_b, tmp_path,
                                                                           one_torch_thread):
    """train() saves and returns on Ctrl-C; the sweep must stop there, not rank a half-trained variant."""
    import os
    import signal
    import threading
    import time
    from dataclasses import replace

    from deepfake.model_dir import AUTOENCODER, step_of
    from deepfake.models.presets import preset_config
    from deepfake.train.checkpoint import latest_snapshot

    steps = 20
    base = replace(preset_config("tiny"), batch=4, val_every=2, save_every=1000, preview_every=0, tensorboard=False)
    cfg = SweepConfig(steps=steps, device="cpu")
    grid = {"activation": ["relu"]}
    first = tmp_path / "variants" / "baseline" / "model"

    def evaluate(model_dir, a, b, report_dir):
        return {"summary": {"steps": step_of(model_dir / AUTOENCODER), "ssim": 0.5}}

    def ctrl_c_once_training():  # metrics.csv is first written at the step-2 validation, inside the loop
        deadline = time.time() + 120
        while not (first / "metrics.csv").is_file() and time.time() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_once_training, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(faceset_a, faceset_b, grid, tmp_path, cfg, base=base, evaluate_fn=evaluate, plots=False)
    assert 0 < latest_snapshot(first).step < steps  # train() saved on the signal
    state = load_state(tmp_path)
    assert state["variants"]["baseline"]["status"] != "done"
    assert "activation=relu" not in state["variants"]  # the sweep stopped

    res = run_sweep(faceset_a, faceset_b, grid, tmp_path, cfg, base=base, evaluate_fn=evaluate, plots=False)
    assert res.ran == ["baseline", "activation=relu"] and not res.failed
    assert [(r["status"], r["steps"]) for r in res.rows] == [("done", steps), ("done", steps)]


def test_a_variant_trained_short_of_the_budget_is_not_done(tmp_path):
    from deepfake.train import TrainResult

    def short(cfg, a, b, model_dir):
        return TrainResult(model_dir, step=3, stopped_by="stop_at", metrics=[], skipped_steps=0)

    res = run_sweep("A", "B", {"activation": ["relu"]}, tmp_path, SweepConfig(steps=5), base=TrainConfig(),
                    train_fn=short, evaluate_fn=lambda *a: {"summary": {"ssim": 0.5}}, plots=False)
    assert res.failed == ["baseline", "activation=relu"] and not res.ran
    assert "step 3, short of the sweep's 5 steps" in load_state(tmp_path)["variants"]["baseline"]["error"]


def test_every_variant_is_checked_before_anything_trains(tmp_path, capsys):
    from deepfake.cli import main as cli_main
    from deepfake.models.presets import preset_config

    base = preset_config("tiny")
    bad = {"activation=gelu,foo": "unknown activation 'foo'", "norm=bogus": "unknown norm 'bogus'",
           "val_split=head": "val_split 'head'", "batch=0": "batch 0: must be", "lr=-1": "lr -1: must be > 0",
           "resolution=65": "resolution 65: must be"}
    for spec, why in bad.items():
        with pytest.raises(DeepfakeError, match=rf"^sweep variant {spec.partition('=')[0]}=\S+: .*{why}"):
            expand_grid(parse_grid([spec], base), base)
    fake = FakeTrainer()
    with pytest.raises(DeepfakeError, match="sweep variant activation=foo: unknown activation 'foo'"):
        run_sweep("A", "B", {"activation": ["gelu", "foo"]}, tmp_path / "sw", SweepConfig(steps=3),
                  base=TrainConfig(), train_fn=fake.train, evaluate_fn=fake.evaluate, plots=False)
    assert fake.calls == [] and not (tmp_path / "sw").exists()
    assert cli_main(["sweep", "--a", "A", "--b", "B", "-o", str(tmp_path / "dry"), "--grid", "batch=4,0",
                     "--dry-run"]) == 2
    assert "sweep variant batch=0: batch 0: must be 1..4096" in capsys.readouterr().err

    # A key with no values is an error in a grid file as it is inline, not a silently smaller sweep.
    empty = tmp_path / "grid.yaml"
    empty.write_text("lr: []\nactivation: [relu]\n")
    with pytest.raises(DeepfakeError, match=r"grid.yaml: no values for lr"):
        parse_grid(empty, base)
    with pytest.raises(DeepfakeError, match="no values"):
        parse_grid(["lr="], base)


def test_sweep_state_is_strict_json_with_a_nan_metric(tmp_path):
    def reject(token):
        raise ValueError(f"bare {token} in the state file")

    fake = FakeTrainer()
    nan = lambda *a: {"summary": {"ssim": float("nan"), "psnr": 12.5}}  # noqa: E731
    res = run_sweep("A", "B", {"activation": ["relu"]}, tmp_path, SweepConfig(steps=3), base=TrainConfig(),
                    train_fn=fake.train, evaluate_fn=nan, plots=False)
    state = json.loads((tmp_path / "sweep_state.json").read_text(), parse_constant=reject)
    assert state["variants"]["baseline"]["summary"] == {"ssim": None, "psnr": 12.5}
    assert all(r["rank"] == "" for r in res.rows)  # a NaN is not ranked
    # Resumed from the state file, the null is n/a as the NaN was.
    res = run_sweep("A", "B", {"activation": ["relu"]}, tmp_path, SweepConfig(steps=3), base=TrainConfig(),
                    train_fn=fake.train, evaluate_fn=nan, plots=False)
    assert sorted(res.skipped) == ["activation=relu", "baseline"]
    assert "| baseline | done | n/a |" in (tmp_path / "results.md").read_text().replace("**", "")
