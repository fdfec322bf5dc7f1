"""The training loop on real faces (the shared d6/d14 facesets): learning, exact resume, GAN phases,
NaN protection, validation and over-fitting warnings, the limits (steps, minutes, signals), the CLI."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import pytest
import torch

from deepfake.cli import main as cli_main
from deepfake.errors import DeepfakeError
from deepfake.faceset.cache import FaceCache
from deepfake.model_dir import load_model_dir
from deepfake.models import preset_config
from deepfake.train import batches as batches_module
from deepfake.train import loop as loop_module
from deepfake.train import train
from deepfake.train.augment import no_augment
from deepfake.train.build import build
from deepfake.train.checkpoint import latest_snapshot
from deepfake.train.metrics import read_metrics
from deepfake.train.step import one_pass, resolve_compile_mode


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def tiny(**kw):
    cfg = preset_config("tiny")
    return dataclasses.replace(cfg, **kw)


def with_gan(cfg, **loss):
    return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, gan_weight=0.1, **loss))


def test_loss_falls_over_200_steps_on_real_faces(faceset_a, faceset_b, tmp_path):
    out = tmp_path / "model"
    cfg = tiny(steps=200, batch=4, log_every=20, val_every=50, save_every=100, preview_every=100)
    result = train(cfg, faceset_a, faceset_b, out, progress=False)
    losses = [r["loss"] for r in result.metrics]
    vals = [r["val_loss"] for r in result.metrics if r["val_loss"] is not None]
    print("train loss per 20 steps:", [round(x, 3) for x in losses], "val:", [round(v, 3) for v in vals])
    assert result.step == 200 and not result.interrupted and result.skipped_steps == 0
    assert losses[-1] < 0.75 * losses[0]
    assert vals[-1] < vals[0]
    # Outputs: config with the faceset geometry, metrics, previews, backups, identities.
    loaded = load_model_dir(out)
    assert loaded.step == 200 and loaded.config.face_size == 128 and loaded.config.coverage > 0
    assert loaded.discriminator is None  # gan_weight 0: the plain autoencoder baseline
    assert set(loaded.identities) == {"a", "b"} and loaded.identities["a"].shape == (128,)
    rows = read_metrics(out / "metrics.csv")
    assert [r["step"] for r in rows] == sorted(list(range(20, 201, 20)) + [50, 150])  # log_every, plus validations
    assert [r["step"] for r in rows if r["val_loss"] is not None] == [50, 100, 150, 200]
    assert all(r["faces_per_s"] > 0 and r["wall_s"] > 0 for r in rows)
    assert all(0 < r["gpu_busy"] <= 1 and r["data_ms"] > 0 for r in rows)
    assert all(r["peak_mem_gib"] is None for r in rows)  # CUDA's allocator statistic; none on the CPU
    assert 0 < result.gpu_busy <= 1
    preview = cv2.imread(str(out / "previews" / "step_000200.png"))
    assert preview.shape[0] == 6 * 64 and preview.shape[1] == 56 + cfg.preview_faces * 64
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000100", "step_000200"]
    assert not (out / "tensorboard").exists() or _has_tensorboard()


def test_time_budget_stops_saves_and_resumes(faceset_a, faceset_b, tmp_path):
    out = tmp_path / "model"
    cfg = tiny(steps=10**9, batch=4, log_every=2, val_every=0, save_every=10**6, preview_every=0)
    t0 = time.perf_counter()
    first = train(cfg, faceset_a, faceset_b, out, progress=False, minutes=2 / 60)
    took = time.perf_counter() - t0
    # Stopped by the clock at a log boundary, not by Ctrl-C, and saved there.
    assert first.stopped_by == "minutes" and first.step > 0 and first.step % 2 == 0
    assert latest_snapshot(out).step == first.step
    assert took < 60, f"a 2 s budget ran {took:.0f} s"
    second = train(cfg, faceset_a, faceset_b, out, progress=False, minutes=1 / 60)
    assert second.step > first.step  # a new budget resumes where the last one stopped


def test_busy_fraction_sees_a_slow_data_path(faceset_a, faceset_b, tmp_path, monkeypatch):
    """gpu_busy is compute time over wall time: 30 ms of extra data work per side must show up in
    data_ms and pull the busy fraction down (what faceswap users see as an idle GPU)."""
    cfg = tiny(steps=30, batch=4, log_every=10, val_every=0, save_every=10**6, preview_every=0)
    fast = train(cfg, faceset_a, faceset_b, tmp_path / "fast", progress=False)
    real_augment = batches_module.augment

    def slow_augment(*args, **kwargs):
        time.sleep(0.03)
        return real_augment(*args, **kwargs)

    monkeypatch.setattr(batches_module, "augment", slow_augment)
    slow = train(cfg, faceset_a, faceset_b, tmp_path / "slow", progress=False)
    print("busy fast/slow:", round(fast.gpu_busy, 3), round(slow.gpu_busy, 3),
          "data ms fast/slow:", [round(r["data_ms"], 1) for r in fast.metrics], [round(r["data_ms"], 1) for r in slow.metrics])
    assert all(r["data_ms"] >= 60 for r in slow.metrics)  # two sides x 30 ms, measured in the data section
    assert all(r["data_ms"] < 60 for r in fast.metrics)
    assert slow.gpu_busy < fast.gpu_busy - 0.15


def test_the_hot_loop_reads_nothing_back_from_the_device(faceset_a, faceset_b, tmp_path, monkeypatch):
    """No .item()/.tolist()/bool()/float() of a tensor between log boundaries: on a GPU each would stall
    the host until the queue drains. Every such read is recorded with the step it happened in; only the
    log boundaries (every 4 steps) may read."""
    from torch.overrides import TorchFunctionMode

    # .numpy() is left out: it works on host tensors only (a device tensor must pass .cpu(), recorded),
    # and the augmentation's parameters are host numbers by design (augment.sample_params).
    host_reads = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu"}
    reads: list[tuple[int, str]] = []  # (steps started so far, read)
    steps_started = [0]

    class CountingTimer(loop_module.StepTimer):
        def data_start(self):
            steps_started[0] += 1
            super().data_start()

    class RecordReads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in host_reads:
                reads.append((steps_started[0], func.__name__))
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(loop_module, "StepTimer", CountingTimer)
    # Every phase on: GAN, lazy R1 every other step, gradient clipping, two micro-batches, validation.
    cfg = with_gan(tiny(steps=12, batch=4, log_every=4, val_every=4, save_every=10**6, preview_every=0,
                        grad_clip=1.0, grad_accum=2), r1_gamma=1.0, r1_every=2)
    with RecordReads():
        result = train(cfg, faceset_a, faceset_b, tmp_path / "model", progress=False)
    assert result.step == 12 and [r["step"] for r in result.metrics] == [4, 8, 12]
    assert all(r["val_loss"] > 0 for r in result.metrics)
    in_loop = [(step, name) for step, name in reads if step > 0]
    assert in_loop, "the log boundaries read the loss sums: the recorder must see them"
    # A read after step k's compute (k = 4, 8, 12) belongs to the log section of step k.
    assert {step for step, _ in in_loop} <= {4, 8, 12}, in_loop


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def test_resume_equals_an_uninterrupted_run(faceset_a, faceset_b, tmp_path):
    cfg = with_gan(tiny(steps=12, batch=4, log_every=3, val_every=6, save_every=6, preview_every=0), r1_gamma=1.0, r1_every=2)
    straight = train(cfg, faceset_a, faceset_b, tmp_path / "straight", progress=False)
    first = train(cfg, faceset_a, faceset_b, tmp_path / "resumed", progress=False, stop_at=7)
    assert first.step == 7 and first.stopped_by == "stop_at" and latest_snapshot(tmp_path / "resumed").step == 7
    resumed = train(cfg, faceset_a, faceset_b, tmp_path / "resumed", progress=False)
    assert resumed.step == 12 and resumed.stopped_by == "steps"
    keys = ("loss", "loss_a", "loss_b", "gan_g", "loss_d", "d_acc_real", "d_acc_fake", "val_loss")
    a = [[r["step"]] + [r[k] for k in keys] for r in read_metrics(tmp_path / "straight" / "metrics.csv")]
    b = [[r["step"]] + [r[k] for k in keys] for r in read_metrics(tmp_path / "resumed" / "metrics.csv")]
    # The stopped run logs at its stop (step 7) too, a partial window; the row after it (step 9) is
    # still identical because the window's sums were saved and restored.
    assert a == [row for row in b if row[0] != 7]
    ma, mb = load_model_dir(tmp_path / "straight"), load_model_dir(tmp_path / "resumed")
    for (name, p), q in zip(ma.autoencoder.state_dict().items(), mb.autoencoder.state_dict().values()):
        assert torch.equal(p, q), name
    for p, q in zip(ma.discriminator.state_dict().values(), mb.discriminator.state_dict().values()):
        assert torch.equal(p, q)


@pytest.fixture(scope="module")
def real_batches(faceset_a, faceset_b):
    a = FaceCache.from_faceset(faceset_a, 64, progress=False)
    b = FaceCache.from_faceset(faceset_b, 64, progress=False)
    return ([no_augment(a.images[:4], a.masks[:4], a.landmarks[:4])], [no_augment(b.images[:4], b.masks[:4], b.landmarks[:4])])


def make_step(cfg):
    """The step training builds for `cfg`, on the CPU in float32, from seed 0."""
    torch.manual_seed(0)
    return build(dataclasses.replace(cfg, amp="off"), torch.device("cpu")).step


def snapshot(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_gan_phases_touch_only_their_own_network(real_batches):
    step = make_step(with_gan(tiny()))
    ba, bb = real_batches
    g0, d0 = snapshot(step.autoencoder), snapshot(step.discriminator)
    logs, skipped, fakes = step.generator_phase(ba, bb, step=0)
    assert float(logs[9]) > 0  # the adversarial term was in G's loss
    assert not same(g0, snapshot(step.autoencoder)), "G step did not update G"
    assert same(d0, snapshot(step.discriminator)), "G step changed D"
    assert all(p.grad is None for p in step.discriminator.parameters())
    g1 = snapshot(step.autoencoder)
    d_logs, _ = step.discriminator_phase(ba, bb, fakes, step=0)
    assert not same(d0, snapshot(step.discriminator)), "D step did not update D"
    assert same(g1, snapshot(step.autoencoder)), "D step changed G"
    assert all(p.grad is None for p in step.autoencoder.parameters())
    assert 0 <= float(d_logs[1]) <= 1 and 0 <= float(d_logs[2]) <= 1


def test_bf16_autocast_step_logs_the_fp32_losses(real_batches):
    """A GPU trains under bf16 autocast (--amp auto). On the same weights and faces, every logged term
    must match fp32 up to bf16's rounding of the networks' outputs (0.1 % here); with SSIM's blur left
    to autocast (bf16 variances), DSSIM was 4-5 % off on these faces and the total 3-4 %."""
    cfg = with_gan(tiny())
    ba, bb = real_batches
    fp32, bf16 = make_step(cfg), make_step(cfg)
    bf16.amp_dtype = torch.bfloat16
    logs32, _, fakes32 = fp32.generator_phase(ba, bb, step=0)
    logs16, _, fakes16 = bf16.generator_phase(ba, bb, step=0)
    names = ["loss", "loss_a", "loss_b", "dssim_a", "dssim_b", "mse_a", "mse_b", "mask_a", "mask_b", "gan_g"]
    for name, x16, x32 in zip(names, logs16.tolist(), logs32.tolist()):
        assert x16 == pytest.approx(x32, rel=0.01, abs=1e-4), f"{name}: bf16 {x16} vs fp32 {x32}"
    assert float(logs32[3]) > 0.05  # DSSIM of an untrained model on real faces: far from zero
    d32, _ = fp32.discriminator_phase(ba, bb, fakes32, step=0)
    d16, _ = bf16.discriminator_phase(ba, bb, fakes16, step=0)
    assert float(d16[0]) == pytest.approx(float(d32[0]), rel=0.01)


@pytest.mark.parametrize("r1", [False, True])
def test_one_batched_pass_equals_a_pass_per_identity(real_batches, r1):
    """batch_sides (the default) runs the shared encoder once on A's and B's faces stacked, and D once on
    both sides' fakes (G phase) and on real and fake stacked (D phase). Per face it is the same
    arithmetic, so a whole G+D step, R1's double backward included, must land on the same weights."""
    ba, bb = real_batches
    cfg = with_gan(tiny(), r1_gamma=1.0 if r1 else 0.0, r1_every=1)
    steps = {flag: make_step(dataclasses.replace(cfg, batch_sides=flag)) for flag in (True, False)}
    assert steps[True].g_model.one_pass and steps[True].d_one_pass
    assert not steps[False].g_model.one_pass and not steps[False].d_one_pass
    out = {}
    for flag, step in steps.items():
        g_logs, _, fakes = step.generator_phase(ba, bb, step=0)
        d_logs, _ = step.discriminator_phase(ba, bb, fakes, step=0)
        out[flag] = (g_logs, d_logs, fakes[0][0], snapshot(step.autoencoder), snapshot(step.discriminator))
    one, per_side = out[True], out[False]
    assert float(one[0][9]) > 0 and float(one[1][0]) > 0  # the GAN terms ran
    for x, y in zip(one[:3], per_side[:3]):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    for weights, ref in zip(one[3:], per_side[3:]):
        assert weights.keys() == ref.keys()
        for k in weights:
            torch.testing.assert_close(weights[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)


def test_batch_norm_keeps_one_pass_per_identity(real_batches):
    """Batch norm's statistics are per batch: stacking A and B (or real and fake) would change them, so
    a network with batch norm keeps its separate passes whatever batch_sides says."""
    cfg = with_gan(tiny())
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, norm="batch"),
                              discriminator=dataclasses.replace(cfg.discriminator, norm="batch"))
    assert one_pass(cfg) == (False, False)
    assert one_pass(dataclasses.replace(cfg, model=tiny().model)) == (True, False)
    ba, bb = real_batches
    stepped = []
    for flag in (True, False):
        step = make_step(dataclasses.replace(cfg, batch_sides=flag))
        _, _, fakes = step.generator_phase(ba, bb, step=0)
        step.discriminator_phase(ba, bb, fakes, step=0)
        stepped.append((snapshot(step.autoencoder), snapshot(step.discriminator)))
    for a, b in zip(*stepped):
        assert same(a, b)  # bitwise: the same separate passes either way


def test_non_finite_step_is_skipped_and_reported(real_batches):
    step = make_step(tiny())
    ba, bb = real_batches
    poisoned = [dataclasses.replace(ba[0], inputs=ba[0].inputs.clone())]
    poisoned[0].inputs[0, 0, 0, 0] = float("nan")
    before = snapshot(step.autoencoder)
    _, skipped, _ = step.generator_phase(poisoned, bb, step=0)
    assert float(skipped) == 1 and same(before, snapshot(step.autoencoder))
    assert all(int(st["step"]) == 0 for st in step.opt_g.state.values())  # nor counted the step
    _, skipped, _ = step.generator_phase(ba, bb, step=1)
    assert float(skipped) == 0 and not same(before, snapshot(step.autoencoder))


def test_gradient_accumulation_averages_micro_batches(real_batches):
    ba, bb = real_batches
    one, two = make_step(tiny(grad_accum=1)), make_step(tiny(grad_accum=2))
    l1, _, _ = one.generator_phase(ba, bb, step=0)
    l2, _, _ = two.generator_phase(ba * 2, bb * 2, step=0)
    torch.testing.assert_close(l1, l2)
    for p, q in zip(one.autoencoder.parameters(), two.autoencoder.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_overfitting_warning_is_raised_during_training(faceset_a, faceset_b, tmp_path, monkeypatch, caplog):
    calls = []

    def rising_val(autoencoder, side, which, loss_cfg, batch, autocast):
        calls.append(which)
        return torch.tensor(1.0 + 0.1 * len(calls))  # validation keeps getting worse

    monkeypatch.setattr(loop_module, "validate", rising_val)
    cfg = tiny(steps=20, batch=4, lr=1e-3, log_every=5, val_every=5, save_every=20, preview_every=0, overfit_patience=3)
    with caplog.at_level(logging.WARNING, logger="deepfake.train"):
        result = train(cfg, faceset_a, faceset_b, tmp_path / "m", progress=False)
    assert result.overfit_warnings, "no over-fitting warning"
    assert any("over-fitting" in r.message for r in caplog.records)


def _start_cli_training(faceset_a, faceset_b, out, *extra: str) -> subprocess.Popen:
    """`deepfake train` (tiny, open-ended) in a subprocess, returned once its first step is near."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "deepfake", "train", "--a", str(faceset_a), "--b", str(faceset_b), "-o", str(out),
           "--preset", "tiny", "--steps", "100000", "--preview-every", "100000", "--val-every", "100000",
           "--batch", "4", "--no-progress", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    while not (out / "config.json").exists():  # written just before the first step
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.2)
    return proc


def test_ctrl_c_saves_before_exit(faceset_a, faceset_b, tmp_path):
    out = tmp_path / "m"
    proc = _start_cli_training(faceset_a, faceset_b, out, "--save-every", "100000")
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert b"SIGINT: saved at step" in stdout
    loaded = load_model_dir(out)
    assert 0 < loaded.step < 100000
    assert latest_snapshot(out).step == loaded.step


def test_sigterm_saves_and_exits_with_code_0(faceset_a, faceset_b, tmp_path):
    """What `kill`, `docker stop`, systemd and SLURM send: saved like Ctrl-C, exit code 0, a line
    naming the step; the same command then resumes from it."""
    out = tmp_path / "m"
    proc = _start_cli_training(faceset_a, faceset_b, out, "--save-every", "100000")
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    saved = int(re.search(rb"SIGTERM: saved at step (\d+)", stdout).group(1))
    assert b"Stopped: SIGTERM" in stdout
    assert 0 < saved < 100000 and load_model_dir(out).step == saved == latest_snapshot(out).step
    rows = read_metrics(out / "metrics.csv")
    assert rows and rows[-1]["step"] == saved


def test_a_second_signal_exits_at_once_and_keeps_the_last_complete_checkpoint(faceset_a, faceset_b, tmp_path):
    out = tmp_path / "m"
    proc = _start_cli_training(faceset_a, faceset_b, out, "--save-every", "3")
    deadline = time.time() + 60
    while latest_snapshot(out) is None:  # at least one complete checkpoint to keep
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)  # apart, so the first is handled (two pending SIGTERMs merge into one)
    assert proc.poll() is None, "the first signal's save ended the run before the second arrived"
    proc.send_signal(signal.SIGTERM)
    t0 = time.time()
    _, stderr = proc.communicate(timeout=60)
    assert time.time() - t0 < 30
    snap = latest_snapshot(out)
    assert proc.returncode in (130, -signal.SIGTERM), stderr.decode()[-2000:]  # not one signal's clean exit 0
    if b"SIGTERM: saved" in stderr:
        # A tiny model's stop-save can finish within the 0.1 s gap: the second signal then only cut short
        # what follows it (the CLI's own handler, or teardown's default one). Nothing was left to abort.
        assert snap is not None and f"at step {snap.step}".encode() in stderr  # the stop-save, complete
    else:
        assert proc.returncode == 130 and b"exiting without saving" in stderr, stderr.decode()[-2000:]
        # A whole checkpoint: one of the save schedule's, or the stop's own when its snapshot was complete
        # before the preview that follows it (the second signal cut that short).
        assert snap is not None
    assert load_model_dir(out).step > 0


def test_minutes_alone_is_the_limit(faceset_a, faceset_b, tmp_path, capsys):
    """--minutes without --steps ignores the preset's step count (a user's time budget is the limit);
    with both, the first reached stops, and the summary says which."""
    from deepfake.config_io import save_json

    cfg_path = tmp_path / "cfg.json"
    save_json(tiny(steps=4, batch=4, log_every=2, val_every=0, save_every=10**6, preview_every=0), cfg_path)
    common = ["train", "--a", str(faceset_a), "--b", str(faceset_b), "--config", str(cfg_path), "--no-progress"]
    assert cli_main(common + ["-o", str(tmp_path / "alone"), "--minutes", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "Stopped: the 0.1-minute budget was spent" in out
    assert load_model_dir(tmp_path / "alone").step > 4  # went past the config's 4 steps
    assert cli_main(common + ["-o", str(tmp_path / "both"), "--minutes", "5", "--steps", "6"]) == 0
    out = capsys.readouterr().out
    assert "Stopped: reached the step limit (6)" in out and load_model_dir(tmp_path / "both").step == 6
    with pytest.raises(DeepfakeError, match="time budget"):
        train(tiny(), faceset_a, faceset_b, tmp_path / "none", step_limit=False)


def test_cli_dry_run_prints_and_saves_the_resolved_config(tmp_path, capsys):
    out = tmp_path / "m"
    rc = cli_main(["train", "--a", "A", "--b", "B", "-o", str(out), "--preset", "tiny", "--arch", "liae", "--steps", "7",
                   "--gan-weight", "0.5", "--set", "model.latent_dims=32", "--set", "augment.flip=false", "--dry-run"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert '"latent_dims": 32' in printed and '"arch": "liae"' in printed
    # The memory estimate of one step (fake tensors), bf16 and fp32, and with decoder checkpointing.
    def size(number: str, unit: str) -> float:
        return float(number) * {"GiB": 2**30, "MiB": 2**20}[unit]

    m = re.search(r"batch \d+ per identity: ([\d.]+) (GiB|MiB) with bf16.*?, ([\d.]+) (GiB|MiB) in fp32", printed)
    bf16, fp32 = size(*m.group(1, 2)), size(*m.group(3, 4))
    ckpt = size(*re.search(r"checkpoint_decoder=true: ([\d.]+) (GiB|MiB)", printed).group(1, 2))
    assert 0 < bf16 < fp32 and 0 < ckpt <= bf16
    from deepfake.model_dir import read_config

    cfg = read_config(out)
    assert (cfg.steps, cfg.model.arch, cfg.model.latent_dims, cfg.augment.flip, cfg.loss.gan_weight) == (7, "liae", 32, False, 0.5)
    assert cli_main(["train", "--a", "A", "--b", "B", "-o", str(out), "--set", "model.nope=1", "--dry-run"]) == 2
    assert "unknown config field" in capsys.readouterr().err
    assert cli_main(["train", "--a", "A", "--b", "B", "-o", str(tmp_path / "x"), "--set", "model.resolution=72", "--dry-run"]) == 2
    assert cli_main(["train", "--a", str(tmp_path / "missing"), "--b", "B", "-o", str(tmp_path / "y"), "--preset", "tiny"]) == 2
    assert "missing" in capsys.readouterr().err


def test_compile_mode_auto_picks_cuda_graphs_for_small_models_on_cuda_only():
    """--compile-mode auto (the default): CUDA graphs where launch overhead dominates (up to 128 px on
    CUDA, one process), torch.compile's default mode elsewhere; an unknown mode is a clear error."""
    resolve = resolve_compile_mode
    small, large = preset_config("original64"), preset_config("df256")
    assert small.compile_mode == "auto"
    assert resolve(small, torch.device("cuda")) == "reduce-overhead"
    assert resolve(small, torch.device("cpu")) == "default"
    assert resolve(large, torch.device("cuda")) == "default"
    assert resolve(dataclasses.replace(large, compile_mode="reduce-overhead"), torch.device("cuda")) == "reduce-overhead"
    with pytest.raises(DeepfakeError, match="compile_mode 'fast'"):
        resolve(dataclasses.replace(small, compile_mode="fast"), torch.device("cpu"))


def test_a_two_face_faceset_trains_and_a_failed_preview_keeps_the_checkpoint(faceset_a, faceset_b, tmp_path):
    """The preview grid shows as many faces as both sides have (two here, six of B); and a preview that
    cannot be written fails the run only after the step's checkpoint is saved."""
    import shutil

    from deepfake.faceset import read_faceset, write_manifest

    two = shutil.copytree(faceset_a, tmp_path / "two", ignore=shutil.ignore_patterns(".cache"))
    fs = read_faceset(two)
    write_manifest(two, fs.header, fs.records[:2])
    cfg = tiny(steps=4, batch=2, log_every=2, val_every=2, save_every=4, preview_every=4)
    train(cfg, two, faceset_b, tmp_path / "m", progress=False)
    assert cv2.imread(str(tmp_path / "m" / "previews" / "step_000004.png")).shape[:2] == (6 * 64, 56 + 2 * 64)
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "previews").write_text("a file where the previews folder goes")
    with pytest.raises(OSError):
        train(cfg, faceset_a, faceset_b, tmp_path / "blocked", progress=False)
    assert latest_snapshot(tmp_path / "blocked").step == 4
